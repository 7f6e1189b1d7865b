package bpf

import (
	"bytes"
	"net/netip"
	"testing"

	"github.com/sluice-lb/sluice/internal/testenv"
	"github.com/sluice-lb/sluice/test/packet"
)

var (
	peerNode4 = netip.MustParseAddr("192.0.2.2")
	peerNode6 = netip.MustParseAddr("2001:db8::2")
)

// tunnelled is frame (an Ethernet frame) in an IPIP / IPv6-in-IPv6 header from the frontend
// fe to node, the frontend's port in the IPv4 ID / IPv6 flow label, as DSR sends it.
func tunnelled(t *testing.T, frame []byte, fe netip.AddrPort, node netip.Addr) []byte {
	t.Helper()
	p, err := packet.Parse(frame)
	if err != nil {
		t.Fatal(err)
	}
	var outer packet.Layer = packet.IPv4{Src: fe.Addr(), Dst: node, ID: fe.Port()}
	if node.Is6() {
		outer = packet.IPv6{Src: fe.Addr(), Dst: node, FlowLabel: uint32(fe.Port())}
	}
	layers := append([]packet.Layer{p.Layers[0], outer}, p.Layers[1:]...)
	return packet.MustBuild(layers...)
}

// DSR, sending side: a new flow of a DSR frontend to a remote backend is DNATed and
// tunnelled by TC ingress to the backend's node (XDP leaves it to TC); without a route here
// TC drops it, the frame rewritten. Receiving side: the tunnelled packet, addressed to this
// node, is decapsulated at TC ingress and its flow recorded, so the backend's reply leaves
// TC egress from the frontend.
func TestDSR(t *testing.T) {
	testenv.RequirePrivileged(t)
	d := mustLoad(t, Options{Sizes: testSizes, SNATPorts: PortRange{61000, 61099}})
	svcs := standardServices()
	program(t, d, svcs...)
	for _, s := range svcs {
		node := peerNode4
		if s.key.Addr.Is6() {
			node = peerNode6
		}
		for i, id := range s.backends {
			must(t, d.PutBackend(id, Backend{Addr: s.addrs[i].Addr(), Port: s.addrs[i].Port(), Remote: true, Node: node}))
		}
		must(t, d.PutFrontend(s.key, Frontend{ServiceID: s.id, MaglevBase: s.base(), MaglevSize: uint32(len(s.table)), Flags: FrontendDSR}))
	}
	must(t, d.SetSNATAddrs(snat4, snat6))
	for i, s := range svcs {
		client, node := client4, peerNode4
		if s.key.Addr.Is6() {
			client, node = client6, peerNode6
		}
		name := map[bool]string{true: "ipv4", false: "ipv6"}[client.Is4()] + map[uint8]string{ProtoTCP: " tcp", ProtoUDP: " udp"}[s.key.Proto]
		t.Run("send "+name, func(t *testing.T) {
			src, vip := ap(client, uint16(47000+i)), ap(s.key.Addr, s.key.Port)
			be := s.addrs[s.pick(client, src.Port())]
			in := flowFrame(s.key.Proto, src, vip, false)
			if ret, out := runXDP(t, d.XDPProgram(), in); ret != xdpPass || !bytes.Equal(out[:len(in)], in) {
				t.Fatalf("XDP: verdict %d; want the packet passed untouched to TC", ret)
			}
			before := readCounters(t, d)
			ret, out := runTC(t, d.TCIngressProgram(), in)
			want := tunnelled(t, flowFrame(s.key.Proto, src, be, false), vip, node)
			if ret != tcxDrop || !bytes.Equal(out[:len(want)], want) {
				t.Errorf("TC: verdict %d (want drop: no route here), frame\n%x\nwant\n%x", ret, out, want)
			}
			if got := readCounters(t, d).Sub(before); got[CounterNoRoute].Packets != 1 {
				t.Errorf("no_route counted %d, want 1", got[CounterNoRoute].Packets)
			}
			ct := ctEntry(t, d, ConntrackKey{Src: src, Dst: vip, Proto: s.key.Proto})
			if ct.NAT != be || ct.SNATPort != 0 {
				t.Errorf("conntrack: %v SNAT port %d, want %v, no SNAT", ct.NAT, ct.SNATPort, be)
			}
		})
	}
	for i, s := range svcs {
		client, self := client4, snat4
		if s.key.Addr.Is6() {
			client, self = client6, snat6
		}
		name := map[bool]string{true: "ipv4", false: "ipv6"}[client.Is4()] + map[uint8]string{ProtoTCP: " tcp", ProtoUDP: " udp"}[s.key.Proto]
		t.Run("receive "+name, func(t *testing.T) {
			src, vip := ap(client, uint16(48000+i)), ap(s.key.Addr, s.key.Port)
			be := s.addrs[0]
			inner := flowFrame(s.key.Proto, src, be, false)
			before := readCounters(t, d)
			ret, out := runTC(t, d.TCIngressProgram(), tunnelled(t, inner, vip, self))
			if ret != tcxNext || !bytes.Equal(out[:len(inner)], inner) {
				t.Fatalf("TC: verdict %d, frame\n%x\nwant the inner one\n%x", ret, out, inner)
			}
			if got := readCounters(t, d).Sub(before); got[CounterDSRDecap].Packets != 1 {
				t.Errorf("dsr_decap counted %d, want 1", got[CounterDSRDecap].Packets)
			}
			if ct := ctEntry(t, d, ConntrackKey{Src: be, Dst: src, Proto: s.key.Proto, Reply: true}); ct.NAT != vip {
				t.Errorf("reply entry's frontend %v, want %v", ct.NAT, vip)
			}
			reply := replyFrame(s.key.Proto, be, src, packet.SYN|packet.ACK)
			want := replyFrame(s.key.Proto, vip, src, packet.SYN|packet.ACK)
			if ret, out := runTC(t, d.TCEgressProgram(), reply); ret != tcxNext || !bytes.Equal(out[:len(want)], want) {
				t.Errorf("the backend's reply at TC egress: verdict %d, frame\n%x\nwant\n%x", ret, out, want)
			}
			// A new flow whose tunnel names no DSR frontend (a CNI's IPIP, say) is left to the
			// kernel; a known flow is found by its reply tuple, whatever the outer port (GSO
			// counts the outer IPv4 ID up).
			stranger := flowFrame(s.key.Proto, ap(client, uint16(49000+i)), be, false)
			tun := tunnelled(t, stranger, ap(s.key.Addr, 9999), self)
			if ret, out := runTC(t, d.TCIngressProgram(), tun); ret != tcxNext || !bytes.Equal(out[:len(tun)], tun) {
				t.Errorf("a tunnel naming no DSR frontend: verdict %d, changed %v; want it untouched", ret, !bytes.Equal(out[:len(tun)], tun))
			}
			if ret, out := runTC(t, d.TCIngressProgram(), tunnelled(t, inner, ap(s.key.Addr, s.key.Port+1), self)); ret != tcxNext || !bytes.Equal(out[:len(inner)], inner) {
				t.Errorf("the known flow with another outer port: verdict %d, frame\n%x\nwant the inner one", ret, out)
			}
			// A tunnel to another node's address is none of ours: untouched.
			other := tunnelled(t, inner, vip, map[bool]netip.Addr{true: peerNode4, false: peerNode6}[client.Is4()])
			if ret, out := runTC(t, d.TCIngressProgram(), other); ret != tcxNext || !bytes.Equal(out[:len(other)], other) {
				t.Errorf("a tunnel to another node: verdict %d, changed %v", ret, !bytes.Equal(out[:len(other)], other))
			}
		})
	}
}
