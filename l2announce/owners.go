package l2announce

import (
	"cmp"
	"net/netip"
	"slices"

	"github.com/sluice-lb/sluice/internal/hashing"
)

// Want is an address to answer for and the nodes that may answer for it: those an
// L2Advertisement admits that are alive, not excluded, have the interface and, for
// externalTrafficPolicy Local, a ready endpoint.
type Want struct {
	Addr  netip.Addr
	Nodes []string
}

// Assign picks one owner per address, the same on every node given the same wants: each
// address goes to the first of its nodes, ranked by a hash of address and node (rendezvous
// hashing), that has not had its share — the number of addresses over the number of nodes,
// rounded down, and one more for as many nodes as the division leaves over — or, when all of
// them have, to the first. Addresses are taken in order, so the result depends only on the
// wants, not on their order.
//
// The shares keep the spread even (100 addresses over 3 nodes: 34, 33, 33), and the ranking
// keeps it stable: a node leaving moves its own addresses and, as the shares grow, few
// others. An address without nodes has no owner.
func Assign(wants []Want) map[netip.Addr]string {
	sorted := slices.Clone(wants)
	slices.SortStableFunc(sorted, func(a, b Want) int { return a.Addr.Compare(b.Addr) })
	sorted = slices.CompactFunc(sorted, func(a, b Want) bool { return a.Addr == b.Addr }) // the first listing counts
	nodes := map[string]bool{}
	for _, w := range sorted {
		for _, n := range w.Nodes {
			nodes[n] = true
		}
	}
	owners := make(map[netip.Addr]string, len(sorted))
	if len(nodes) == 0 {
		return owners
	}
	share, over := len(sorted)/len(nodes), len(sorted)%len(nodes)
	load := map[string]int{}
	for _, w := range sorted {
		if len(w.Nodes) == 0 {
			continue
		}
		ranked := Rank(w.Addr, w.Nodes)
		owner := ranked[0]
		for _, n := range ranked {
			if load[n] < share {
				owner = n
				break
			}
			if load[n] == share && over > 0 {
				owner = n
				over--
				break
			}
		}
		owners[w.Addr] = owner
		load[owner]++
	}
	return owners
}

// Rank orders nodes by their rendezvous score for addr, highest first (ties by name), without
// duplicates.
func Rank(addr netip.Addr, nodes []string) []string {
	type scored struct {
		node  string
		score uint64
	}
	s := make([]scored, 0, len(nodes))
	for _, n := range nodes {
		s = append(s, scored{n, score(addr, n)})
	}
	slices.SortFunc(s, func(a, b scored) int { return cmp.Or(cmp.Compare(b.score, a.score), cmp.Compare(a.node, b.node)) })
	out := make([]string, 0, len(s))
	for i, x := range s {
		if i == 0 || x.node != s[i-1].node {
			out = append(out, x.node)
		}
	}
	return out
}

// score hashes the address (16 bytes) and the node name.
func score(addr netip.Addr, node string) uint64 {
	b := addr.As16()
	return hashing.Sum64(append(b[:], node...), 0)
}
