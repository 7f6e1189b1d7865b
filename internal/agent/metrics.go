package agent

import (
	"context"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"time"

	"github.com/sluice-lb/sluice/internal/version"
)

// metrics are the agent's own Prometheus metrics, on a registry of its own.
type metrics struct {
	registry      *prometheus.Registry
	objects       *prometheus.GaugeVec
	problems      *prometheus.GaugeVec
	inputProblems prometheus.Gauge
	builds        prometheus.Counter
	buildSeconds  prometheus.Histogram
	synced        prometheus.Gauge

	datapathSeconds prometheus.Histogram
	datapathWrites  prometheus.Counter
	datapathErrors  prometheus.Counter

	conntrackEntries   prometheus.Gauge
	conntrackCollected prometheus.Counter
	datapathEvents     *prometheus.CounterVec

	allocations    *prometheus.GaugeVec
	allocationRuns *prometheus.CounterVec
	poolAddresses  *prometheus.GaugeVec
}

// bgpCollector exports the BGP sessions at scrape time.
type bgpCollector struct {
	a          *Agent
	up, prefix *prometheus.Desc
}

func newBGPCollector(a *Agent) *bgpCollector {
	return &bgpCollector{a: a,
		up: prometheus.NewDesc("sluice_bgp_session_established", "1 when the BGP session with the peer is established, else 0.",
			[]string{"peer", "address", "state"}, nil),
		prefix: prometheus.NewDesc("sluice_bgp_prefixes_announced", "Prefixes announced to the peer.", []string{"peer"}, nil),
	}
}

func (c *bgpCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.up; ch <- c.prefix }

func (c *bgpCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, st := range c.a.speaker.Status(ctx) {
		up := 0.0
		if st.State == "established" {
			up = 1
		}
		ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, up, st.Name, st.Address.String(), st.State)
		ch <- prometheus.MustNewConstMetric(c.prefix, prometheus.GaugeValue, float64(st.Sent), st.Name)
	}
}

func newMetrics() *metrics {
	m := &metrics{
		registry: prometheus.NewRegistry(),
		objects: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sluice_objects", Help: "Input objects by kind.",
		}, []string{"kind"}),
		problems: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sluice_object_problems", Help: "Objects or parts of objects rejected or ignored, by kind and verdict.",
		}, []string{"kind", "verdict"}),
		inputProblems: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sluice_input_problems", Help: "Input documents that could not be read.",
		}),
		builds: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sluice_model_builds_total", Help: "Model rebuilds.",
		}),
		buildSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "sluice_model_build_seconds", Help: "Time to build the model.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10),
		}),
		synced: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sluice_source_synced", Help: "1 once the source has delivered its initial objects.",
		}),
	}
	m.datapathSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "sluice_datapath_sync_seconds", Help: "Time to program the model into the datapath's maps.",
		Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10),
	})
	m.datapathWrites = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "sluice_datapath_writes_total", Help: "Map entries written or deleted by the datapath syncer.",
	})
	m.datapathErrors = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "sluice_datapath_sync_errors_total", Help: "Datapath syncs that did not complete (retried).",
	})
	m.conntrackEntries = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "sluice_conntrack_entries", Help: "Conntrack entries (both directions) after the last garbage collection.",
	})
	m.conntrackCollected = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "sluice_conntrack_collected_total", Help: "Expired conntrack entries deleted by garbage collection.",
	})
	m.datapathEvents = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sluice_datapath_events_total", Help: "Drop and trace events the datapath reported, by type (each is also logged, rate-limited).",
	}, []string{"type"})
	m.allocations = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "sluice_ipam_services", Help: "LoadBalancer Services of ours by the allocator's reason (Allocated, PoolExhausted, ...).",
	}, []string{"reason"})
	m.allocationRuns = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sluice_ipam_runs_total", Help: "Allocator runs (standalone mode) by scope: for the changed Services alone, or for all.",
	}, []string{"scope"})
	m.poolAddresses = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "sluice_ipam_pool_addresses", Help: "Addresses of each pool by family, used or free.",
	}, []string{"pool", "family", "state"})
	info := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "sluice_build_info", Help: "Build of the agent."}, []string{"version"})
	info.WithLabelValues(version.Version).Set(1)
	m.registry.MustRegister(m.objects, m.problems, m.inputProblems, m.builds, m.buildSeconds, m.synced, info,
		m.datapathSeconds, m.datapathWrites, m.datapathErrors, m.conntrackEntries, m.conntrackCollected, m.datapathEvents, m.allocations, m.allocationRuns, m.poolAddresses,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}
