package bpf

import (
	"bytes"
	"net/netip"
	"testing"

	"github.com/sluice-lb/sluice/internal/testenv"
	"github.com/sluice-lb/sluice/test/packet"
)

// replyFrame is a backend's answer to a flow: SYN-ACK (TCP) or a datagram.
func replyFrame(proto uint8, src, dst netip.AddrPort, flags uint8) []byte {
	var l4 packet.Layer = packet.UDP{SrcPort: src.Port(), DstPort: dst.Port()}
	if proto == ProtoTCP {
		l4 = packet.TCP{SrcPort: src.Port(), DstPort: dst.Port(), Seq: 5000, Ack: 1001, Flags: flags, Window: 1000}
	}
	return packet.MustBuild(ethBack, ipLayer(src.Addr(), dst.Addr()), l4, packet.Payload("the answer"))
}

// At TC egress, a backend's reply gets the frontend as its source and marks
// the flow established; other traffic leaves untouched.
func TestTCEgressReverseNAT(t *testing.T) {
	testenv.RequirePrivileged(t)
	d, svcs := loadLB(t, Options{})
	for i, s := range svcs {
		client := client4
		if s.key.Addr.Is6() {
			client = client6
		}
		name := map[bool]string{true: "ipv4", false: "ipv6"}[client.Is4()] + map[uint8]string{ProtoTCP: " tcp", ProtoUDP: " udp"}[s.key.Proto]
		t.Run(name, func(t *testing.T) {
			src, vip := ap(client, uint16(50000+i)), ap(s.key.Addr, s.key.Port)
			be := s.addrs[s.pick(client, src.Port())]
			runXDP(t, d.XDPProgram(), flowFrame(s.key.Proto, src, vip, false))

			in := replyFrame(s.key.Proto, be, src, packet.SYN|packet.ACK)
			want := replyFrame(s.key.Proto, vip, src, packet.SYN|packet.ACK)
			before := readCounters(t, d)
			ret, out := runTC(t, d.TCEgressProgram(), in)
			delta := readCounters(t, d).Sub(before)
			if ret != tcxNext {
				t.Errorf("verdict %#x, want TCX_NEXT", ret)
			}
			if err := packet.Verify(out); err != nil {
				t.Errorf("output: %v", err)
			}
			if !bytes.Equal(out, want) {
				t.Errorf("output:\n got %x\nwant %x", out, want)
			}
			if diff := diffCounters(delta, deltas(len(in), CounterRevNAT)); diff != "" {
				t.Errorf("counter deltas differ:%s", diff)
			}
			orig := ctEntry(t, d, ConntrackKey{Src: src, Dst: vip, Proto: s.key.Proto})
			reply := ctEntry(t, d, ConntrackKey{Src: be, Dst: src, Proto: s.key.Proto, Reply: true})
			if orig.State != StateEstablished || reply.State != StateEstablished || reply.Packets != 1 {
				t.Errorf("after the reply: original %+v, reply %+v; want both established", orig, reply)
			}

			// A FIN from the backend, then a RST: state follows.
			runTC(t, d.TCEgressProgram(), replyFrame(s.key.Proto, be, src, packet.FIN|packet.ACK))
			if s.key.Proto == ProtoTCP {
				if e := ctEntry(t, d, ConntrackKey{Src: src, Dst: vip, Proto: ProtoTCP}); e.State != StateFinWait {
					t.Errorf("after FIN: %v", e.State)
				}
				runTC(t, d.TCEgressProgram(), replyFrame(s.key.Proto, be, src, packet.RST))
				if e := ctEntry(t, d, ConntrackKey{Src: src, Dst: vip, Proto: ProtoTCP}); e.State != StateClose {
					t.Errorf("after RST: %v", e.State)
				}
			}
		})
	}

	s := svcs[0]
	be := s.addrs[0]
	b := packet.MustBuild
	for _, c := range []struct {
		name  string
		frame []byte
	}{
		{"reply to another client", replyFrame(ProtoTCP, be, ap(netip.MustParseAddr("192.0.2.200"), 50000), packet.ACK)},
		{"reply from another port", replyFrame(ProtoTCP, ap(be.Addr(), 9999), ap(client4, 50000), packet.ACK)},
		{"client to backend (forwarded)", flowFrame(ProtoTCP, ap(client4, 50000), be, false)},
		{"udp checksum zero, not ours", b(eth, packet.IPv4{Src: be.Addr(), Dst: client4}, packet.UDP{SrcPort: 1, DstPort: 2, ZeroChecksum: true})},
		{"arp", b(eth, packet.ARP{Op: packet.ARPRequest, SenderMAC: macClient, SenderIP: client4, TargetIP: vip4})},
		{"icmp echo reply", b(eth, packet.IPv4{Src: be.Addr(), Dst: client4}, packet.ICMPv4{Type: 0, ID: 1})},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := readCounters(t, d)
			ret, out := runTC(t, d.TCEgressProgram(), c.frame)
			if ret != tcxNext || !bytes.Equal(out, c.frame) {
				t.Errorf("verdict %#x, changed %v", ret, !bytes.Equal(out, c.frame))
			}
			if delta := readCounters(t, d).Sub(before); delta != (Counters{}) {
				t.Errorf("counted %v, want nothing", delta)
			}
		})
	}
}

// The TC ingress twin of XDP translates the same way, and drops (cannot
// answer) when there is no backend.
func TestTCIngressForward(t *testing.T) {
	testenv.RequirePrivileged(t)
	d, svcs := loadLB(t, Options{})
	for i, s := range svcs {
		client := client4
		if s.key.Addr.Is6() {
			client = client6
		}
		src, vip := ap(client, uint16(51000+i)), ap(s.key.Addr, s.key.Port)
		be := s.addrs[s.pick(client, src.Port())]
		in := flowFrame(s.key.Proto, src, vip, false)
		before := readCounters(t, d)
		ret, out := runTC(t, d.TCIngressProgram(), in)
		if want := flowFrame(s.key.Proto, src, be, false); ret != tcxNext || !bytes.Equal(out, want) {
			t.Errorf("%v: verdict %#x\n got %x\nwant %x", s.key, ret, out, want)
		}
		if err := packet.Verify(out); err != nil {
			t.Errorf("%v: %v", s.key, err)
		}
		if diff := diffCounters(readCounters(t, d).Sub(before), deltas(len(in), CounterFwdNew)); diff != "" {
			t.Errorf("%v: counter deltas differ:%s", s.key, diff)
		}
	}
	s := svcs[0]
	if err := d.PutFrontend(s.key, Frontend{ServiceID: s.id}); err != nil {
		t.Fatal(err)
	}
	in := flowFrame(ProtoTCP, ap(client4, 52000), ap(vip4, 80), false)
	before := readCounters(t, d)
	if ret, _ := runTC(t, d.TCIngressProgram(), in); ret != tcxDrop {
		t.Errorf("no backend: verdict %d, want TCX_DROP", ret)
	}
	if diff := diffCounters(readCounters(t, d).Sub(before), deltas(len(in), CounterNoBackendDrop)); diff != "" {
		t.Errorf("counter deltas differ:%s", diff)
	}
	not := flowFrame(ProtoTCP, ap(client4, 52000), ap(vip4b, 80), false)
	if ret, out := runTC(t, d.TCIngressProgram(), not); ret != tcxNext || !bytes.Equal(out, not) {
		t.Errorf("not ours: changed")
	}
}

// icmpError builds an ICMP error (outer src -> dst) quoting quote.
func icmpError(v4 bool, src, dst netip.Addr, typ, code uint8, mtu uint32, quote []byte) []byte {
	if v4 {
		return packet.MustBuild(ethBack, packet.IPv4{Src: src, Dst: dst}, packet.ICMPv4{Type: typ, Code: code, ID: uint16(mtu >> 16), Seq: uint16(mtu)}, packet.Payload(quote))
	}
	return packet.MustBuild(ethBack, packet.IPv6{Src: src, Dst: dst}, packet.ICMPv6{Type: typ, Code: code, ID: uint16(mtu >> 16), Seq: uint16(mtu)}, packet.Payload(quote))
}

// ipPacket builds an IP packet (no Ethernet) from src to dst.
func ipPacket(proto uint8, src, dst netip.AddrPort, payload int) []byte {
	var l4 packet.Layer = packet.UDP{SrcPort: src.Port(), DstPort: dst.Port()}
	if proto == ProtoTCP {
		l4 = packet.TCP{SrcPort: src.Port(), DstPort: dst.Port(), Seq: 7, Ack: 9, Flags: packet.ACK, Window: 500}
	}
	return packet.MustBuild(ipLayer(src.Addr(), dst.Addr()), l4, packet.Payload(bytes.Repeat([]byte{0x5a}, payload)))
}

// ICMP errors about translated flows are translated too, both ways, so
// that Path MTU discovery works: fragmentation needed (IPv4) and packet too
// big (IPv6), from a router on the client side (inbound, XDP) and from the
// backend or the node (outbound, TC egress).
func TestICMPErrorTranslation(t *testing.T) {
	testenv.RequirePrivileged(t)
	d, svcs := loadLB(t, Options{})

	type flow struct {
		s        service
		src, vip netip.AddrPort
		be       netip.AddrPort
	}
	flows := map[string]flow{}
	for i, s := range svcs {
		client := client4
		if s.key.Addr.Is6() {
			client = client6
		}
		f := flow{s: s, src: ap(client, uint16(53000+i)), vip: ap(s.key.Addr, s.key.Port)}
		f.be = s.addrs[s.pick(client, f.src.Port())]
		runXDP(t, d.XDPProgram(), flowFrame(s.key.Proto, f.src, f.vip, false))
		flows[map[bool]string{true: "4", false: "6"}[client.Is4()]+map[uint8]string{ProtoTCP: "tcp", ProtoUDP: "udp"}[s.key.Proto]] = f
	}

	for _, c := range []struct {
		name     string
		flow     string
		inbound  bool
		fromPeer bool // outer address is the frontend (inbound) / the backend (outbound)
		quoteLen int  // bytes of the offending IP packet quoted (0: all)
	}{
		{"ipv4 tcp frag needed from a router", "4tcp", true, true, 28},
		{"ipv4 udp frag needed from a router", "4udp", true, true, 28},
		{"ipv4 tcp frag needed, full quote", "4tcp", true, true, 0},
		{"ipv6 tcp packet too big from a router", "6tcp", true, true, 0},
		{"ipv6 udp packet too big from a router", "6udp", true, true, 0},
		{"ipv4 tcp frag needed from the backend", "4tcp", false, true, 28},
		{"ipv4 udp frag needed from the node", "4udp", false, false, 0},
		{"ipv6 tcp packet too big from the backend", "6tcp", false, true, 0},
		{"ipv6 udp packet too big from the node", "6udp", false, false, 48},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := flows[c.flow]
			v4 := f.src.Addr().Is4()
			typ, code, mtu := uint8(3), uint8(4), uint32(1400)
			if !v4 {
				typ, code = 2, 0
			}
			cut := func(b []byte) []byte {
				if c.quoteLen != 0 {
					return b[:c.quoteLen]
				}
				return b
			}
			var in, want []byte
			var counter Counter
			var run func() (uint32, []byte)
			router := router4
			if !v4 {
				router = router6
			}
			if c.inbound {
				// Our reply vip -> client was too big somewhere; the router tells the vip.
				outerSrc, outerDst, wantDst := router, router, router
				if c.fromPeer {
					outerDst, wantDst = f.vip.Addr(), f.be.Addr()
				}
				in = icmpError(v4, outerSrc, outerDst, typ, code, mtu, cut(ipPacket(f.s.key.Proto, f.vip, f.src, 100)))
				want = icmpError(v4, outerSrc, wantDst, typ, code, mtu, cut(ipPacket(f.s.key.Proto, f.be, f.src, 100)))
				counter = CounterICMPErrorIn
				run = func() (uint32, []byte) { return runXDP(t, d.XDPProgram(), in) }
			} else {
				// The forwarded client -> backend packet was too big; the backend or node tells the client.
				outerSrc, wantSrc := router, router
				if c.fromPeer {
					outerSrc, wantSrc = f.be.Addr(), f.vip.Addr()
				}
				in = icmpError(v4, outerSrc, f.src.Addr(), typ, code, mtu, cut(ipPacket(f.s.key.Proto, f.src, f.be, 100)))
				want = icmpError(v4, wantSrc, f.src.Addr(), typ, code, mtu, cut(ipPacket(f.s.key.Proto, f.src, f.vip, 100)))
				counter = CounterICMPErrorOut
				run = func() (uint32, []byte) { return runTC(t, d.TCEgressProgram(), in) }
			}
			before := readCounters(t, d)
			ret, out := run()
			delta := readCounters(t, d).Sub(before)
			if (c.inbound && ret != xdpPass) || (!c.inbound && ret != tcxNext) {
				t.Errorf("verdict %#x", ret)
			}
			if err := packet.Verify(out); err != nil {
				t.Errorf("output: %v", err)
			}
			if !bytes.Equal(out, want) {
				t.Errorf("output:\n got %x\nwant %x", out, want)
			}
			wantDelta := deltas(len(in), counter)
			if c.inbound {
				wantDelta = deltas(len(in), map[bool]Counter{true: CounterIPv4Other, false: CounterIPv6Other}[v4], counter)
			}
			if diff := diffCounters(delta, wantDelta); diff != "" {
				t.Errorf("counter deltas differ:%s", diff)
			}
		})
	}

	// An error about a flow we do not know passes untouched.
	f := flows["4tcp"]
	other := icmpError(true, router4, f.vip.Addr(), 3, 4, 1400, ipPacket(ProtoTCP, f.vip, ap(client4, 1), 0)[:28])
	if ret, out := runXDP(t, d.XDPProgram(), other); ret != xdpPass || !bytes.Equal(out, other) {
		t.Errorf("unknown flow's error changed")
	}
	if ret, out := runTC(t, d.TCEgressProgram(), other); ret != tcxNext || !bytes.Equal(out, other) {
		t.Errorf("unknown flow's error changed at egress")
	}
}
