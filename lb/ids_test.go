package lb

import (
	"errors"
	"net/netip"
	"reflect"
	"testing"
)

func bk(addr string, port uint16, proto Protocol) BackendKey {
	_ = proto
	return BackendKey{Addr: netip.MustParseAddr(addr), Port: port}
}

var (
	kA    = bk("10.1.0.1", 80, TCP)
	kAUDP = bk("10.1.0.1", 80, UDP)
	kB    = bk("10.1.0.2", 80, TCP)
	kC    = bk("fd01::3", 8080, TCP)
	kD    = bk("10.1.0.4", 80, TCP)
)

func wantIDs(t *testing.T, a *IDs, want map[BackendKey]uint32) {
	t.Helper()
	got := map[BackendKey]uint32{}
	for _, e := range a.Entries() {
		got[e.Key] = e.ID
		if k, ok := a.Key(e.ID); !ok || k != e.Key {
			t.Errorf("Key(%d) = %v, %v; want %v", e.ID, k, ok, e.Key)
		}
		if id, ok := a.ID(e.Key); !ok || id != e.ID {
			t.Errorf("ID(%v) = %d, %v; want %d", e.Key, id, ok, e.ID)
		}
	}
	if !reflect.DeepEqual(got, want) || a.Len() != len(want) {
		t.Errorf("IDs %v (len %d), want %v", got, a.Len(), want)
	}
}

func TestIDsSet(t *testing.T) {
	a := NewIDs(0, nil)
	if err := a.Set([]BackendKey{kB, kA, kAUDP, kA}); err != nil {
		t.Fatal(err)
	}
	// New keys are numbered in key order; the TCP and UDP ports of one endpoint share an ID.
	wantIDs(t, a, map[BackendKey]uint32{kA: 1, kB: 2})

	// Kept keys keep their IDs, a new one gets a fresh ID.
	if err := a.Set([]BackendKey{kC, kB, kA}); err != nil {
		t.Fatal(err)
	}
	wantIDs(t, a, map[BackendKey]uint32{kA: 1, kB: 2, kC: 3})

	// Idempotent.
	if err := a.Set([]BackendKey{kA, kB, kC}); err != nil {
		t.Fatal(err)
	}
	wantIDs(t, a, map[BackendKey]uint32{kA: 1, kB: 2, kC: 3})

	// A removed key frees its ID, which is not handed out again at once, even to that key.
	if err := a.Set([]BackendKey{kA, kC}); err != nil {
		t.Fatal(err)
	}
	wantIDs(t, a, map[BackendKey]uint32{kA: 1, kC: 3})
	if err := a.Set([]BackendKey{kA, kB, kC}); err != nil {
		t.Fatal(err)
	}
	wantIDs(t, a, map[BackendKey]uint32{kA: 1, kB: 4, kC: 3})

	if err := a.Set(nil); err != nil {
		t.Fatal(err)
	}
	wantIDs(t, a, map[BackendKey]uint32{})
}

func TestIDsWrapAndExhaust(t *testing.T) {
	a := NewIDs(3, nil)
	if err := a.Set([]BackendKey{kA, kB, kC}); err != nil {
		t.Fatal(err)
	}
	wantIDs(t, a, map[BackendKey]uint32{kA: 1, kB: 2, kC: 3})

	err := a.Set([]BackendKey{kA, kB, kC, kD})
	if !errors.Is(err, ErrNoFreeID) {
		t.Fatalf("err = %v, want ErrNoFreeID", err)
	}
	wantIDs(t, a, map[BackendKey]uint32{kA: 1, kB: 2, kC: 3})

	// Freeing 2 lets the cursor wrap around to it.
	if err := a.Set([]BackendKey{kA, kC, kD}); err != nil {
		t.Fatal(err)
	}
	wantIDs(t, a, map[BackendKey]uint32{kA: 1, kD: 2, kC: 3})
}

func TestIDsRestored(t *testing.T) {
	restored := []IDEntry{
		{ID: 7, Key: kB},
		{ID: 0, Key: kD},    // never a valid ID
		{ID: 3, Key: kA},    // lowest ID of kA wins
		{ID: 9, Key: kA},    // duplicate key
		{ID: 7, Key: kC},    // duplicate ID: the first listed wins
		{ID: 1000, Key: kD}, // above the limit
	}
	a := NewIDs(100, restored)
	wantIDs(t, a, map[BackendKey]uint32{kA: 3, kB: 7})

	// After the restart the same backends keep their IDs and new ones start after the
	// highest restored ID.
	if err := a.Set([]BackendKey{kA, kB, kC}); err != nil {
		t.Fatal(err)
	}
	wantIDs(t, a, map[BackendKey]uint32{kA: 3, kB: 7, kC: 8})

	// Reseeding from what the allocator says the map holds gives the same allocator.
	b := NewIDs(100, a.Entries())
	wantIDs(t, b, map[BackendKey]uint32{kA: 3, kB: 7, kC: 8})
	if err := b.Set([]BackendKey{kA, kB, kC, kD}); err != nil {
		t.Fatal(err)
	}
	wantIDs(t, b, map[BackendKey]uint32{kA: 3, kB: 7, kC: 8, kD: 9})
}

func TestIDsAssign(t *testing.T) {
	a := NewIDs(0, []IDEntry{{ID: 42, Key: kB}})
	svcs := []Service{
		{Key: key("a", "http", IPv4), Backends: []Backend{
			{Addr: kA.Addr, Port: 80, Weight: 1},
			{Addr: kB.Addr, Port: 80, Weight: 1},
		}},
		{Key: key("b", "http", IPv4), Backends: []Backend{
			{Addr: kB.Addr, Port: 80, Weight: 1, State: BackendTerminating},
		}},
	}
	if err := a.Assign(svcs); err != nil {
		t.Fatal(err)
	}
	got := []uint32{svcs[0].Backends[0].ID, svcs[0].Backends[1].ID, svcs[1].Backends[0].ID}
	if want := []uint32{43, 42, 42}; !reflect.DeepEqual(got, want) {
		t.Errorf("IDs %v, want %v (a backend shared by two Services has one ID)", got, want)
	}
	wantIDs(t, a, map[BackendKey]uint32{kA: 43, kB: 42})
}
