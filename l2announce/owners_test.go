package l2announce

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"
)

func addrsN(n int) []netip.Addr {
	var out []netip.Addr
	a := netip.MustParseAddr("203.0.113.0")
	for range n {
		out = append(out, a)
		a = a.Next()
	}
	return out
}

func wantAll(addrs []netip.Addr, nodes ...string) []Want {
	var w []Want
	for _, a := range addrs {
		w = append(w, Want{Addr: a, Nodes: nodes})
	}
	return w
}

func loads(owners map[netip.Addr]string) map[string]int {
	l := map[string]int{}
	for _, n := range owners {
		l[n]++
	}
	return l
}

// TestAssignBalanced: 100 addresses over 3 nodes: 34, 33, 33 — for many sets of names.
func TestAssignBalanced(t *testing.T) {
	for i := range 50 {
		nodes := []string{fmt.Sprintf("node-%d-a", i), fmt.Sprintf("node-%d-b", i), fmt.Sprintf("worker%d", i)}
		l := loads(Assign(wantAll(addrsN(100), nodes...)))
		for _, n := range nodes {
			if l[n] < 33 || l[n] > 34 {
				t.Fatalf("nodes %v: loads %v, want 33 or 34 each", nodes, l)
			}
		}
	}
}

// TestAssignDeterministic: any order of wants and of nodes gives the same owners.
func TestAssignDeterministic(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	base := wantAll(addrsN(60), "a", "b", "c", "d")
	want := Assign(base)
	for range 20 {
		shuffled := make([]Want, len(base))
		for i, w := range base {
			nodes := []string{"a", "b", "c", "d"}
			rng.Shuffle(len(nodes), func(i, j int) { nodes[i], nodes[j] = nodes[j], nodes[i] })
			shuffled[i] = Want{Addr: w.Addr, Nodes: nodes}
		}
		rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		got := Assign(shuffled)
		for a, n := range want {
			if got[a] != n {
				t.Fatalf("%v: %s, then %s", a, n, got[a])
			}
		}
	}
}

// TestAssignNodeLeaves: when a node leaves, its addresses go to the others and few of the
// others' addresses move.
func TestAssignNodeLeaves(t *testing.T) {
	addrs := addrsN(100)
	before := Assign(wantAll(addrs, "a", "b", "c"))
	after := Assign(wantAll(addrs, "a", "b"))
	moved := 0
	for _, a := range addrs {
		switch {
		case after[a] == "c" || after[a] == "":
			t.Fatalf("%v owned by %q after c left", a, after[a])
		case before[a] != "c" && before[a] != after[a]:
			moved++
		}
	}
	if moved > 10 {
		t.Errorf("%d addresses of the remaining nodes moved when c left, want few", moved)
	}
	l := loads(after)
	if l["a"] != 50 || l["b"] != 50 {
		t.Errorf("loads after c left: %v", l)
	}
}

// TestAssignEligibility: an address goes only to one of its own nodes, even past the
// share; one without nodes has no owner.
func TestAssignEligibility(t *testing.T) {
	addrs := addrsN(10)
	wants := wantAll(addrs[:8], "a", "b")
	wants = append(wants, Want{Addr: addrs[8], Nodes: []string{"c"}}, Want{Addr: addrs[9]})
	owners := Assign(wants)
	if owners[addrs[8]] != "c" {
		t.Errorf("address only c may answer for: owner %q", owners[addrs[8]])
	}
	if o, ok := owners[addrs[9]]; ok {
		t.Errorf("address without nodes: owner %q", o)
	}
	for _, a := range addrs[:8] {
		if owners[a] != "a" && owners[a] != "b" {
			t.Errorf("%v: owner %q, want a or b", a, owners[a])
		}
	}
}

// TestAssignPinned: the owners agents of every version must agree on during a rolling
// upgrade. A change here changes who answers for what after an upgrade.
func TestAssignPinned(t *testing.T) {
	owners := Assign(wantAll(addrsN(6), "node-a", "node-b", "node-c"))
	for _, want := range [][2]string{
		{"203.0.113.0", "node-a"}, {"203.0.113.1", "node-b"}, {"203.0.113.2", "node-c"},
		{"203.0.113.3", "node-b"}, {"203.0.113.4", "node-a"}, {"203.0.113.5", "node-c"},
	} {
		if got := owners[netip.MustParseAddr(want[0])]; got != want[1] {
			t.Errorf("%s: owner %s, want %s", want[0], got, want[1])
		}
	}
}
