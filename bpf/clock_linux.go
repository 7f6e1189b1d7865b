package bpf

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
)

const xdpPass = 2 // XDP_PASS in linux/bpf.h

// Clock is how the programs tell the time: CLOCK_MONOTONIC nanoseconds
// computed from jiffies as Jiffies*Tick - Offset (wrapping), so that a
// packet pays an inlined load instead of a helper call into the kernel. A
// zero Tick means the programs call bpf_ktime_get_coarse_ns instead.
type Clock struct {
	Tick   time.Duration // one jiffy: 1s / CONFIG_HZ
	Offset uint64        // jiffies*Tick - CLOCK_MONOTONIC, in nanoseconds
}

// The tick lengths Linux can be built with (CONFIG_HZ 100, 250, 300, 1000 on
// x86; the others on other architectures).
var knownHZ = []int64{24, 32, 48, 64, 100, 128, 200, 250, 256, 300, 512, 1000, 1024}

// calibrate is MeasureClock, once per process: the tick never changes, and the
// offset only moves with the clock itself.
var calibrate = sync.OnceValues(MeasureClock)

// MeasureClock finds the kernel's tick and the jiffies-to-CLOCK_MONOTONIC
// offset by watching jiffies (read with a tiny BPF program through
// BPF_PROG_RUN) change. A change is only used when it is pinned down closely:
// the read that saw it and the one before it both ran within edgePrecision, so
// a moment the thread was descheduled (a busy machine) cannot skew it. The
// tick is measured over at least measureTicks ticks and must lie within 5 % of
// a tick Linux can have; otherwise the measurement starts again, up to a
// deadline. It takes a few ticks (tens of milliseconds) on an idle machine.
func MeasureClock() (Clock, error) {
	prog, err := newJiffiesProgram()
	if err != nil {
		return Clock{}, err
	}
	defer prog.Close()
	deadline := MonotonicNow() + 2*time.Second
	for attempt := 1; ; attempt++ {
		c, err := measureOnce(prog, deadline)
		if err == nil {
			return c, nil
		}
		if MonotonicNow() > deadline {
			return Clock{}, fmt.Errorf("bpf: measuring the jiffies clock (%d attempts): %w", attempt, err)
		}
	}
}

const (
	// edgePrecision bounds the window a jiffies change is pinned into.
	edgePrecision = 200 * time.Microsecond
	// measureTicks is how many ticks the tick length is averaged over.
	measureTicks = 4
)

// measureOnce measures the clock once: two precise jiffies changes at least measureTicks
// apart.
func measureOnce(prog *ebpf.Program, deadline time.Duration) (Clock, error) {
	out := make([]byte, 16)
	in := make([]byte, 16)
	// read returns jiffies with times before and after reading it.
	read := func() (uint64, time.Duration, time.Duration, error) {
		before := MonotonicNow()
		if _, err := prog.Run(&ebpf.RunOptions{Data: in, DataOut: out}); err != nil {
			return 0, 0, 0, fmt.Errorf("read jiffies: %w", err)
		}
		return binary.LittleEndian.Uint64(out), before, MonotonicNow(), nil
	}
	// edge waits for jiffies to reach at least from+1 and returns the new value and when it
	// changed (the middle of the window it is pinned into), from a precise change only.
	edge := func(from uint64) (uint64, time.Duration, error) {
		prevJ, prevBefore, _, err := read()
		if err != nil {
			return 0, 0, err
		}
		for {
			j, before, after, err := read()
			if err != nil {
				return 0, 0, err
			}
			if j > from && j != prevJ && j == prevJ+1 && after-prevBefore <= edgePrecision {
				return j, prevBefore + (after-prevBefore)/2, nil
			}
			if before > deadline {
				return 0, 0, errors.New("no precise jiffies change before the deadline")
			}
			prevJ, prevBefore = j, before
		}
	}
	j0, _, _, err := read()
	if err != nil {
		return Clock{}, err
	}
	j1, t1, err := edge(j0)
	if err != nil {
		return Clock{}, err
	}
	j2, t2, err := edge(j1 + measureTicks - 1)
	if err != nil {
		return Clock{}, err
	}
	measured := (t2 - t1) / time.Duration(j2-j1)
	tick := nearestTick(measured)
	if absDuration(measured-tick) > tick/20 {
		return Clock{}, fmt.Errorf("measured a tick of %v, not within 5%% of a tick Linux can have", measured)
	}
	return Clock{Tick: tick, Offset: j2*uint64(tick) - uint64(t2)}, nil
}

// nearestTick rounds a measured tick to the closest one of a known CONFIG_HZ.
func nearestTick(measured time.Duration) time.Duration {
	best := time.Duration(0)
	for _, hz := range knownHZ {
		t := (time.Second + time.Duration(hz/2)) / time.Duration(hz) // the kernel's TICK_NSEC
		if best == 0 || absDuration(t-measured) < absDuration(best-measured) {
			best = t
		}
	}
	return best
}

func absDuration(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}

// newJiffiesProgram is an XDP program that writes bpf_jiffies64() into the
// first 8 bytes of the packet.
func newJiffiesProgram() (*ebpf.Program, error) {
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name: "sluice_jiffies",
		Type: ebpf.XDP,
		Instructions: asm.Instructions{
			asm.Mov.Reg(asm.R6, asm.R1),
			asm.FnJiffies64.Call(),
			asm.LoadMem(asm.R2, asm.R6, 0, asm.Word), // xdp_md.data
			asm.LoadMem(asm.R3, asm.R6, 4, asm.Word), // xdp_md.data_end
			asm.Mov.Reg(asm.R4, asm.R2),
			asm.Add.Imm(asm.R4, 8),
			asm.JGT.Reg(asm.R4, asm.R3, "out"),
			asm.StoreMem(asm.R2, 0, asm.R0, asm.DWord),
			asm.Mov.Imm(asm.R0, xdpPass).WithSymbol("out"),
			asm.Return(),
		},
		License: "MIT",
	})
	if err != nil {
		return nil, fmt.Errorf("bpf: load the jiffies program: %w", err)
	}
	return prog, nil
}

// clock is the Clock to load with: the one set, else the measured one, else
// (with the measurement's error) the helper.
func (o Options) clock() (Clock, error) {
	if o.Clock != nil {
		return *o.Clock, nil
	}
	c, err := calibrate()
	if err != nil {
		return Clock{}, err
	}
	return c, nil
}

// Clock is how the loaded programs read the time, and, if they call the
// kernel's helper because measuring the jiffies clock failed, why.
func (d *Datapath) Clock() (Clock, error) { return d.clock, d.clockErr }
