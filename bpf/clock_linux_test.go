package bpf

import (
	"encoding/binary"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/internal/testenv"
)

func TestNearestTick(t *testing.T) {
	for _, c := range []struct{ measured, want time.Duration }{
		{4 * time.Millisecond, 4 * time.Millisecond},         // HZ=250
		{4100 * time.Microsecond, 4 * time.Millisecond},      // a little late
		{3340 * time.Microsecond, 3333333 * time.Nanosecond}, // HZ=300: TICK_NSEC rounds
		{1020 * time.Microsecond, 1 * time.Millisecond},      // HZ=1000
		{990 * time.Microsecond, 1 * time.Millisecond},
		{9 * time.Millisecond, 10 * time.Millisecond}, // HZ=100
		{time.Second, (time.Second + 12) / 24},        // nonsense: the slowest known
	} {
		if got := nearestTick(c.measured); got != c.want {
			t.Errorf("nearestTick(%v) = %v, want %v", c.measured, got, c.want)
		}
	}
}

// TestMeasureClock: the measured tick is one Linux can have, and the clock
// derived from jiffies agrees with CLOCK_MONOTONIC to within a tick.
func TestMeasureClock(t *testing.T) {
	testenv.RequirePrivileged(t)
	c, err := MeasureClock()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(knownHZ, func(hz int64) bool { return c.Tick == (time.Second+time.Duration(hz/2))/time.Duration(hz) }) {
		t.Fatalf("tick %v is not 1s/HZ of a known HZ", c.Tick)
	}
	prog, err := newJiffiesProgram()
	if err != nil {
		t.Fatal(err)
	}
	defer prog.Close()
	for range 20 {
		before := MonotonicNow()
		_, out := runXDP(t, prog, make([]byte, 16))
		after := MonotonicNow()
		now := time.Duration(binary.LittleEndian.Uint64(out)*uint64(c.Tick) - c.Offset)
		if now < before-c.Tick-time.Millisecond || now > after+time.Millisecond {
			t.Fatalf("jiffies clock %v outside [%v - tick, %v] (tick %v)", now, before, after, c.Tick)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestDatapathClock: a flow's conntrack timestamps are CLOCK_MONOTONIC to
// within a tick or two with either clock (the coarse helper's value is the
// last timekeeping update, which lags by up to two ticks here), and the loaded datapath says which one it
// reads.
func TestDatapathClock(t *testing.T) {
	testenv.RequirePrivileged(t)
	measured, err := calibrate()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name  string
		clock *Clock
		want  Clock
	}{
		{"jiffies", nil, measured},
		{"helper", &Clock{}, Clock{}},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := mustLoad(t, Options{Sizes: testSizes, Clock: c.clock})
			if got, err := d.Clock(); got != c.want || err != nil {
				t.Fatalf("Clock() = %+v, %v; want %+v", got, err, c.want)
			}
			svc := newService(1, vip4, 80, ProtoTCP, netip.MustParseAddr("10.1.0.0"), 8080, 1)
			program(t, d, svc)
			tick := measured.Tick
			for i := range 10 {
				src := ap(client4, uint16(41000+i))
				before := MonotonicNow()
				runXDP(t, d.XDPProgram(), flowFrame(ProtoTCP, src, ap(vip4, 80), false))
				after := MonotonicNow()
				e := ctEntry(t, d, ConntrackKey{Src: src, Dst: ap(vip4, 80), Proto: ProtoTCP})
				if e.LastSeen < before-2*tick-time.Millisecond || e.LastSeen > after+time.Millisecond {
					t.Fatalf("last seen %v outside [%v - 2 ticks of %v, %v]", e.LastSeen, before, tick, after)
				}
				time.Sleep(3 * time.Millisecond)
			}
		})
	}
}
