package bpf

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/sluice-lb/sluice/internal/testenv"
	"github.com/sluice-lb/sluice/test/packet"
)

// A second Load with the same pin directory (the restarted agent) finds the
// first one's maps, contents included, and keeps counting in them.
func TestPinnedMapsSurviveReload(t *testing.T) {
	testenv.RequirePrivileged(t)
	pinPath := filepath.Join(tempBPFFS(t), "sluice")
	frame := packet.MustBuild(eth, packet.IPv4{Src: client4, Dst: vip4}, syn)

	first, err := Load(Options{PinPath: pinPath})
	if err != nil {
		t.Fatalf("first Load: %v", err)
	}
	closed := false
	t.Cleanup(func() {
		if !closed {
			first.Close()
		}
	})
	for range 3 {
		runXDP(t, first.XDPProgram(), frame)
	}
	counted := readCounters(t, first)
	if counted[CounterIPv4TCP].Packets != 3 {
		t.Fatalf("first load counted %+v", counted)
	}
	firstInfo, err := first.maps.Counters.Info()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(pinPath, datapathMapCounters)); err != nil {
		t.Fatalf("counters map not pinned: %v", err)
	}
	closed = true
	if err := first.Close(); err != nil { // the agent exits
		t.Fatalf("Close: %v", err)
	}

	second := mustLoad(t, Options{PinPath: pinPath})
	secondInfo, err := second.maps.Counters.Info()
	if err != nil {
		t.Fatal(err)
	}
	firstID, _ := firstInfo.ID()
	secondID, _ := secondInfo.ID()
	if firstID != secondID {
		t.Errorf("second load made a new counters map (id %d, was %d)", secondID, firstID)
	}
	if got := readCounters(t, second); got != counted {
		t.Errorf("second load reads %+v, want the first load's %+v", got, counted)
	}
	runXDP(t, second.XDPProgram(), frame)
	if got := readCounters(t, second)[CounterIPv4TCP].Packets; got != 4 {
		t.Errorf("after one more packet: %d IPv4 TCP packets, want 4", got)
	}

	// Unpin removes the pins, leaving the directory.
	if err := second.Unpin(); err != nil {
		t.Fatalf("Unpin: %v", err)
	}
	entries, err := os.ReadDir(pinPath)
	if err != nil || len(entries) != 0 {
		t.Errorf("pin directory after Unpin: %v %v", entries, err)
	}
}

// A map pinned with another definition is not silently replaced.
func TestPinnedMapIncompatible(t *testing.T) {
	testenv.RequirePrivileged(t)
	pinPath := filepath.Join(tempBPFFS(t), "sluice")
	if err := os.Mkdir(pinPath, 0o700); err != nil {
		t.Fatal(err)
	}
	old, err := ebpf.NewMap(&ebpf.MapSpec{
		Name: datapathMapCounters, Type: ebpf.PerCPUArray, KeySize: 4, ValueSize: 16, MaxEntries: 3,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	if err := old.Pin(filepath.Join(pinPath, datapathMapCounters)); err != nil {
		t.Fatal(err)
	}

	d, err := Load(Options{PinPath: pinPath})
	if err == nil {
		d.Close()
		t.Fatal("Load over an incompatible pinned map succeeded")
	}
	if !errors.Is(err, ebpf.ErrMapIncompatible) {
		t.Errorf("Load = %v, want ErrMapIncompatible", err)
	}
}

func TestPinPathNotOnBPFFS(t *testing.T) {
	testenv.RequirePrivileged(t)
	dir := t.TempDir()
	if on, err := IsBPFFS(dir); err != nil || on {
		testenv.Unavailable(t, "the temp dir %s must not be on bpffs (on bpffs %v, %v)", dir, on, err)
	}
	_, err := Load(Options{PinPath: filepath.Join(dir, "sluice")})
	if !errors.Is(err, ErrNotBPFFS) || !strings.Contains(err.Error(), "mount -t bpf") {
		t.Errorf("Load = %v, want ErrNotBPFFS", err)
	}
}
