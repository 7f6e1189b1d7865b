package model

import (
	"fmt"
	"math/big"
	"net/netip"
)

// Range is a contiguous run of addresses of one family, both ends included.
type Range struct {
	First netip.Addr
	Last  netip.Addr
}

// RangeOfPrefix returns the addresses of a prefix.
func RangeOfPrefix(p netip.Prefix) Range {
	p = p.Masked()
	first := p.Addr()
	last := first
	bits := first.BitLen() - p.Bits()
	b := last.AsSlice()
	for i := len(b) - 1; i >= 0 && bits > 0; i-- {
		n := min(bits, 8)
		b[i] |= byte(1<<n - 1)
		bits -= n
	}
	last, _ = netip.AddrFromSlice(b)
	return Range{First: first, Last: last}
}

// Contains reports whether a is in the range.
func (r Range) Contains(a netip.Addr) bool {
	return a.BitLen() == r.First.BitLen() && r.First.Compare(a) <= 0 && a.Compare(r.Last) <= 0
}

// Overlaps reports whether the two ranges share an address.
func (r Range) Overlaps(o Range) bool {
	return r.First.BitLen() == o.First.BitLen() && r.First.Compare(o.Last) <= 0 && o.First.Compare(r.Last) <= 0
}

// Size is the number of addresses in the range.
func (r Range) Size() *big.Int {
	first := new(big.Int).SetBytes(r.First.AsSlice())
	last := new(big.Int).SetBytes(r.Last.AsSlice())
	return last.Sub(last, first).Add(last, big.NewInt(1))
}

func (r Range) String() string {
	if p, ok := r.prefix(); ok {
		return p.String()
	}
	return r.First.String() + "-" + r.Last.String()
}

// prefix returns the range as a prefix when it is exactly one.
func (r Range) prefix() (netip.Prefix, bool) {
	for bits := 0; bits <= r.First.BitLen(); bits++ {
		p := netip.PrefixFrom(r.First, bits)
		if p.Masked().Addr() == r.First && RangeOfPrefix(p).Last == r.Last {
			return p, true
		}
	}
	return netip.Prefix{}, false
}

// parseAddr parses an IP address, rejecting zones and unmapping IPv4-in-IPv6.
func parseAddr(s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("%q is not an IP address", s)
	}
	if a.Zone() != "" {
		return netip.Addr{}, fmt.Errorf("%q has a zone, which is not allowed here", s)
	}
	return a.Unmap(), nil
}

// parsePrefix parses a CIDR; host bits must be zero, as the Kubernetes API requires.
func parsePrefix(s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not a CIDR such as 192.0.2.0/24 or 2001:db8::/64", s)
	}
	if p.Masked() != p {
		return netip.Prefix{}, fmt.Errorf("%q has host bits set (did you mean %s?)", s, p.Masked())
	}
	return p, nil
}

// Family names an address family as the API does.
func Family(a netip.Addr) string {
	if a.Is4() {
		return "IPv4"
	}
	return "IPv6"
}
