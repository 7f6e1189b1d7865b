package bpf

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/sluice-lb/sluice/internal/testenv"
)

// loadDatapath loads the objects with opts (no attaching) and closes them at
// the end of the test.
func mustLoad(t testing.TB, opts Options) *Datapath {
	t.Helper()
	d, err := Load(opts)
	if err != nil {
		var verr *ebpf.VerifierError
		if errors.As(err, &verr) {
			t.Fatalf("Load: %+v", verr) // the whole verifier log
		}
		t.Fatalf("Load: %v", err)
	}
	t.Cleanup(func() {
		if err := d.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return d
}

// runXDP runs the XDP program once on frame with BPF_PROG_RUN and returns
// the verdict and the frame as the program left it.
func runXDP(t testing.TB, prog *ebpf.Program, frame []byte) (uint32, []byte) {
	t.Helper()
	opts := ebpf.RunOptions{Data: frame, DataOut: make([]byte, len(frame)+256), Repeat: 1}
	ret, err := prog.Run(&opts)
	if err != nil {
		t.Fatalf("BPF_PROG_RUN on %d bytes: %v", len(frame), err)
	}
	return ret, opts.DataOut
}

func readCounters(t testing.TB, d *Datapath) Counters {
	t.Helper()
	c, err := d.Counters()
	if err != nil {
		t.Fatalf("Counters: %v", err)
	}
	return c
}

// wantDelta is the counters after one packet of n bytes counted under c.
func wantDelta(c Counter, n int) Counters {
	var d Counters
	d[c] = CounterValue{Packets: 1, Bytes: uint64(n)}
	return d
}

// diffCounters lists the counters that differ, empty if none.
func diffCounters(got, want Counters) string {
	var b bytes.Buffer
	for i := range got {
		if got[i] != want[i] {
			fmt.Fprintf(&b, "\n\t%s: got %+v, want %+v", Counter(i), got[i], want[i])
		}
	}
	return b.String()
}

// tempBPFFS mounts a fresh bpffs on a temporary directory, unmounted (with
// every pin in it) at the end of the test.
func tempBPFFS(t testing.TB) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "bpffs")
	mounted, err := MountBPFFS(dir)
	if err != nil {
		testenv.Unavailable(t, "mount bpffs: %v", err)
	}
	if !mounted {
		t.Fatalf("%s was already on a bpffs", dir)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, 0); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
		if err := os.Remove(dir); err != nil {
			t.Errorf("remove %s: %v", dir, err)
		}
	})
	return dir
}
