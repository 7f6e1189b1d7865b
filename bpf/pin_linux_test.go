package bpf

import (
	"bytes"
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

// A map pinned with another definition (a changed size flag, another layout) is
// replaced on Load, with its entries carried over where they fit: flows stay
// established, Services keep their backends, and what could not be carried is
// reported.
func TestPinnedMapMigration(t *testing.T) {
	testenv.RequirePrivileged(t)
	pinPath := filepath.Join(tempBPFFS(t), "sluice")
	first := mustLoad(t, Options{PinPath: pinPath, Sizes: testSizes})
	if got := first.Migrations(); len(got) != 0 {
		t.Fatalf("first Load migrated %+v", got)
	}
	svcs := standardServices()
	program(t, first, svcs...)
	src, vip := ap(client4, 44000), ap(vip4, 80)
	be := svcs[0].addrs[svcs[0].pick(client4, 44000)]
	runXDP(t, first.XDPProgram(), flowFrame(ProtoTCP, src, vip, false))
	ctBefore := countConntrack(t, first)
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}

	// A layout no version of ours had, pinned as the counters map.
	if err := os.Remove(filepath.Join(pinPath, datapathMapCounters)); err != nil {
		t.Fatal(err)
	}
	odd, err := ebpf.NewMap(&ebpf.MapSpec{Name: datapathMapCounters, Type: ebpf.PerCPUArray, KeySize: 4, ValueSize: 8, MaxEntries: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer odd.Close()
	if err := odd.Pin(filepath.Join(pinPath, datapathMapCounters)); err != nil {
		t.Fatal(err)
	}

	// Conntrack, Maglev and frontends grow; backends shrink below what is programmed (which
	// ones stay is the hash's order: established TCP flows do not need theirs).
	sizes := testSizes
	sizes.Conntrack, sizes.Maglev, sizes.Frontends, sizes.Backends = 8192, 8192, 2048, 2
	second := mustLoad(t, Options{PinPath: pinPath, Sizes: sizes})
	got := map[string]MapMigration{}
	for _, m := range second.Migrations() {
		got[m.Map] = m
	}
	if len(got) != 5 {
		t.Fatalf("migrations %+v, want conntrack, maglev, frontends, backends and counters", second.Migrations())
	}
	if m := got[datapathMapConntrack]; m.Copied != ctBefore || m.Dropped != 0 || !strings.Contains(m.Reason, "MaxEntries") {
		t.Errorf("conntrack migration %+v, want %d entries copied", m, ctBefore)
	}
	if m := got[datapathMapMaglev]; m.Copied != int(testSizes.Maglev) || m.Dropped != 0 {
		t.Errorf("maglev migration %+v, want all %d slots copied", m, testSizes.Maglev)
	}
	if m := got[datapathMapFrontends]; m.Copied != len(svcs) || m.Dropped != 0 {
		t.Errorf("frontends migration %+v, want all %d copied", m, len(svcs))
	}
	nBackends := 0
	for _, s := range svcs {
		nBackends += len(s.backends)
	}
	if m := got[datapathMapBackends]; m.Copied != 2 || m.Dropped != nBackends-2 {
		t.Errorf("backends migration %+v, want 2 copied and %d dropped", m, nBackends-2)
	}
	if m := got[datapathMapCounters]; m.Copied != 0 || m.Note == "" {
		t.Errorf("counters migration %+v, want nothing carried and a note", m)
	}
	if n := countConntrack(t, second); n != ctBefore {
		t.Errorf("%d conntrack entries after the migration, want %d", n, ctBefore)
	}
	// The maps in use are the migrated ones, and pinned: the flow is still established.
	before := readCounters(t, second)
	ack := packet.MustBuild(eth, ipLayer(src.Addr(), vip.Addr()), packet.TCP{SrcPort: src.Port(), DstPort: 80, Seq: 1001, Ack: 1, Flags: packet.ACK, Window: 100})
	if ret, out := runXDP(t, second.XDPProgram(), ack); ret != xdpPass || !bytes.Contains(out, be.Addr().AsSlice()) {
		t.Fatalf("established flow after the migration: verdict %d, not rewritten to %v", ret, be)
	}
	if d := readCounters(t, second).Sub(before); d[CounterFwdEstablished].Packets != 1 {
		t.Errorf("counters %+v, want one established packet", d)
	}
	third := mustLoad(t, Options{PinPath: pinPath, Sizes: sizes})
	if m := third.Migrations(); len(m) != 0 {
		t.Errorf("a third Load with the same sizes migrated %+v", m)
	}
}

func countConntrack(t *testing.T, d *Datapath) int {
	t.Helper()
	n := 0
	if err := d.WalkConntrack(func(keys []ConntrackKey, _ []ConntrackEntry) bool { n += len(keys); return true }); err != nil {
		t.Fatal(err)
	}
	return n
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
