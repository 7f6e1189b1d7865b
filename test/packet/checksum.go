package packet

import (
	"encoding/binary"
	"net/netip"
)

// sum adds b to the 32-bit one's complement accumulator s (RFC 1071); an odd
// trailing byte is padded with zero.
func sum(s uint32, b []byte) uint32 {
	for len(b) >= 2 {
		s += uint32(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		s += uint32(b[0]) << 8
	}
	return s
}

// fold folds the carries of s into 16 bits and complements the result.
func fold(s uint32) uint16 {
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	return ^uint16(s)
}

// Checksum returns the Internet checksum (RFC 1071) of b. Over data that
// contains its own correct checksum field the result is 0.
func Checksum(b []byte) uint16 {
	return fold(sum(0, b))
}

// pseudoHeaderSum is the partial sum of the IPv4 (RFC 793) or IPv6
// (RFC 8200 section 8.1) pseudo-header.
func pseudoHeaderSum(src, dst netip.Addr, proto uint8, length int) uint32 {
	s := sum(0, src.AsSlice())
	s = sum(s, dst.AsSlice())
	if src.Is4() {
		return s + uint32(proto) + uint32(length)
	}
	return s + uint32(length)>>16 + uint32(length)&0xffff + uint32(proto)
}

// TransportChecksum returns the TCP/UDP/ICMPv6 checksum of segment (header
// and payload) carried from src to dst with IP protocol proto, including the
// pseudo-header. Computed over a segment whose checksum field is correct, the
// result is 0.
func TransportChecksum(src, dst netip.Addr, proto uint8, segment []byte) uint16 {
	return fold(sum(pseudoHeaderSum(src, dst, proto, len(segment)), segment))
}
