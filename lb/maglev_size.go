package lb

import "math"

// MaglevSlotsPerBackend is how many table slots MaglevSize provides at least per backend; at
// 100 the shares of equal-weight backends differ by at most 1 %.
const MaglevSlotsPerBackend = 100

// maglevSizes are the table sizes MaglevSize picks from: the largest prime below each power of
// two from 2^8 to 2^32. The size depends on the backend count, and a change of size reshuffles
// the whole table (every offset and skip is taken modulo the size); on this ladder it changes
// only when the count crosses 2, 5, 10, 20, 40, 81, 163, … (100 × count crossing a power of
// two), so adding or removing a backend usually keeps the size and moves only the slots
// Maglev has to move.
var maglevSizes = [...]uint32{
	251, 509, 1021, 2039, 4093, 8191, 16381, 32749, 65521, 131071, 262139, 524287, 1048573,
	2097143, 4194301, 8388593, 16777213, 33554393, 67108859, 134217689, 268435399, 536870909,
	1073741789, 2147483647, 4294967291,
}

// MaglevSize returns the Maglev table size for a Service with that many backends (those that
// take part in the table: Active, weight > 0): a prime of at least MaglevSlotsPerBackend ×
// backends, taken from a fixed ladder of primes (the largest below each power of two, 251 the
// smallest) so that the size, which every node must agree on, changes rarely; or, when the
// configured minimum is larger, the smallest prime ≥ minimum. It returns 0 for no backends.
// The result is capped at the largest prime below 2^32.
func MaglevSize(backends int, minimum uint32) uint32 {
	if backends <= 0 {
		return 0
	}
	want := uint64(backends) * MaglevSlotsPerBackend
	size := maglevSizes[len(maglevSizes)-1]
	for _, s := range maglevSizes {
		if uint64(s) >= want {
			size = s
			break
		}
	}
	if minimum > size {
		size = nextPrime(minimum)
	}
	return size
}

// nextPrime returns the smallest prime ≥ n, or the largest prime below 2^32 when there is
// none in 32 bits.
func nextPrime(n uint32) uint32 {
	const largest = 4294967291
	if n > largest {
		return largest
	}
	if n <= 2 {
		return 2
	}
	if n%2 == 0 {
		n++
	}
	for !isPrime(n) {
		n += 2
	}
	return n
}

// isPrime reports whether n is prime: deterministic Miller–Rabin with the bases 2, 7 and 61,
// exact for every n < 4 759 123 141 and so for every uint32.
func isPrime(n uint32) bool {
	switch {
	case n < 2:
		return false
	case n < 4:
		return true
	case n%2 == 0:
		return false
	}
	d, r := uint64(n-1), 0
	for d%2 == 0 {
		d /= 2
		r++
	}
	m := uint64(n)
	for _, a := range [...]uint64{2, 7, 61} {
		if a%m == 0 {
			continue
		}
		x := powMod(a, d, m)
		if x == 1 || x == m-1 {
			continue
		}
		composite := true
		for range r - 1 {
			x = x * x % m
			if x == m-1 {
				composite = false
				break
			}
		}
		if composite {
			return false
		}
	}
	return true
}

// powMod returns b^e mod m for m < 2^32 (so products fit in 64 bits).
func powMod(b, e, m uint64) uint64 {
	if m > math.MaxUint32 {
		panic("lb: powMod modulus out of range")
	}
	r := uint64(1)
	b %= m
	for e > 0 {
		if e&1 == 1 {
			r = r * b % m
		}
		b = b * b % m
		e >>= 1
	}
	return r
}
