package bpf

import (
	"bytes"
	"net"
	"net/netip"
	"testing"

	"github.com/sluice-lb/sluice/internal/testenv"
	"github.com/sluice-lb/sluice/test/packet"
)

var (
	macClient = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x01}
	macNode   = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x02}
	eth       = packet.Ethernet{Dst: macNode, Src: macClient}
	client4   = netip.MustParseAddr("192.0.2.10")
	vip4      = netip.MustParseAddr("198.51.100.1")
	client6   = netip.MustParseAddr("2001:db8::10")
	vip6      = netip.MustParseAddr("2001:db8:1::1")
	syn       = packet.TCP{SrcPort: 40000, DstPort: 80, Seq: 1, Flags: packet.SYN, Window: 65535}
	dns       = packet.UDP{SrcPort: 5353, DstPort: 53}
)

// cut returns the first n bytes of b.
func cut(b []byte, n int) []byte { return bytes.Clone(b[:n]) }

// edit returns a copy of b changed by f.
func edit(b []byte, f func([]byte)) []byte {
	b = bytes.Clone(b)
	f(b)
	return b
}

type xdpCase struct {
	name  string
	frame []byte
	want  Counter
	valid bool // well-formed: packet.Verify must accept it
}

// malformed reports whether the program must find c malformed, in which case
// packet.Verify must reject the frame too: the two parsers agree.
func malformed(c Counter) bool {
	return c == CounterMalformedL2 || c == CounterMalformedL3 || c == CounterMalformedL4
}

// xdpCases is the BPF_PROG_RUN table, also the fuzz seed corpus.
func xdpCases() []xdpCase {
	b := packet.MustBuild
	tcp4 := b(eth, packet.IPv4{Src: client4, Dst: vip4}, syn, packet.Payload("hello"))
	udp6 := b(eth, packet.IPv6{Src: client6, Dst: vip6}, dns, packet.Payload("query"))
	hdr := packet.EthernetLen
	return []xdpCase{
		{"ipv4 tcp", tcp4, CounterIPv4TCP, true},
		{"ipv4 udp", b(eth, packet.IPv4{Src: client4, Dst: vip4}, dns, packet.Payload("query")), CounterIPv4UDP, true},
		{"ipv4 udp with ethernet padding", append(b(eth, packet.IPv4{Src: client4, Dst: vip4}, dns), make([]byte, 18)...), CounterIPv4UDP, true},
		{"ipv4 tcp with ip and tcp options", b(eth, packet.IPv4{Src: client4, Dst: vip4, Options: []byte{1, 1, 1, 0}},
			packet.TCP{SrcPort: 1, DstPort: 2, Flags: packet.SYN, Options: []byte{2, 4, 5, 0xb4, 1, 1, 4, 2}}), CounterIPv4TCP, true},
		{"ipv6 udp", udp6, CounterIPv6UDP, true},
		{"ipv6 tcp", b(eth, packet.IPv6{Src: client6, Dst: vip6}, syn), CounterIPv6TCP, true},
		{"vlan ipv4 tcp", b(eth, packet.VLAN{ID: 42}, packet.IPv4{Src: client4, Dst: vip4}, syn), CounterIPv4TCP, true},
		{"802.1ad ipv6 udp", b(eth, packet.VLAN{TPID: packet.EtherTypeQinQ, ID: 7}, packet.IPv6{Src: client6, Dst: vip6}, dns), CounterIPv6UDP, true},
		{"arp request", b(packet.Ethernet{Dst: net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, Src: macClient},
			packet.ARP{Op: packet.ARPRequest, SenderMAC: macClient, SenderIP: client4, TargetIP: vip4}), CounterNonIP, true},
		{"lldp", b(packet.Ethernet{Dst: macNode, Src: macClient, Type: 0x88cc}, packet.Payload("chassis")), CounterNonIP, true},
		{"qinq (two tags) is not looked into", b(eth, packet.VLAN{TPID: packet.EtherTypeQinQ, ID: 1}, packet.VLAN{ID: 2},
			packet.IPv4{Src: client4, Dst: vip4}, syn), CounterNonIP, true},
		{"ipv4 icmp", b(eth, packet.IPv4{Src: client4, Dst: vip4}, packet.ICMPv4{Type: 8, ID: 1, Seq: 1}), CounterIPv4Other, true},
		{"ipv4 non-first fragment", b(eth, packet.IPv4{Src: client4, Dst: vip4, Protocol: packet.ProtoTCP, FragmentOffset: 185},
			packet.Payload("middle of a segment")), CounterIPv4Other, true},
		{"ipv4 in ipv4", b(eth, packet.IPv4{Src: client4, Dst: vip4}, packet.IPv4{Src: client4, Dst: vip4}, syn), CounterIPv4Other, true},
		{"ipv6 icmp", b(eth, packet.IPv6{Src: client6, Dst: vip6}, packet.ICMPv6{Type: 128, ID: 1, Seq: 1}), CounterIPv6Other, true},
		{"ipv6 hop-by-hop then udp", b(eth, packet.IPv6{Src: client6, Dst: vip6, NextHeader: packet.ProtoHopByHop},
			packet.Payload{packet.ProtoUDP, 0, 1, 4, 0, 0, 0, 0}), CounterIPv6Other, true},

		{"truncated vlan tag", b(packet.Ethernet{Dst: macNode, Src: macClient, Type: packet.EtherTypeVLAN}, packet.Payload{0, 42}), CounterMalformedL2, false},
		{"ethernet header only", b(packet.Ethernet{Dst: macNode, Src: macClient, Type: packet.EtherTypeIPv4}), CounterMalformedL3, false},
		{"truncated ipv4 header", cut(tcp4, hdr+10), CounterMalformedL3, false},
		{"ipv4 total length past frame", cut(tcp4, len(tcp4)-1), CounterMalformedL3, false},
		{"ipv4 ihl under 5", edit(tcp4, func(f []byte) { f[hdr] = 0x44 }), CounterMalformedL3, false},
		{"ipv4 ethertype, version 6", edit(tcp4, func(f []byte) { f[hdr] = 0x65 }), CounterMalformedL3, false},
		{"ipv4 total length under ihl", edit(tcp4, func(f []byte) { f[hdr+2], f[hdr+3] = 0, 16 }), CounterMalformedL3, false},
		{"truncated ipv6 header", cut(udp6, hdr+39), CounterMalformedL3, false},
		{"ipv6 payload length past frame", cut(udp6, len(udp6)-1), CounterMalformedL3, false},
		{"ipv6 ethertype, version 4", edit(udp6, func(f []byte) { f[hdr] = 0x40 }), CounterMalformedL3, false},
		// The IP header is fine and its length matches the frame, but the
		// L4 header does not fit in it.
		{"truncated tcp header", b(eth, packet.IPv4{Src: client4, Dst: vip4, Protocol: packet.ProtoTCP}, packet.Payload(make([]byte, 19))), CounterMalformedL4, false},
		{"truncated udp header", b(eth, packet.IPv6{Src: client6, Dst: vip6, NextHeader: packet.ProtoUDP}, packet.Payload(make([]byte, 7))), CounterMalformedL4, false},
		{"tcp data offset under 5", edit(tcp4, func(f []byte) { f[hdr+20+12] = 0x40 }), CounterMalformedL4, false},
		{"tcp data offset past ip payload", edit(tcp4, func(f []byte) { f[hdr+20+12] = 0x70 }), CounterMalformedL4, false},
		{"ipv4 length shorter than udp header, frame longer", edit(
			b(eth, packet.IPv4{Src: client4, Dst: vip4}, dns),
			func(f []byte) {
				f[hdr+2], f[hdr+3] = 0, 24 // tot_len 24: 4 bytes of UDP header
				ip := f[hdr : hdr+20]
				ip[10], ip[11] = 0, 0
				c := packet.Checksum(ip)
				ip[10], ip[11] = byte(c>>8), byte(c)
			}), CounterMalformedL4, false},

		{"garbage", bytes.Repeat([]byte{0xde, 0xad, 0xbe, 0xef}, 16), CounterNonIP, false},
		{"garbage after ipv4 ethertype", append(b(packet.Ethernet{Type: packet.EtherTypeIPv4}), bytes.Repeat([]byte{0xff}, 46)...), CounterMalformedL3, false},
		{"garbage after ipv6 ethertype", append(b(packet.Ethernet{Type: packet.EtherTypeIPv6}), bytes.Repeat([]byte{0x00}, 46)...), CounterMalformedL3, false},
		{"minimum 14 bytes", make([]byte, 14), CounterNonIP, false},
	}
}

// TestXDPTable runs every case through the XDP program with BPF_PROG_RUN:
// the verdict is XDP_PASS, the frame comes out untouched, and exactly one
// counter moves, by one packet and the frame's length.
func TestXDPTable(t *testing.T) {
	testenv.RequirePrivileged(t)
	d := mustLoad(t, Options{})

	for _, tc := range xdpCases() {
		t.Run(tc.name, func(t *testing.T) {
			err := packet.Verify(tc.frame)
			if tc.valid && err != nil {
				t.Fatalf("test frame: packet.Verify = %v", err)
			}
			if malformed(tc.want) && err == nil {
				t.Fatalf("test frame: packet.Verify accepts what the program must find malformed")
			}
			before := readCounters(t, d)
			ret, out := runXDP(t, d.XDPProgram(), tc.frame)
			delta := readCounters(t, d).Sub(before)

			if ret != xdpPass {
				t.Errorf("verdict %d, want XDP_PASS (%d)", ret, xdpPass)
			}
			if !bytes.Equal(out, tc.frame) {
				t.Errorf("frame changed:\n got %x\nwant %x", out, tc.frame)
			}
			if tc.valid {
				if err := packet.Verify(out); err != nil {
					t.Errorf("output: %v", err)
				}
			}
			if diff := diffCounters(delta, wantDelta(tc.want, len(tc.frame))); diff != "" {
				t.Errorf("counter deltas differ:%s", diff)
			}
		})
	}
}

// The per-node constants set at load change what the program does.
func TestXDPNodeConfig(t *testing.T) {
	testenv.RequirePrivileged(t)
	vlanTCP := packet.MustBuild(eth, packet.VLAN{ID: 42}, packet.IPv4{Src: client4, Dst: vip4}, syn)

	for _, tc := range []struct {
		name string
		opts Options
		want Counters
	}{
		{"defaults", Options{}, wantDelta(CounterIPv4TCP, len(vlanTCP))},
		{"vlan disabled", Options{DisableVLAN: true}, wantDelta(CounterNonIP, len(vlanTCP))},
		{"counters disabled", Options{DisableCounters: true}, Counters{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := mustLoad(t, tc.opts)
			before := readCounters(t, d)
			if ret, out := runXDP(t, d.XDPProgram(), vlanTCP); ret != xdpPass || !bytes.Equal(out, vlanTCP) {
				t.Errorf("verdict %d, frame changed: %v", ret, !bytes.Equal(out, vlanTCP))
			}
			if diff := diffCounters(readCounters(t, d).Sub(before), tc.want); diff != "" {
				t.Errorf("counter deltas differ:%s", diff)
			}
		})
	}
}
