package packet

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"strings"
	"testing"
)

var (
	macA = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x01}
	macB = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x02}
	eth  = Ethernet{Dst: macB, Src: macA}
	a4   = netip.MustParseAddr("192.0.2.1")
	b4   = netip.MustParseAddr("198.51.100.7")
	a6   = netip.MustParseAddr("2001:db8::1")
	b6   = netip.MustParseAddr("2001:db8:1::7")
)

// golden frames: built once and checked with tcpdump -vvv, which reported
// every IPv4, TCP, UDP, ICMP and ICMPv6 checksum correct.
var golden = []struct {
	name   string
	layers []Layer
	hex    string
}{
	{"ipv4 tcp syn", []Layer{eth, IPv4{Src: a4, Dst: b4, ID: 0x1234, Flags: IPv4DontFragment},
		TCP{SrcPort: 40000, DstPort: 80, Seq: 1, Flags: SYN, Window: 65535, Options: []byte{2, 4, 5, 0xb4}}},
		"02000000000202000000000108004500002c1234400040063c5cc0000201c63364079c40005000000001000000006002ffff0f590000020405b4"},
	{"ipv4 udp", []Layer{eth, IPv4{Src: a4, Dst: b4, ID: 7}, UDP{SrcPort: 5353, DstPort: 53}, Payload("hello, sluice")},
		"0200000000020200000000010800450000290007000040118e81c0000201c633640714e9003500155f1f68656c6c6f2c20736c75696365"},
	{"ipv6 udp", []Layer{eth, IPv6{Src: a6, Dst: b6, FlowLabel: 0x12345}, UDP{SrcPort: 5353, DstPort: 53}, Payload("hello, sluice")},
		"02000000000202000000000186dd600123450015114020010db800000000000000000000000120010db800010000000000000000000714e900350015efe068656c6c6f2c20736c75696365"},
	{"ipv6 tcp", []Layer{eth, IPv6{Src: a6, Dst: b6}, TCP{SrcPort: 40000, DstPort: 443, Seq: 100, Ack: 200, Flags: ACK | PSH, Window: 512}, Payload("GET / HTTP/1.1\r\n")},
		"02000000000202000000000186dd600000000024064020010db800000000000000000000000120010db80001000000000000000000079c4001bb00000064000000c850180200e1830000474554202f20485454502f312e310d0a"},
	{"ipv4 icmp echo", []Layer{eth, IPv4{Src: a4, Dst: b4}, ICMPv4{Type: 8, ID: 1, Seq: 2}, Payload("ping")},
		"0200000000020200000000010800450000200000000040018ea1c0000201c63364070800192c0001000270696e67"},
	{"ipv6 icmp echo", []Layer{eth, IPv6{Src: a6, Dst: b6}, ICMPv6{Type: 128, ID: 1, Seq: 2}, Payload("ping")},
		"02000000000202000000000186dd60000000000c3a4020010db800000000000000000000000120010db80001000000000000000000078000456a0001000270696e67"},
	{"vlan ipv4 udp", []Layer{eth, VLAN{ID: 100}, IPv4{Src: a4, Dst: b4, ID: 9}, UDP{SrcPort: 1, DstPort: 2}, Payload("x")},
		"0200000000020200000000018100006408004500001d0009000040118e8bc0000201c63364070001000200099b9c78"},
	{"arp request", []Layer{Ethernet{Dst: net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, Src: macA}, ARP{Op: ARPRequest, SenderMAC: macA, SenderIP: a4, TargetIP: b4}},
		"ffffffffffff02000000000108060001080006040001020000000001c0000201000000000000c6336407"},
	{"ipv4 udp no checksum", []Layer{eth, IPv4{Src: a4, Dst: b4, ID: 11}, UDP{SrcPort: 9, DstPort: 9, ZeroChecksum: true}, Payload("z")},
		"02000000000202000000000108004500001d000b000040118e89c0000201c633640700090009000900007a"},
}

func TestBuildGolden(t *testing.T) {
	for _, g := range golden {
		t.Run(g.name, func(t *testing.T) {
			got, err := Build(g.layers...)
			if err != nil {
				t.Fatalf("Build: %v", err)
			}
			if want := unhex(t, g.hex); !bytes.Equal(got, want) {
				t.Fatalf("Build =\n%x\nwant\n%x", got, want)
			}
			if err := Verify(got); err != nil {
				t.Errorf("Verify: %v", err)
			}
		})
	}
}

// Parse then Build gives the same bytes back, for every golden frame, with
// and without Ethernet padding, and the accessors find the headers.
func TestParseRoundTrip(t *testing.T) {
	for _, g := range golden {
		for _, pad := range []int{0, 18} {
			frame := append(unhex(t, g.hex), make([]byte, pad)...)
			p, err := Parse(frame)
			if err != nil {
				t.Fatalf("%s: Parse: %v", g.name, err)
			}
			rebuilt, err := Build(p.Layers...)
			if err != nil {
				t.Fatalf("%s: Build(Parse): %v", g.name, err)
			}
			if got := append(rebuilt, p.Padding...); !bytes.Equal(got, frame) {
				t.Errorf("%s pad %d: round trip =\n%x\nwant\n%x", g.name, pad, got, frame)
			}
			if len(p.Padding) != pad {
				t.Errorf("%s: Padding is %d bytes, want %d", g.name, len(p.Padding), pad)
			}
		}
	}

	p, err := Parse(unhex(t, golden[0].hex))
	if err != nil {
		t.Fatal(err)
	}
	if ip := p.IPv4(); ip == nil || ip.Src != a4 || ip.Dst != b4 || ip.Flags != IPv4DontFragment {
		t.Errorf("IPv4() = %+v", ip)
	}
	if tcp := p.TCP(); tcp == nil || tcp.DstPort != 80 || tcp.Flags != SYN || !bytes.Equal(tcp.Options, []byte{2, 4, 5, 0xb4}) {
		t.Errorf("TCP() = %+v", tcp)
	}
	if p.UDP() != nil || p.IPv6() != nil || p.Payload() != nil {
		t.Errorf("unexpected layers in %+v", p.Layers)
	}
}

// Every single-bit error in a part a checksum covers is caught.
func TestVerifyCatchesEveryBitFlip(t *testing.T) {
	for _, g := range golden {
		frame := unhex(t, g.hex)
		from := EthernetLen // IPv4: the header checksum covers the header, L4 the rest
		switch {
		case strings.HasPrefix(g.name, "ipv6"):
			from = EthernetLen + 8 // version, class, flow label and hop limit are not covered
		case strings.HasPrefix(g.name, "vlan"):
			from = EthernetLen + VLANLen
		case g.name == "arp request" || g.name == "ipv4 udp no checksum":
			continue // nothing (ARP) or not all (no UDP checksum) covered
		}
		for i := from; i < len(frame); i++ {
			for bit := range 8 {
				bad := bytes.Clone(frame)
				bad[i] ^= 1 << bit
				if Verify(bad) == nil {
					t.Errorf("%s: flipping bit %d of byte %d went unnoticed", g.name, bit, i)
				}
			}
		}
	}
}

func TestVerifyReportsChecksum(t *testing.T) {
	frame := unhex(t, golden[0].hex)
	frame[len(frame)-8] ^= 0xff // TCP checksum's first byte (4 option bytes, urgent, checksum)
	err := Verify(frame)
	if err == nil || !strings.Contains(err.Error(), "TCP checksum is 0xf059, want 0x0f59") {
		t.Fatalf("Verify = %v, want a TCP checksum error", err)
	}
	if _, err := Parse(frame); err != nil {
		t.Errorf("Parse must not check checksums: %v", err)
	}
}

// A checksum that computes to zero: TCP sends 0x0000 (0xffff is accepted
// too, as receivers do), UDP sends 0xffff because 0 means "none".
func TestZeroChecksum(t *testing.T) {
	for _, l4 := range []Layer{TCP{SrcPort: 1, DstPort: 2}, UDP{SrcPort: 1, DstPort: 2}} {
		layers := []Layer{eth, IPv4{Src: a4, Dst: b4}, l4, Payload{0, 0}}
		frame := MustBuild(layers...)
		at, l4off := 16, EthernetLen+IPv4MinLen
		if _, ok := l4.(UDP); ok {
			at = 6
		}
		// A payload word equal to the checksum brings the checksum to zero.
		copy(layers[3].(Payload), frame[l4off+at:l4off+at+2])
		frame = MustBuild(layers...)
		got := binary.BigEndian.Uint16(frame[l4off+at:])
		want := uint16(0)
		if _, ok := l4.(UDP); ok {
			want = 0xffff
		}
		if got != want {
			t.Errorf("%T: checksum %#04x, want %#04x", l4, got, want)
		}
		if err := Verify(frame); err != nil {
			t.Errorf("%T: %v", l4, err)
		}
		// The other encoding of zero: still valid TCP; for UDP over IPv4 it
		// reads as "no checksum", which is valid too.
		binary.BigEndian.PutUint16(frame[l4off+at:], ^want)
		if err := Verify(frame); err != nil {
			t.Errorf("%T with checksum %#04x: %v", l4, ^want, err)
		}
	}

	// Over IPv6 a UDP checksum of 0 is an error.
	frame := MustBuild(eth, IPv6{Src: a6, Dst: b6}, UDP{SrcPort: 1, DstPort: 2})
	frame[EthernetLen+IPv6Len+6], frame[EthernetLen+IPv6Len+7] = 0, 0
	if err := Verify(frame); err == nil || !strings.Contains(err.Error(), "UDP over IPv6") {
		t.Errorf("UDP over IPv6 without checksum: Verify = %v", err)
	}
}

func TestEncapsulation(t *testing.T) {
	inner := IPv4{Src: netip.MustParseAddr("10.0.0.1"), Dst: netip.MustParseAddr("10.0.0.2")}
	for _, outer := range []Layer{IPv4{Src: a4, Dst: b4}, IPv6{Src: a6, Dst: b6}} {
		frame := MustBuild(eth, outer, inner, TCP{SrcPort: 1, DstPort: 2, Flags: SYN})
		if err := Verify(frame); err != nil {
			t.Fatalf("%T: %v", outer, err)
		}
		p, _ := Parse(frame)
		if len(p.Layers) != 4 || p.TCP() == nil {
			t.Fatalf("%T: layers %+v", outer, p.Layers)
		}
		if ips := p.Layers[2].(*IPv4); ips.Dst != inner.Dst {
			t.Errorf("inner header %+v", ips)
		}
	}
	p, _ := Parse(MustBuild(eth, IPv4{Src: a4, Dst: b4}, inner, UDP{}))
	if p.Layers[1].(*IPv4).Protocol != ProtoIPIP {
		t.Errorf("outer protocol %d, want IPIP", p.Layers[1].(*IPv4).Protocol)
	}
}

func TestFragmentsAndUnknownAreOpaque(t *testing.T) {
	frag := MustBuild(eth, IPv4{Src: a4, Dst: b4, Protocol: ProtoTCP, FragmentOffset: 100}, Payload("rest of a segment"))
	p, err := Parse(frag)
	if err != nil || p.TCP() != nil || string(p.Payload()) != "rest of a segment" {
		t.Errorf("fragment: %v, %+v", err, p)
	}
	hbh := MustBuild(eth, IPv6{Src: a6, Dst: b6, NextHeader: ProtoHopByHop}, Payload{ProtoUDP, 0, 1, 4, 0, 0, 0, 0})
	if p, err = Parse(hbh); err != nil || p.IPv6().NextHeader != ProtoHopByHop || len(p.Payload()) != 8 {
		t.Errorf("hop-by-hop: %v, %+v", err, p)
	}
	lldp := MustBuild(Ethernet{Dst: macB, Src: macA, Type: 0x88cc}, Payload("lldp"))
	if p, err = Parse(lldp); err != nil || string(p.Payload()) != "lldp" {
		t.Errorf("lldp: %v, %+v", err, p)
	}
}

func TestParseErrors(t *testing.T) {
	tcp4 := unhex(t, golden[0].hex)
	udp6 := unhex(t, golden[2].hex)
	edit := func(b []byte, f func([]byte)) []byte { b = bytes.Clone(b); f(b); return b }
	for _, tc := range []struct {
		name  string
		frame []byte
		want  string
	}{
		{"short ethernet", tcp4[:13], "shorter than an Ethernet header"},
		{"short vlan", MustBuild(Ethernet{Type: EtherTypeVLAN}, Payload{0}), "VLAN tag 1 cut short"},
		{"short ipv4", tcp4[:EthernetLen+19], "IPv4 header cut short"},
		{"ipv4 version", edit(tcp4, func(b []byte) { b[14] = 0x65 }), "version 6"},
		{"ipv4 ihl", edit(tcp4, func(b []byte) { b[14] = 0x44 }), "header length 16 under 20"},
		{"ipv4 total past frame", tcp4[:len(tcp4)-1], "total length 44 past the 43 bytes"},
		{"ipv4 total under header", edit(tcp4, func(b []byte) { b[17] = 10 }), "total length 10 under"},
		{"tcp data offset", edit(tcp4, func(b []byte) { b[46] = 0x40 }), "TCP data offset 16"},
		{"ipv6 payload past frame", udp6[:len(udp6)-1], "payload length 21 past the 20 bytes"},
		{"udp length", edit(udp6, func(b []byte) { b[59] = 20 }), "UDP length 20, but the IP payload is 21"},
		{"short arp", MustBuild(Ethernet{Type: EtherTypeARP}, Payload{0, 1}), "ARP message cut short"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(tc.frame)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Parse = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestBuildErrors(t *testing.T) {
	for _, tc := range []struct {
		name   string
		layers []Layer
		want   string
	}{
		{"tcp without ip", []Layer{eth, TCP{}}, "needs an IPv4 or IPv6 layer"},
		{"ipv4 with ipv6 addresses", []Layer{eth, IPv4{Src: a6, Dst: b6}}, "must be IPv4"},
		{"bad mac", []Layer{Ethernet{Dst: net.HardwareAddr{1, 2}}, IPv4{Src: a4, Dst: b4}}, "not 6 bytes"},
		{"no ethertype", []Layer{Ethernet{}, Payload("x")}, "has no EtherType"},
		{"ipv4 options", []Layer{eth, IPv4{Src: a4, Dst: b4, Options: []byte{1}}}, "options length 1"},
		{"zero udp checksum over ipv6", []Layer{eth, IPv6{Src: a6, Dst: b6}, UDP{ZeroChecksum: true}}, "only allowed over IPv4"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Build(tc.layers...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Build = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

// Pointers to layers build like values, so parsed layers can be edited and
// rebuilt: the checksums follow.
func TestEditAndRebuild(t *testing.T) {
	p, err := Parse(unhex(t, golden[0].hex))
	if err != nil {
		t.Fatal(err)
	}
	p.IPv4().Dst = netip.MustParseAddr("10.1.2.3")
	p.TCP().DstPort = 8080
	frame := MustBuild(p.Layers...)
	if err := Verify(frame); err != nil {
		t.Fatal(err)
	}
	q, _ := Parse(frame)
	if q.IPv4().Dst.String() != "10.1.2.3" || q.TCP().DstPort != 8080 {
		t.Errorf("edited packet parsed as %+v %+v", q.IPv4(), q.TCP())
	}
}
