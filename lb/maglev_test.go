package lb

import (
	"cmp"
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
)

// testBackends returns n active backends of weight 1 with IDs 1..n: 10.0.i/256.i%256:8080,
// or the IPv6 equivalent.
func testBackends(n int, v6 bool) []Backend {
	out := make([]Backend, n)
	for i := range out {
		a := netip.AddrFrom4([4]byte{10, 0, byte(i / 256), byte(i % 256)})
		if v6 {
			a = netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 14: byte(i / 256), 15: byte(i % 256)})
		}
		out[i] = Backend{ID: uint32(i + 1), Addr: a, Port: 8080, Weight: 1}
	}
	return out
}

// shares counts the slots of each ID.
func shares(table []uint32) map[uint32]int {
	m := map[uint32]int{}
	for _, id := range table {
		m[id]++
	}
	return m
}

// maxDeviation returns the largest relative deviation of a backend's share from its weighted
// fair share.
func maxDeviation(table []uint32, backends []Backend) float64 {
	total := 0
	for _, b := range backends {
		total += int(b.Weight)
	}
	got := shares(table)
	worst := 0.0
	for _, b := range backends {
		fair := float64(len(table)) * float64(b.Weight) / float64(total)
		worst = max(worst, math.Abs(float64(got[b.ID])-fair)/fair)
	}
	return worst
}

// maxSlotDeviation returns the largest deviation, in slots, of a backend's share from its
// weighted fair share.
func maxSlotDeviation(table []uint32, backends []Backend) float64 {
	total := 0
	for _, b := range backends {
		total += int(b.Weight)
	}
	got := shares(table)
	worst := 0.0
	for _, b := range backends {
		fair := float64(len(table)) * float64(b.Weight) / float64(total)
		worst = max(worst, math.Abs(float64(got[b.ID])-fair))
	}
	return worst
}

func TestMaglevBalance(t *testing.T) {
	for _, n := range []int{2, 3, 10, 100, 1000} {
		for _, v6 := range []bool{false, true} {
			t.Run(fmt.Sprintf("%d/v6=%v", n, v6), func(t *testing.T) {
				bs := testBackends(n, v6)
				size := MaglevSize(n, 0)
				table := BuildMaglev(bs, size)
				if len(table) != int(size) {
					t.Fatalf("len = %d, want %d", len(table), size)
				}
				if got := len(shares(table)); got != n {
					t.Fatalf("%d backends own slots, want %d", got, n)
				}
				dev := maxDeviation(table, bs)
				t.Logf("M=%d: max deviation from an even share %.2f%%", size, 100*dev)
				// Equal weights fill round-robin: every share is floor or ceil of M/n.
				if dev > 0.01 || maxSlotDeviation(table, bs) > 1 {
					t.Errorf("max deviation %.2f%% > 1%% or more than one slot", 100*dev)
				}
			})
		}
	}
}

func TestMaglevWeights(t *testing.T) {
	for _, tc := range []struct {
		weights []uint16
		minimum uint32
		bound   float64
	}{
		{[]uint16{1, 2, 3}, 0, 0.02},
		{[]uint16{1, 2, 3}, 65521, 0.001},
		{[]uint16{10, 20, 30}, 0, 0.02},
		{[]uint16{3, 5, 7}, 0, 0.02},
		{[]uint16{1, 1, 1, 1, 4}, 0, 0.02},
		{[]uint16{1, 10}, 0, 0.02},
		{[]uint16{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, 0, 0.03},
		{[]uint16{100, 100, 100, 100, 100, 100, 100, 100, 100, 50}, 0, 0.02},
		{[]uint16{1, 1000}, 65521, 0.01},
	} {
		t.Run(fmt.Sprint(tc.weights, tc.minimum), func(t *testing.T) {
			bs := testBackends(len(tc.weights), false)
			for i, w := range tc.weights {
				bs[i].Weight = w
			}
			size := MaglevSize(len(bs), tc.minimum)
			table := BuildMaglev(bs, size)
			got := shares(table)
			var counts []int
			for _, b := range bs {
				counts = append(counts, got[b.ID])
			}
			dev := maxDeviation(table, bs)
			t.Logf("M=%d: slots %v, max deviation from the weighted share %.2f%%", size, counts, 100*dev)
			if dev > tc.bound {
				t.Errorf("max deviation %.2f%% > %.2f%%", 100*dev, 100*tc.bound)
			}
			// Rounds leave each share within a slot and a half of its weighted share.
			if d := maxSlotDeviation(table, bs); d > 2 {
				t.Errorf("a share is %.2f slots from its weighted share, want at most 2", d)
			}
		})
	}
}

// moved counts the slots whose owner changed, except those owned by skip in either table.
func moved(before, after []uint32, skip uint32) int {
	n := 0
	for i := range before {
		if before[i] != after[i] && before[i] != skip && after[i] != skip {
			n++
		}
	}
	return n
}

// TestMaglevDisruption removes (and adds) each backend in turn and counts the slots of the
// other backends that change owner: the flows of backends that did not change and that
// Maglev moves anyway. The backend counts are chosen so that MaglevSize does not change.
func TestMaglevDisruption(t *testing.T) {
	for _, n := range []int{5, 10, 20, 40, 100} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			bs := testBackends(n, false)
			size := MaglevSize(n, 0)
			if MaglevSize(n-1, 0) != size {
				t.Fatalf("size changes between %d and %d backends", n-1, n)
			}
			full := BuildMaglev(bs, size)
			worstRemove, worstAdd, sumRemove := 0, 0, 0
			for i := range bs {
				rest := slices.Delete(slices.Clone(bs), i, i+1)
				less := BuildMaglev(rest, size)
				for s := range full {
					if full[s] == bs[i].ID && less[s] == bs[i].ID {
						t.Fatalf("removed backend still owns slot %d", s)
					}
				}
				m := moved(full, less, bs[i].ID)
				sumRemove += m
				worstRemove = max(worstRemove, m)
				// Adding backend i to the others is the same change in reverse.
				worstAdd = max(worstAdd, moved(less, full, bs[i].ID))
			}
			pct := func(x int) float64 { return 100 * float64(x) / float64(size) }
			t.Logf("M=%d, %d backends: removing one moves %.2f%% of the table on average, %.2f%% at worst, beyond its own %.2f%%; adding one %.2f%% at worst",
				size, n, pct(sumRemove)/float64(n), pct(worstRemove), 100/float64(n), pct(worstAdd))
			// Maglev moves more the fewer slots each backend has: at about 100 slots per
			// backend 2–3.5 % of the table, at 160 about 1.4 %.
			if pct(worstRemove) > 4 || pct(worstAdd) > 4 || pct(sumRemove)/float64(n) > 2.5 {
				t.Errorf("disruption above bounds: remove %.2f%% (average %.2f%%), add %.2f%%",
					pct(worstRemove), pct(sumRemove)/float64(n), pct(worstAdd))
			}
		})
	}
}

// TestMaglevDisruptionWeight changes one backend's weight and counts the slots that move
// between the other backends.
func TestMaglevDisruptionWeight(t *testing.T) {
	bs := testBackends(10, false)
	size := MaglevSize(10, 0)
	before := BuildMaglev(bs, size)
	bs[3].Weight = 2
	after := BuildMaglev(bs, size)
	m := moved(before, after, bs[3].ID)
	t.Logf("M=%d: doubling one of 10 weights moves %.2f%% of the table between the others", size, 100*float64(m)/float64(size))
	if float64(m) > 0.05*float64(size) {
		t.Errorf("%d slots moved between unchanged backends", m)
	}
}

// TestMaglevResize shows why MaglevSize keeps the size on a ladder: a new size reshuffles
// the table.
func TestMaglevResize(t *testing.T) {
	bs := testBackends(10, false)
	before := BuildMaglev(bs[:9], nextPrime(900))
	after := BuildMaglev(bs, nextPrime(1000))
	n := 0
	for s := range min(len(before), len(after)) {
		if before[s] != after[s] && after[s] != bs[9].ID {
			n++
		}
	}
	t.Logf("sizing to the smallest prime ≥ 100×n (907 → 1009) would move about %.0f%% of the table when a 10th backend is added",
		100*float64(n)/float64(min(len(before), len(after))))
	if MaglevSize(9, 0) != MaglevSize(10, 0) {
		t.Errorf("MaglevSize(9) = %d, MaglevSize(10) = %d: want the same ladder step", MaglevSize(9, 0), MaglevSize(10, 0))
	}
}

func TestMaglevDeterministic(t *testing.T) {
	bs := testBackends(37, true)
	bs[5].Weight, bs[20].Weight = 3, 2
	size := MaglevSize(len(bs), 0)
	want := BuildMaglev(bs, size)
	if again := BuildMaglev(bs, size); !slices.Equal(again, want) {
		t.Fatal("two calls differ")
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 50 {
		shuffled := slices.Clone(bs)
		rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		if got := BuildMaglev(shuffled, size); !slices.Equal(got, want) {
			t.Fatal("shuffled input gives a different table")
		}
	}
	// Another node numbers the same backends differently: the same backend owns each slot.
	renumbered := slices.Clone(bs)
	for i := range renumbered {
		renumbered[i].ID = uint32(1000 - i)
	}
	got := BuildMaglev(renumbered, size)
	for s := range got {
		if int(1000-got[s]) != int(want[s]-1) {
			t.Fatalf("slot %d: backend %d, want %d", s, 1000-got[s], want[s]-1)
		}
	}
	// Terminating and zero-weight backends are not in the table, wherever they are listed.
	extra := append(slices.Clone(bs),
		Backend{ID: 900, Addr: netip.MustParseAddr("2001:db8::ffff"), Port: 1, Weight: 1, State: BackendTerminating},
		Backend{ID: 901, Addr: netip.MustParseAddr("2001:db8::fffe"), Port: 1, Weight: 0})
	if got := BuildMaglev(extra, size); !slices.Equal(got, want) {
		t.Fatal("a terminating or zero-weight backend changes the table")
	}
}

// TestMaglevGolden pins the tables of fixed backend sets. Every node, whatever its version,
// must build the same table: if this fails, the hash or the fill changed, and nodes on both
// sides of an upgrade would disagree.
func TestMaglevGolden(t *testing.T) {
	v4 := testBackends(3, false)
	v6 := testBackends(5, true)
	v6[0].Weight, v6[4].Weight = 2, 3
	for _, tc := range []struct {
		name     string
		bs       []Backend
		head     []uint32
		checksum uint64
	}{
		{"v4", v4, []uint32{2, 3, 3, 3, 2, 2, 2, 3, 3, 1, 3, 3, 1, 3, 2, 1}, 0x1370886620f07476},
		{"v6-weighted", v6, []uint32{3, 1, 1, 5, 1, 5, 3, 5, 4, 2, 3, 1, 2, 5, 5, 3}, 0x60158251afd212c4},
	} {
		table := BuildMaglev(tc.bs, MaglevSize(len(tc.bs), 0))
		h := fnv.New64a()
		for _, id := range table {
			h.Write([]byte{byte(id), byte(id >> 8), byte(id >> 16), byte(id >> 24)})
		}
		t.Logf("%s: head %v checksum %#x", tc.name, table[:16], h.Sum64())
		if !slices.Equal(table[:16], tc.head) || h.Sum64() != tc.checksum {
			t.Errorf("%s: head %v checksum %#x, want %v %#x", tc.name, table[:16], h.Sum64(), tc.head, tc.checksum)
		}
	}
}

func TestMaglevEmpty(t *testing.T) {
	one := testBackends(1, false)
	for _, tc := range []struct {
		name string
		bs   []Backend
		size uint32
	}{
		{"no backends", nil, 251},
		{"size 0", one, 0},
		{"zero weight", []Backend{{ID: 1, Addr: one[0].Addr, Port: 1}}, 251},
		{"terminating", []Backend{{ID: 1, Addr: one[0].Addr, Port: 1, Weight: 1, State: BackendTerminating}}, 251},
	} {
		if got := BuildMaglev(tc.bs, tc.size); len(got) != 0 {
			t.Errorf("%s: %d slots, want none", tc.name, len(got))
		}
	}
	table := BuildMaglev(one, 251)
	if len(table) != 251 || len(shares(table)) != 1 || table[0] != 1 {
		t.Errorf("single backend: %d slots, owners %v", len(table), shares(table))
	}
}

// maglevRounds is the weighted fill as Katran and Envoy write it, every backend through
// every round: the reference fillWeighted must match slot for slot.
func maglevRounds(backends []Backend, size uint32) []uint32 {
	var live []Backend
	for _, b := range backends {
		if b.State == BackendActive && b.Weight > 0 {
			live = append(live, b)
		}
	}
	slices.SortFunc(live, func(a, b Backend) int {
		return cmp.Or(a.Addr.Compare(b.Addr), cmp.Compare(a.Port, b.Port), cmp.Compare(a.ID, b.ID))
	})
	maxWeight := uint32(0)
	for _, b := range live {
		maxWeight = max(maxWeight, uint32(b.Weight))
	}
	credit := make([]uint32, len(live))
	for i := range credit {
		credit[i] = maxWeight / 2
	}
	table := make([]uint32, size)
	f := newMaglevFill(live, table)
	for f.left > 0 {
		for i := 0; i < len(live) && f.left > 0; i++ {
			if credit[i] += uint32(live[i].Weight); credit[i] >= maxWeight {
				credit[i] -= maxWeight
				f.claim(i)
			}
		}
	}
	for s, o := range table {
		table[s] = live[o].ID
	}
	return table
}

func TestMaglevWeightedMatchesRounds(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	for range 200 {
		bs := testBackends(2+rng.IntN(40), rng.IntN(2) == 0)
		top := []int{2, 10, 1000, 65536}[rng.IntN(4)]
		for i := range bs {
			bs[i].Weight = uint16(rng.IntN(top))
		}
		size := MaglevSize(len(bs), uint32(rng.IntN(3000)))
		want := maglevRounds(bs, size)
		if len(BuildMaglev(bs, size)) == 0 {
			want = nil
		}
		if got := BuildMaglev(bs, size); !slices.Equal(got, want) {
			t.Fatalf("weights %v, M=%d: heap and rounds differ", bs, size)
		}
	}
}

func TestMaglevNonPrimePanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("no panic for size 1000")
		}
	}()
	BuildMaglev(testBackends(2, false), 1000)
}

func BenchmarkBuildMaglev(b *testing.B) {
	for _, weighted := range []bool{false, true} {
		for _, n := range []int{2, 10, 100, 1000} {
			bs := testBackends(n, false)
			name := fmt.Sprintf("backends=%d/M=%d", n, MaglevSize(n, 0))
			if weighted {
				// The costliest case: one weight dwarfs the others.
				bs[0].Weight = math.MaxUint16
				name += "/skewed"
			}
			size := MaglevSize(n, 0)
			b.Run(name, func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					BuildMaglev(bs, size)
				}
			})
		}
	}
}
