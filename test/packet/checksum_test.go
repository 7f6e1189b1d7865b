package packet

import (
	"encoding/hex"
	"net/netip"
	"testing"
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatalf("bad hex %q: %v", s, err)
	}
	return b
}

func TestChecksumKnownValues(t *testing.T) {
	for _, tc := range []struct {
		name string
		data string
		want uint16
	}{
		// RFC 1071 section 3: the sum of these words is 0xddf2.
		{"rfc1071", "0001f203f4f5f6f7", ^uint16(0xddf2)},
		// The classic IPv4 header example (checksum field zeroed).
		{"ipv4 header", "450000730000400040110000c0a80001c0a800c7", 0xb861},
		// The same header with its checksum in place sums to zero.
		{"ipv4 header verifies", "45000073000040004011b861c0a80001c0a800c7", 0},
		// An odd length pads the last byte with zero: 0xddf2 + 0xaa00 =
		// 0x187f2, end-around carry 0x87f3, complemented 0x780c.
		{"odd length", "0001f203f4f5f6f7aa", 0x780c},
		{"empty", "", 0xffff},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Checksum(unhex(t, tc.data)); got != tc.want {
				t.Errorf("Checksum(%s) = %#04x, want %#04x", tc.data, got, tc.want)
			}
		})
	}
}

func TestTransportChecksumKnownValues(t *testing.T) {
	// Segments from the golden frames (checksums confirmed by tcpdump -vvv),
	// with the checksum field zeroed.
	a4, b4 := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("198.51.100.7")
	a6, b6 := netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8:1::7")
	for _, tc := range []struct {
		name     string
		src, dst netip.Addr
		proto    uint8
		segment  string
		want     uint16
	}{
		{"tcp4 syn", a4, b4, ProtoTCP, "9c40005000000001000000006002ffff00000000020405b4", 0x0f59},
		{"udp4", a4, b4, ProtoUDP, "14e900350015000068656c6c6f2c20736c75696365", 0x5f1f},
		{"udp6", a6, b6, ProtoUDP, "14e900350015000068656c6c6f2c20736c75696365", 0xefe0},
		{"tcp6", a6, b6, ProtoTCP, "9c4001bb00000064000000c85018020000000000474554202f20485454502f312e310d0a", 0xe183},
		{"icmp6 echo", a6, b6, ProtoICMPv6, "800000000001000270696e67", 0x456a},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := TransportChecksum(tc.src, tc.dst, tc.proto, unhex(t, tc.segment)); got != tc.want {
				t.Errorf("TransportChecksum = %#04x, want %#04x", got, tc.want)
			}
		})
	}
}
