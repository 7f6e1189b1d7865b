package lb

import (
	"math/big"
	"math/rand/v2"
	"testing"
)

func TestIsPrime(t *testing.T) {
	const n = 1 << 20
	composite := make([]bool, n)
	for i := 2; i*i < n; i++ {
		if !composite[i] {
			for j := i * i; j < n; j += i {
				composite[j] = true
			}
		}
	}
	for i := range uint32(n) {
		if want := i >= 2 && !composite[i]; isPrime(i) != want {
			t.Fatalf("isPrime(%d) = %v", i, !want)
		}
	}
	// Strong pseudoprimes to some of the bases, Carmichael numbers, and the edge of uint32.
	for _, c := range []uint32{2047, 3277, 4033, 4681, 8321, 561, 1105, 1729, 25326001, 3215031751, 4294967295, 4294967293} {
		if isPrime(c) {
			t.Errorf("isPrime(%d) = true", c)
		}
	}
	for _, p := range []uint32{2147483647, 4294967291, 4294967279} {
		if !isPrime(p) {
			t.Errorf("isPrime(%d) = false", p)
		}
	}
	rng := rand.New(rand.NewPCG(3, 4))
	for range 20000 {
		x := rng.Uint32()
		if want := big.NewInt(int64(x)).ProbablyPrime(0); isPrime(x) != want {
			t.Fatalf("isPrime(%d) = %v", x, !want)
		}
	}
}

func TestMaglevSizes(t *testing.T) {
	for i, s := range maglevSizes {
		pow := uint64(1) << (8 + i)
		if !isPrime(s) {
			t.Errorf("maglevSizes[%d] = %d is not prime", i, s)
		}
		for x := uint64(s) + 1; x < pow; x++ {
			if isPrime(uint32(x)) {
				t.Errorf("maglevSizes[%d] = %d: %d is a larger prime below 2^%d", i, s, x, 8+i)
			}
		}
	}
}

func TestMaglevSize(t *testing.T) {
	for n := 1; n <= 5000; n++ {
		s := MaglevSize(n, 0)
		if !isPrime(s) || uint64(s) < 100*uint64(n) || s < 251 {
			t.Fatalf("MaglevSize(%d) = %d: want a prime ≥ max(251, %d)", n, s, 100*n)
		}
		if s > 251 && uint64(s) >= 2*100*uint64(n)+256 {
			t.Fatalf("MaglevSize(%d) = %d: more than twice what is needed", n, s)
		}
	}
	for _, tc := range []struct {
		n       int
		minimum uint32
		want    uint32
	}{
		{0, 0, 0},
		{-1, 16381, 0},
		{1, 0, 251},
		{2, 0, 251},
		{3, 0, 509},
		{10, 0, 1021},
		{11, 0, 2039},
		{100, 0, 16381},
		{2, 16381, 16381},
		{2, 1000, 1009},
		{2, 100, 251},
		{100, 1000, 16381},
		{1 << 30, 0, 4294967291},
		{1, 4294967295, 4294967291},
	} {
		if got := MaglevSize(tc.n, tc.minimum); got != tc.want {
			t.Errorf("MaglevSize(%d, %d) = %d, want %d", tc.n, tc.minimum, got, tc.want)
		}
	}
}

func TestNextPrime(t *testing.T) {
	for _, tc := range [][2]uint32{{0, 2}, {2, 2}, {3, 3}, {4, 5}, {90, 97}, {1000, 1009}, {4294967292, 4294967291}} {
		if got := nextPrime(tc[0]); got != tc[1] {
			t.Errorf("nextPrime(%d) = %d, want %d", tc[0], got, tc[1])
		}
	}
}
