package lb

import (
	"cmp"
	"encoding/binary"
	"slices"

	"github.com/sluice-lb/sluice/internal/hashing"
)

// BuildMaglev returns the Maglev lookup table of size slots for a Service's backends: slot i
// holds the ID of the backend that new flows hashing to i go to. Only Active backends with a
// non-zero weight take part; when there is none, or size is 0, the table is empty and the
// caller treats the Service as having no backend.
//
// size must be prime (use MaglevSize); a non-prime size would leave the permutations
// incomplete, so BuildMaglev panics on one rather than loop or return a skewed table.
//
// The table depends only on each backend's address, port and weight, never on the order of
// backends or on their IDs' values (an ID is only what is written into a slot), so every node
// builds the same table for the same backend set and a flow picks the same backend wherever
// it lands. Two backends with the same address and port are a caller error: they share one
// permutation and split its slots by ID order.
//
// Weights are honoured with the credit scheme of Katran's and Envoy's weighted Maglev: the
// backends take turns as in the paper, but in each round a backend earns its weight as
// credit and claims a slot only for every full maximum weight it has saved up, so a
// backend of weight w claims w/max of the rounds and ends with a share of the table
// proportional to w, within two slots (see fillWeighted).
func BuildMaglev(backends []Backend, size uint32) []uint32 {
	if size == 0 {
		return nil
	}
	if !isPrime(size) {
		panic("lb: Maglev table size must be prime")
	}
	live := make([]Backend, 0, len(backends))
	for _, b := range backends {
		if b.State == BackendActive && b.Weight > 0 {
			live = append(live, b)
		}
	}
	if len(live) == 0 {
		return nil
	}
	table := make([]uint32, size)
	if len(live) == 1 {
		for i := range table {
			table[i] = live[0].ID
		}
		return table
	}
	slices.SortFunc(live, func(a, b Backend) int {
		return cmp.Or(a.Addr.Compare(b.Addr), cmp.Compare(a.Port, b.Port), cmp.Compare(a.ID, b.ID))
	})

	f := newMaglevFill(live, table)
	if slices.ContainsFunc(live, func(b Backend) bool { return b.Weight != live[0].Weight }) {
		f.fillWeighted(live)
	} else {
		// Equal weights: every backend claims a slot in every round.
		for f.left > 0 {
			for i := 0; i < len(live) && f.left > 0; i++ {
				f.claim(i)
			}
		}
	}
	for s, o := range table {
		table[s] = live[o].ID
	}
	return table
}

// maglevFill is a Maglev table being filled.
type maglevFill struct {
	size uint32
	// The permutation of backend i is offset_i + j*skip[i] (mod size) for j = 0, 1, ...;
	// pos[i] is where its next claim starts looking.
	pos   []uint32
	skip  []uint32
	owner []uint32 // index of the backend owning each slot, or maglevFree
	left  uint32   // slots still free
}

const maglevFree = ^uint32(0)

// newMaglevFill starts filling owner, of a prime size, for the backends live.
func newMaglevFill(live []Backend, owner []uint32) *maglevFill {
	size := uint32(len(owner))
	f := &maglevFill{
		size:  size,
		pos:   make([]uint32, len(live)),
		skip:  make([]uint32, len(live)),
		owner: owner,
		left:  size,
	}
	for i, b := range live {
		h1, h2 := maglevHashes(b)
		f.pos[i] = uint32(h1 % uint64(size))
		f.skip[i] = uint32(h2%uint64(size-1)) + 1
	}
	for s := range f.owner {
		f.owner[s] = maglevFree
	}
	return f
}

// claim gives backend i the next free slot of its permutation.
func (f *maglevFill) claim(i int) {
	p := f.pos[i]
	for f.owner[p] != maglevFree {
		p = stepMod(p, f.skip[i], f.size)
	}
	f.owner[p] = uint32(i)
	f.pos[i] = stepMod(p, f.skip[i], f.size)
	f.left--
}

// fillWeighted fills the table with weighted turns. In round r = 1, 2, ... backend i adds
// its weight w to a credit that starts at max/2 (so shares round to the nearest slot, not
// down) and claims a slot when the credit reaches max, the largest weight, which it then
// pays. As w ≤ max it claims at most once a round, and its k-th claim falls in round
// ceil((k·max − max/2) / w); within a round backends go in order. Rather than walk every
// backend through every round, which costs rounds × backends when one weight dwarfs the
// others, a heap yields the claims in that (round, backend) order directly.
func (f *maglevFill) fillWeighted(live []Backend) {
	maxWeight := uint64(0)
	for _, b := range live {
		maxWeight = max(maxWeight, uint64(b.Weight))
	}
	start := maxWeight / 2
	claims := make([]uint64, len(live)) // claims made so far
	roundOf := func(i int) uint64 {     // the round of backend i's next claim
		w := uint64(live[i].Weight)
		return ((claims[i]+1)*maxWeight - start + w - 1) / w
	}
	h := make(turns, len(live))
	for i := range live {
		h[i] = turn{round: roundOf(i), backend: uint32(i)}
	}
	for i := len(h)/2 - 1; i >= 0; i-- {
		h.down(i)
	}
	for f.left > 0 {
		i := int(h[0].backend)
		f.claim(i)
		claims[i]++
		h[0].round = roundOf(i)
		h.down(0)
	}
}

// turn is a backend's next claim.
type turn struct {
	round   uint64
	backend uint32
}

// turns is a binary min-heap of turns by (round, backend).
type turns []turn

func (h turns) less(a, b int) bool {
	return h[a].round < h[b].round || h[a].round == h[b].round && h[a].backend < h[b].backend
}

func (h turns) down(i int) {
	for {
		c := 2*i + 1
		if c >= len(h) {
			return
		}
		if c+1 < len(h) && h.less(c+1, c) {
			c++
		}
		if !h.less(c, i) {
			return
		}
		h[i], h[c] = h[c], h[i]
		i = c
	}
}

// stepMod returns (p + skip) mod size for p, skip < size without overflowing 32 bits.
func stepMod(p, skip, size uint32) uint32 {
	if p >= size-skip {
		return p - (size - skip)
	}
	return p + skip
}

// The two seeds of the permutation hashes. They, maglevKey and hash64 are part of the
// cross-node contract: changing any of them changes every table, so nodes running different
// versions would send the same flow to different backends during an upgrade. TestMaglevGolden
// pins them.
const (
	maglevSeedOffset = 0x5eed_0ff5_e7ed_a7a0
	maglevSeedSkip   = 0x5eed_5c1b_d15c_0b01
)

// maglevHashes returns the offset and skip hashes of a backend.
func maglevHashes(b Backend) (uint64, uint64) {
	k := maglevKey(b)
	return hashing.Sum64(k[:], maglevSeedOffset), hashing.Sum64(k[:], maglevSeedSkip)
}

// maglevKey is the stable identity of a backend for Maglev: its address as 16 bytes (IPv4
// mapped into IPv6) followed by its port, big-endian.
func maglevKey(b Backend) [18]byte {
	var k [18]byte
	a := b.Addr.Unmap().As16()
	copy(k[:16], a[:])
	binary.BigEndian.PutUint16(k[16:], b.Port)
	return k
}
