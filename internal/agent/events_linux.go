package agent

import (
	"context"
	"errors"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-lb/sluice/bpf"
	"github.com/sluice-lb/sluice/lb"
)

// countersCollector exports the datapath's per-CPU counters, summed, at scrape time.
type countersCollector struct {
	dp             *bpf.Datapath
	packets, bytes *prometheus.Desc
}

func newCountersCollector(dp *bpf.Datapath) *countersCollector {
	return &countersCollector{
		dp: dp,
		packets: prometheus.NewDesc("sluice_datapath_packets_total",
			"Packets the datapath counted, by counter: the parser's class of every packet the devices saw, and the load balancer's outcomes.",
			[]string{"counter"}, nil),
		bytes: prometheus.NewDesc("sluice_datapath_bytes_total", "Bytes (whole frames) of sluice_datapath_packets_total.",
			[]string{"counter"}, nil),
	}
}

func (c *countersCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.packets
	ch <- c.bytes
}

func (c *countersCollector) Collect(ch chan<- prometheus.Metric) {
	counters, err := c.dp.Counters()
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.packets, err)
		return
	}
	for i, v := range counters {
		name := bpf.Counter(i).String()
		ch <- prometheus.MustNewConstMetric(c.packets, prometheus.CounterValue, float64(v.Packets), name)
		ch <- prometheus.MustNewConstMetric(c.bytes, prometheus.CounterValue, float64(v.Bytes), name)
	}
}

// eventLogEvery is how often at most each kind of datapath event is logged; the
// events in between are counted (sluice_datapath_events_total) and summed into the
// next line.
const eventLogEvery = 10 * time.Second

// watchEvents reads the datapath's drop and trace events until ctx ends: each is
// counted, and logged at most once per eventLogEvery per type with the number
// suppressed since.
func (d *datapath) watchEvents(ctx context.Context, counted *prometheus.CounterVec) error {
	r, err := d.dp.Events()
	if err != nil {
		return err
	}
	go func() {
		<-ctx.Done()
		r.Close()
	}()
	type state struct {
		last       time.Time
		suppressed int
	}
	seen := map[bpf.EventType]*state{}
	for {
		ev, err := r.Read()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, os.ErrClosed) {
				return nil
			}
			return err
		}
		counted.WithLabelValues(ev.Type.String()).Inc()
		st := seen[ev.Type]
		if st == nil {
			st = &state{}
			seen[ev.Type] = st
		}
		if now := time.Now(); now.Sub(st.last) >= eventLogEvery {
			d.log.Warn(eventMessage(ev.Type), "event", ev.Type.String(), "outcome", ev.Counter.String(),
				"service_id", ev.ServiceID, "src", ev.Src, "dst", ev.Dst, "proto", lb.Protocol(ev.Proto).String(),
				"ifindex", ev.Ifindex, "len", ev.Len, "suppressed", st.suppressed)
			st.last, st.suppressed = now, 0
		} else {
			st.suppressed++
		}
	}
}

func eventMessage(t bpf.EventType) string {
	switch t {
	case bpf.EventNoBackend:
		return "packet to a Service without a usable backend rejected"
	case bpf.EventMalformed:
		return "malformed packet to a Service address passed to the kernel"
	case bpf.EventCTClash:
		return "new flow dropped: a live flow to another Service address holds its reply tuple (same client address and port, same backend)"
	}
	return "datapath event"
}
