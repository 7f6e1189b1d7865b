// Package hashing is the one hash function Sluice computes placements with — Maglev tables,
// the owner of an address on a LAN — so that every node, whatever its version, gets the same
// answer from the same input. Its values must never change.
package hashing

// Sum64 is FNV-1a (64-bit) started from a seeded basis, finished with the MurmurHash3 64-bit
// finaliser so that inputs differing in one bit (neighbouring addresses, names differing in
// a last character) get unrelated results.
func Sum64(data []byte, seed uint64) uint64 {
	const (
		basis = 0xcbf29ce484222325
		prime = 0x100000001b3
	)
	h := uint64(basis) ^ seed
	for _, c := range data {
		h ^= uint64(c)
		h *= prime
	}
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	h ^= h >> 33
	return h
}
