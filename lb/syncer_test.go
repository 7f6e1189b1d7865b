package lb_test

import (
	"errors"
	"fmt"
	"math/rand"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/lb"
	"github.com/sluice-lb/sluice/lb/lbtest"
)

// svc builds a TCP service on vip:80 with backends "addr:port" (a "~" prefix: terminating).
func svc(name, vip string, backends ...string) lb.Service {
	s := lb.Service{Key: lb.ServiceKey{Namespace: "ns", Name: name, Port: "http", Family: lb.IPv4},
		Frontends: []lb.Frontend{{Addr: netip.MustParseAddr(vip), Port: 80, Protocol: lb.TCP}}}
	for _, b := range backends {
		state := lb.BackendActive
		if strings.HasPrefix(b, "~") {
			state, b = lb.BackendTerminating, b[1:]
		}
		ap := netip.MustParseAddrPort(b)
		s.Backends = append(s.Backends, lb.Backend{Addr: ap.Addr(), Port: ap.Port(), Weight: 1, State: state})
	}
	return s
}

// resolved is what the datapath resolves: for each frontend, the backend key of every slot,
// and the backends map by key. It does not depend on IDs or slot bases.
func resolved(t *testing.T, tab *lbtest.Table) string {
	t.Helper()
	backends := tab.Backends()
	var lines []string
	for f, e := range tab.Frontends() {
		var slots []string
		for h := uint32(0); h < e.MaglevSize; h++ {
			b, ok := tab.Lookup(f, h)
			if !ok {
				t.Fatalf("%s: slot %d holds a missing backend", f, h)
			}
			slots = append(slots, b.Key().String())
		}
		lines = append(lines, fmt.Sprintf("%s -> size %d affinity %s [%s]", f, e.MaglevSize, e.AffinityTimeout, strings.Join(slots, " ")))
	}
	for _, b := range backends {
		lines = append(lines, "backend "+b.Key().String()+" "+b.State.String())
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

func newSyncer(t *testing.T, tab *lbtest.Table) *lb.Syncer {
	t.Helper()
	s, err := lb.NewSyncer(tab, lb.SyncerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSyncerProgramsAndIsIdempotent(t *testing.T) {
	tab := lbtest.NewTable(1 << 14)
	s := newSyncer(t, tab)
	desired := []lb.Service{
		svc("a", "203.0.113.1", "198.51.100.1:8080", "198.51.100.2:8080", "198.51.100.3:8080"),
		svc("b", "203.0.113.2", "198.51.100.1:8080", "~198.51.100.4:8080"),
		svc("empty", "203.0.113.3"),
	}
	st, err := s.Set(desired)
	if err != nil {
		t.Fatal(err)
	}
	if st.BackendsUpdated != 4 || st.FrontendsUpdated != 3 || st.TablesWritten != 2 {
		t.Fatalf("first Set: %+v", st)
	}
	fr := tab.Frontends()
	a, b, empty := fr[desired[0].Frontends[0]], fr[desired[1].Frontends[0]], fr[desired[2].Frontends[0]]
	if a.MaglevSize != lb.MaglevSize(3, 0) || b.MaglevSize != lb.MaglevSize(1, 0) || empty.MaglevSize != 0 || a.ServiceID == b.ServiceID {
		t.Fatalf("entries: a %+v b %+v empty %+v", a, b, empty)
	}
	// Every active backend of a has slots; b's terminating backend has none but stays in the
	// backends map, so its established flows keep working.
	seen := map[string]int{}
	for h := uint32(0); h < a.MaglevSize; h++ {
		be, _ := tab.Lookup(desired[0].Frontends[0], h)
		seen[be.Key().String()]++
	}
	if len(seen) != 3 {
		t.Fatalf("a's slots cover %v", seen)
	}
	for h := uint32(0); h < b.MaglevSize; h++ {
		if be, _ := tab.Lookup(desired[1].Frontends[0], h); be.State != lb.BackendActive {
			t.Fatal("a terminating backend must take no new flows")
		}
	}
	if len(tab.Backends()) != 4 {
		t.Fatalf("backends: %v", tab.Backends())
	}
	st, err = s.Set(desired)
	if err != nil || st.Writes() != 0 {
		t.Fatalf("second Set wrote %+v (%v); it must write nothing", st, err)
	}
	if len(tab.Violations) > 0 {
		t.Fatal(tab.Violations)
	}
}

// TestSyncerOrderIndependent: the order of the desired services changes nothing.
func TestSyncerOrderIndependent(t *testing.T) {
	tab := lbtest.NewTable(1 << 14)
	s := newSyncer(t, tab)
	var desired []lb.Service
	for i := 0; i < 20; i++ {
		desired = append(desired, svc(fmt.Sprint("s", i), fmt.Sprintf("203.0.113.%d", i+1), fmt.Sprintf("198.51.100.%d:80", i%7+1), fmt.Sprintf("198.51.100.%d:80", i%5+20)))
	}
	if _, err := s.Set(desired); err != nil {
		t.Fatal(err)
	}
	want := resolved(t, tab)
	r := rand.New(rand.NewSource(7))
	for i := 0; i < 20; i++ {
		r.Shuffle(len(desired), func(i, j int) { desired[i], desired[j] = desired[j], desired[i] })
		st, err := s.Set(desired)
		if err != nil || st.Writes() != 0 || resolved(t, tab) != want {
			t.Fatalf("shuffle %d: %+v %v", i, st, err)
		}
	}
}

// history is a sequence of desired states: services come and go, backends are added,
// removed and terminated, table sizes change.
func history() [][]lb.Service {
	var out [][]lb.Service
	for step := 0; step < 12; step++ {
		var state []lb.Service
		for i := 0; i < 8; i++ {
			if (i+step)%5 == 0 {
				continue // this service is absent in this step
			}
			n := (i+step)%4 + 1
			var backends []string
			for j := 0; j < n; j++ {
				b := fmt.Sprintf("198.51.100.%d:8080", (i*3+j+step)%13+1)
				if j == 0 && step%3 == 1 {
					b = "~" + b
				}
				backends = append(backends, b)
			}
			state = append(state, svc(fmt.Sprint("s", i), fmt.Sprintf("203.0.113.%d", i+1), backends...))
		}
		out = append(out, state)
	}
	return out
}

// TestSyncerConvergesUnderFailures: with writes failing at random (half-applied batches),
// repeating Set converges to what a clean run gives, and at no moment does a frontend point
// at a slot whose backend is missing.
func TestSyncerConvergesUnderFailures(t *testing.T) {
	clean := lbtest.NewTable(1 << 13)
	cs := newSyncer(t, clean)
	faulty := lbtest.NewTable(1 << 13)
	r := rand.New(rand.NewSource(42))
	faulty.Fail = func(string) bool { return r.Intn(3) == 0 }
	fs := newSyncer(t, faulty)
	failures := 0
	for step, desired := range history() {
		if _, err := cs.Set(desired); err != nil {
			t.Fatal(err)
		}
		for try := 0; ; try++ {
			_, err := fs.Set(desired)
			if err == nil {
				break
			}
			if !errors.Is(err, lbtest.ErrInjected) || try > 100 {
				t.Fatalf("step %d: %v", step, err)
			}
			failures++
		}
		if got, want := resolved(t, faulty), resolved(t, clean); got != want {
			t.Fatalf("step %d: after failures the datapath resolves\n%s\nwant\n%s", step, got, want)
		}
		if len(faulty.Violations) > 0 {
			t.Fatalf("step %d: %v", step, faulty.Violations[:1])
		}
	}
	if failures < 10 {
		t.Fatalf("only %d injected failures: the test did not exercise recovery", failures)
	}
	t.Logf("converged through %d injected failures", failures)
}

// TestSyncerRestart: a new Syncer over the same maps (an agent restart) writes nothing for
// the same input and keeps every ID; then a change touches only what changed.
func TestSyncerRestart(t *testing.T) {
	tab := lbtest.NewTable(1 << 14)
	desired := history()[3]
	if _, err := newSyncer(t, tab).Set(desired); err != nil {
		t.Fatal(err)
	}
	beforeF, beforeB := tab.Frontends(), tab.Backends()
	s := newSyncer(t, tab)
	st, err := s.Set(desired)
	if err != nil || st.Writes() != 0 {
		t.Fatalf("Set after restart wrote %+v (%v)", st, err)
	}
	if !equalMaps(tab.Frontends(), beforeF) || !equalMaps(tab.Backends(), beforeB) {
		t.Fatal("IDs or ranges changed across the restart")
	}
	// Drop one backend of one service.
	changed := slices.Clone(desired)
	changed[0].Backends = changed[0].Backends[1:]
	st, err = s.Set(changed)
	if err != nil {
		t.Fatal(err)
	}
	if st.FrontendsDeleted != 0 || st.BackendsUpdated != 0 || st.TablesWritten != 1 {
		t.Fatalf("one backend fewer: %+v", st)
	}
	for id, b := range tab.Backends() {
		if beforeB[id] != b {
			t.Fatalf("backend %d changed: %v -> %v", id, beforeB[id], b)
		}
	}
}

func equalMaps[K comparable, V comparable](a, b map[K]V) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// TestSyncerSlotsExhausted: a service that does not fit is reported; the others work.
func TestSyncerSlotsExhausted(t *testing.T) {
	tab := lbtest.NewTable(lb.MaglevSize(1, 0) + 10)
	s := newSyncer(t, tab)
	_, err := s.Set([]lb.Service{svc("a", "203.0.113.1", "198.51.100.1:80"), svc("b", "203.0.113.2", "198.51.100.2:80")})
	if !errors.Is(err, lb.ErrNoSlots) || !strings.Contains(err.Error(), "ns/b") {
		t.Fatalf("err = %v, want ErrNoSlots naming ns/b", err)
	}
	fr := tab.Frontends()
	if e, ok := fr[svc("a", "203.0.113.1").Frontends[0]]; !ok || e.MaglevSize == 0 {
		t.Fatal("service a must be programmed")
	}
	if _, ok := fr[svc("b", "203.0.113.2").Frontends[0]]; ok {
		t.Fatal("service b cannot be programmed without slots")
	}
	// Removing a frees its slots for b.
	if _, err := s.Set([]lb.Service{svc("b", "203.0.113.2", "198.51.100.2:80")}); err != nil {
		t.Fatal(err)
	}
	if len(tab.Violations) > 0 {
		t.Fatal(tab.Violations)
	}
}

// TestSyncerFailedFrontendWriteThenRemoved: frontends a failed write may have left in the
// maps are deleted once unwanted; their slots are not reused while they might point there.
func TestSyncerFailedFrontendWriteThenRemoved(t *testing.T) {
	tab := lbtest.NewTable(1 << 12)
	failOnce := true
	tab.Fail = func(op string) bool {
		if op == "frontends" && failOnce {
			failOnce = false
			return true
		}
		return false
	}
	s := newSyncer(t, tab)
	a, b := svc("a", "203.0.113.1", "198.51.100.1:80"), svc("b", "203.0.113.2", "198.51.100.2:80")
	if _, err := s.Set([]lb.Service{a, b}); !errors.Is(err, lbtest.ErrInjected) {
		t.Fatalf("first Set: %v, want the injected failure", err)
	}
	c := svc("c", "203.0.113.3", "198.51.100.3:80")
	if _, err := s.Set([]lb.Service{c}); err != nil {
		t.Fatal(err)
	}
	fr := tab.Frontends()
	if len(fr) != 1 {
		t.Fatalf("frontends left: %v; only c's should be", fr)
	}
	if _, ok := tab.Lookup(a.Frontends[0], 0); ok {
		t.Fatal("a's address still balanced (to another service's table)")
	}
	if len(tab.Violations) > 0 {
		t.Fatal(tab.Violations)
	}
}

// TestSyncerFrontendKeptOnOldTable: a frontend moving to a service whose table cannot be
// written keeps its old entry, and that entry's backends stay.
func TestSyncerFrontendKeptOnOldTable(t *testing.T) {
	tab := lbtest.NewTable(lb.MaglevSize(1, 0) + 10)
	s := newSyncer(t, tab)
	a := svc("a", "203.0.113.1", "198.51.100.1:80")
	if _, err := s.Set([]lb.Service{a}); err != nil {
		t.Fatal(err)
	}
	b := svc("b", "203.0.113.1", "198.51.100.2:80") // same frontend, another service
	if _, err := s.Set([]lb.Service{b}); !errors.Is(err, lb.ErrNoSlots) {
		t.Fatalf("Set: %v, want ErrNoSlots", err)
	}
	if be, ok := tab.Lookup(a.Frontends[0], 0); !ok || be.Addr != a.Backends[0].Addr {
		t.Fatalf("the frontend must keep a's table and backend, got %v %v", be, ok)
	}
	if len(tab.Violations) > 0 {
		t.Fatal(tab.Violations)
	}
}

// TestSyncerPrunesAffinity: a client sticks only to a backend its service still sends new
// flows to; a removed service's affinity goes (its ID may be reused).
func TestSyncerPrunesAffinity(t *testing.T) {
	tab := lbtest.NewTable(1 << 14)
	s := newSyncer(t, tab)
	a := svc("a", "203.0.113.1", "198.51.100.1:80", "198.51.100.2:80", "198.51.100.3:80")
	a.Affinity, a.AffinityTimeout = lb.AffinityClientIP, time.Hour
	other := svc("other", "203.0.113.2", "198.51.100.9:80")
	other.Affinity, other.AffinityTimeout = lb.AffinityClientIP, time.Hour
	if _, err := s.Set([]lb.Service{a, other}); err != nil {
		t.Fatal(err)
	}
	id := map[string]uint32{}
	for bid, b := range tab.Backends() {
		id[b.Key().String()] = bid
	}
	fr := tab.Frontends()
	aID, otherID := fr[a.Frontends[0]].ServiceID, fr[other.Frontends[0]].ServiceID
	c1 := lbtest.AffinityKey{ServiceID: aID, Client: netip.MustParseAddr("198.18.0.1")}
	c3 := lbtest.AffinityKey{ServiceID: aID, Client: netip.MustParseAddr("198.18.0.3")}
	co := lbtest.AffinityKey{ServiceID: otherID, Client: netip.MustParseAddr("198.18.0.1")}
	tab.PutAffinity(c1, id["198.51.100.1:80"])
	tab.PutAffinity(c3, id["198.51.100.3:80"])
	tab.PutAffinity(co, id["198.51.100.9:80"])

	// Backend 3 terminates: no new sessions stick to it.
	a.Backends[2].State = lb.BackendTerminating
	if _, err := s.Set([]lb.Service{a, other}); err != nil {
		t.Fatal(err)
	}
	got := tab.Affinity()
	if _, ok := got[c3]; ok || got[c1] != id["198.51.100.1:80"] || got[co] == 0 {
		t.Fatalf("after backend 3 terminated: %v", got)
	}
	// Service a goes: its affinity goes; the other service's stays.
	if _, err := s.Set([]lb.Service{other}); err != nil {
		t.Fatal(err)
	}
	got = tab.Affinity()
	if _, ok := got[c1]; ok || len(got) != 1 || got[co] == 0 {
		t.Fatalf("after service a was removed: %v", got)
	}
}

// TestSyncerSourceRanges: a Service's restricted frontends admit only its source ranges,
// its other frontends everybody; changed ranges replace the old ones, a Service no longer
// restricted leaves no range behind. The ranges are in place before a frontend checks them:
// when writing them fails, the frontend is not restricted yet (no client is locked out by
// a half-done Set), and the next Set finishes. A restart reads them back and writes nothing.
func TestSyncerSourceRanges(t *testing.T) {
	tab := lbtest.NewTable(1024)
	s := newSyncer(t, tab)
	lbAddr, extAddr := lb.Frontend{Addr: netip.MustParseAddr("203.0.113.1"), Port: 80, Protocol: lb.TCP}, lb.Frontend{Addr: netip.MustParseAddr("203.0.113.9"), Port: 80, Protocol: lb.TCP}
	restricted := func(ranges ...string) lb.Service {
		v := svc("web", "203.0.113.1", "10.1.0.1:8080")
		v.Frontends = []lb.Frontend{lbAddr, extAddr}
		if ranges != nil {
			v.Restricted = []lb.Frontend{lbAddr}
		}
		for _, r := range ranges {
			v.SourceRanges = append(v.SourceRanges, netip.MustParsePrefix(r))
		}
		return v
	}
	admits := func(f lb.Frontend, client string) bool { return tab.Admits(f, netip.MustParseAddr(client)) }
	set := func(v lb.Service) error {
		_, err := s.Set([]lb.Service{v})
		return err
	}
	ranges := func() string {
		got, _ := tab.SourceRanges()
		return fmt.Sprint(got)
	}

	if err := set(restricted()); err != nil {
		t.Fatal(err)
	}
	tab.Fail = func(op string) bool { return op == "source-ranges" }
	if err := set(restricted("10.0.0.0/8", "192.0.2.0/24")); err == nil {
		t.Fatal("a failed write of source ranges was not reported")
	}
	if !admits(lbAddr, "10.1.1.1") || !admits(lbAddr, "198.51.100.1") {
		t.Fatal("a frontend checks source ranges that could not be written")
	}
	tab.Fail = nil
	if err := set(restricted("10.0.0.0/8", "192.0.2.0/24")); err != nil {
		t.Fatal(err)
	}
	if !admits(lbAddr, "10.1.1.1") || !admits(lbAddr, "192.0.2.7") || admits(lbAddr, "198.51.100.1") || !admits(extAddr, "198.51.100.1") {
		t.Fatalf("restricted: %s admits 10.1.1.1 %v, 192.0.2.7 %v, 198.51.100.1 %v; %s admits 198.51.100.1 %v", lbAddr,
			admits(lbAddr, "10.1.1.1"), admits(lbAddr, "192.0.2.7"), admits(lbAddr, "198.51.100.1"), extAddr, admits(extAddr, "198.51.100.1"))
	}

	before := tab.Writes["source-ranges"]
	s2 := newSyncer(t, tab)
	if _, err := s2.Set([]lb.Service{restricted("192.0.2.0/24", "10.0.0.0/8")}); err != nil {
		t.Fatal(err)
	}
	if tab.Writes["source-ranges"] != before {
		t.Fatalf("after a restart, the same ranges were written again (%d writes)", tab.Writes["source-ranges"]-before)
	}
	s = s2

	if err := set(restricted("198.51.100.0/24")); err != nil {
		t.Fatal(err)
	}
	if admits(lbAddr, "10.1.1.1") || !admits(lbAddr, "198.51.100.1") || ranges() != "map[1:[198.51.100.0/24]]" {
		t.Fatalf("changed ranges: table holds %s", ranges())
	}
	closed := restricted("10.0.0.0/8")
	closed.SourceRanges = nil // every range given was invalid: nobody is admitted
	if err := set(closed); err != nil {
		t.Fatal(err)
	}
	if admits(lbAddr, "10.1.1.1") || admits(lbAddr, "198.51.100.1") || !admits(extAddr, "198.51.100.1") {
		t.Fatalf("restricted without ranges: admits 10.1.1.1 %v, 198.51.100.1 %v", admits(lbAddr, "10.1.1.1"), admits(lbAddr, "198.51.100.1"))
	}
	if err := set(restricted()); err != nil {
		t.Fatal(err)
	}
	if !admits(lbAddr, "10.1.1.1") || ranges() != "map[]" {
		t.Fatalf("no longer restricted: admits 10.1.1.1 %v, table holds %s", admits(lbAddr, "10.1.1.1"), ranges())
	}
	if err := set(restricted("10.0.0.0/8")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Set(nil); err != nil {
		t.Fatal(err)
	}
	if ranges() != "map[]" {
		t.Fatalf("the Service is gone, its ranges are not: %s", ranges())
	}
}

// TestSyncerSourceRangesIDReuse: a service's ranges left in the map (their removal failed,
// then the agent restarted) never admit clients to a new service: its ID is not handed out
// again while they are there, and they are removed.
func TestSyncerSourceRangesIDReuse(t *testing.T) {
	tab := lbtest.NewTable(1024)
	s := newSyncer(t, tab)
	restricted := func(name, vip, prefix string) lb.Service {
		v := svc(name, vip, "10.1.0.1:8080")
		v.Restricted, v.SourceRanges = v.Frontends, []netip.Prefix{netip.MustParsePrefix(prefix)}
		return v
	}
	if _, err := s.Set([]lb.Service{restricted("a", "203.0.113.1", "10.0.0.0/8")}); err != nil {
		t.Fatal(err)
	}
	tab.Fail = func(op string) bool { return op == "source-ranges" }
	if _, err := s.Set(nil); err == nil {
		t.Fatal("a failed removal of source ranges was not reported")
	}
	tab.Fail = nil
	s = newSyncer(t, tab) // a restart, with a's ranges still in the map
	b := restricted("b", "203.0.113.2", "192.168.0.0/16")
	calls := 0
	tab.Fail = func(op string) bool { // b's ranges are written; the old ones' removal fails again
		if op == "source-ranges" {
			calls++
			return calls == 2
		}
		return false
	}
	if _, err := s.Set([]lb.Service{b}); err == nil {
		t.Fatal("the failed removal was not reported")
	}
	if tab.Admits(b.Frontends[0], netip.MustParseAddr("10.9.9.9")) || !tab.Admits(b.Frontends[0], netip.MustParseAddr("192.168.1.1")) {
		t.Fatal("the new service admits the old one's clients, or not its own")
	}
	tab.Fail = nil
	if _, err := s.Set([]lb.Service{b}); err != nil {
		t.Fatal(err)
	}
	got, _ := tab.SourceRanges()
	if len(got) != 1 || fmt.Sprint(got[tab.Frontends()[b.Frontends[0]].ServiceID]) != "[192.168.0.0/16]" {
		t.Fatalf("the map holds %v, want only b's range", got)
	}
}

// TestSyncerBackendMovesNode: a backend that becomes remote (its endpoint's node is no longer
// this one) is written again, so the datapath starts SNATing new flows to it.
func TestSyncerBackendMovesNode(t *testing.T) {
	tab := lbtest.NewTable(1 << 12)
	s := newSyncer(t, tab)
	desired := []lb.Service{svc("a", "203.0.113.1", "198.51.100.1:8080")}
	if _, err := s.Set(desired); err != nil {
		t.Fatal(err)
	}
	desired[0].Backends[0].Remote = true
	st, err := s.Set(desired)
	if err != nil || st.BackendsUpdated != 1 {
		t.Fatalf("Set after the backend became remote: %+v, %v; want one backend written", st, err)
	}
	for _, b := range tab.Backends() {
		if !b.Remote {
			t.Errorf("backend %s in the table is not remote", b)
		}
	}
}
