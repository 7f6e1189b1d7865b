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
// BPF_PROG_RUN) change twice: the times of the two changes give the tick,
// the second one the offset. It takes two to three ticks (at most 30 ms).
func MeasureClock() (Clock, error) {
	prog, err := newJiffiesProgram()
	if err != nil {
		return Clock{}, err
	}
	defer prog.Close()
	// read returns jiffies and a time before the read: the jiffies value is
	// read after it.
	read := func() (uint64, time.Duration, error) {
		out := make([]byte, 16)
		before := MonotonicNow()
		if _, err := prog.Run(&ebpf.RunOptions{Data: make([]byte, 16), DataOut: out}); err != nil {
			return 0, 0, fmt.Errorf("bpf: read jiffies: %w", err)
		}
		return binary.LittleEndian.Uint64(out), before, nil
	}
	// edge waits for jiffies to move past j and returns the new value and a
	// time before the change: before the last read that still saw j (so the
	// derived clock is never ahead of CLOCK_MONOTONIC by more than the
	// kernel's own lag in updating jiffies).
	deadline := MonotonicNow() + 200*time.Millisecond
	edge := func(j uint64) (uint64, time.Duration, error) {
		last := MonotonicNow()
		for {
			n, before, err := read()
			if err != nil {
				return 0, 0, err
			}
			if n != j {
				return n, last, nil
			}
			if before > deadline {
				return 0, 0, errors.New("bpf: jiffies did not advance in 200ms")
			}
			last = before
		}
	}
	j0, _, err := read()
	if err != nil {
		return Clock{}, err
	}
	j1, t1, err := edge(j0)
	if err != nil {
		return Clock{}, err
	}
	j2, t2, err := edge(j1)
	if err != nil {
		return Clock{}, err
	}
	tick := nearestTick((t2 - t1) / time.Duration(j2-j1))
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
