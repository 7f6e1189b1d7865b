package bpf

import (
	"bytes"
	"net/netip"
	"testing"

	"github.com/sluice-lb/sluice/internal/testenv"
	"github.com/sluice-lb/sluice/test/packet"
)

var (
	snat4 = netip.MustParseAddr("192.0.2.1")
	snat6 = netip.MustParseAddr("2001:db8::1")
)

// loadSNAT loads the datapath with SNAT ports ports and the standard services whose backends
// are all on another node; the node's SNAT addresses are set.
func loadSNAT(t *testing.T, ports PortRange) (*Datapath, []service) {
	t.Helper()
	d := mustLoad(t, Options{Sizes: testSizes, SNATPorts: ports})
	svcs := standardServices()
	program(t, d, svcs...)
	for _, s := range svcs {
		for i, id := range s.backends {
			must(t, d.PutBackend(id, Backend{Addr: s.addrs[i].Addr(), Port: s.addrs[i].Port(), Remote: true}))
		}
	}
	must(t, d.SetSNATAddrs(snat4, snat6))
	return d, svcs
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// A new flow to a remote backend: XDP claims a SNAT port and leaves the packet to TC
// ingress, which rewrites source and destination (and, without a route here, drops it);
// the backend's reply is translated back to frontend -> client by TC ingress too; the flow's
// state follows; garbage collection frees the port once the flow is gone.
func TestSNATToRemoteBackend(t *testing.T) {
	testenv.RequirePrivileged(t)
	ports := PortRange{61000, 61099}
	d, svcs := loadSNAT(t, ports)
	for i, s := range svcs {
		client, na := client4, snat4
		if s.key.Addr.Is6() {
			client, na = client6, snat6
		}
		name := map[bool]string{true: "ipv4", false: "ipv6"}[client.Is4()] + map[uint8]string{ProtoTCP: " tcp", ProtoUDP: " udp"}[s.key.Proto]
		t.Run(name, func(t *testing.T) {
			src, vip := ap(client, uint16(42000+i)), ap(s.key.Addr, s.key.Port)
			be := s.addrs[s.pick(client, src.Port())]
			in := flowFrame(s.key.Proto, src, vip, false)

			ret, out := runXDP(t, d.XDPProgram(), in)
			if ret != xdpPass || !bytes.Equal(out[:len(in)], in) {
				t.Fatalf("XDP: verdict %d, frame changed %v; want it passed untouched to TC", ret, !bytes.Equal(out[:len(in)], in))
			}
			ct := ctEntry(t, d, ConntrackKey{Src: src, Dst: vip, Proto: s.key.Proto})
			if ct.SNATPort < ports.First || ct.SNATPort > ports.Last || ct.NAT != be {
				t.Fatalf("conntrack: backend %v SNAT port %d, want %v and a port in %v", ct.NAT, ct.SNATPort, be, ports)
			}
			ctMissing(t, d, ConntrackKey{Src: be, Dst: src, Proto: s.key.Proto, Reply: true})
			snatted := ap(na, ct.SNATPort)
			flows, err := d.SNATFlows()
			must(t, err)
			rk := ConntrackKey{Src: be, Dst: snatted, Proto: s.key.Proto, Reply: true}
			if f, ok := flows[rk]; !ok || f.Client != src || f.Frontend != vip {
				t.Fatalf("snat flow %v: %+v (present %v), want client %v frontend %v", rk, f, ok, src, vip)
			}

			before := readCounters(t, d)
			ret, out = runTC(t, d.TCIngressProgram(), in)
			want := flowFrame(s.key.Proto, snatted, be, false)
			if ret != tcxDrop || !bytes.Equal(out[:len(want)], want) {
				t.Errorf("TC ingress: verdict %d (want drop: no route here), frame\n%x\nwant\n%x", ret, out[:len(want)], want)
			}
			if got := readCounters(t, d).Sub(before); got[CounterNoRoute].Packets != 1 || got[CounterFwdEstablished].Packets != 1 {
				t.Errorf("TC ingress counted no_route %d, fwd_established %d; want 1, 1", got[CounterNoRoute].Packets, got[CounterFwdEstablished].Packets)
			}

			// The reply: XDP leaves it to TC ingress (its new source may be a node address),
			// which translates it back and, without a route here, drops it.
			reply := replyFrame(s.key.Proto, be, snatted, packet.SYN|packet.ACK)
			if ret, out := runXDP(t, d.XDPProgram(), reply); ret != xdpPass || !bytes.Equal(out[:len(reply)], reply) {
				t.Errorf("XDP reply: verdict %d, changed %v; want it passed untouched", ret, !bytes.Equal(out[:len(reply)], reply))
			}
			before = readCounters(t, d)
			ret, out = runTC(t, d.TCIngressProgram(), reply)
			want = replyFrame(s.key.Proto, vip, src, packet.SYN|packet.ACK)
			if ret != tcxDrop || !bytes.Equal(out[:len(want)], want) {
				t.Errorf("TC reply: verdict %d, frame\n%x\nwant\n%x", ret, out[:len(want)], want)
			}
			if got := readCounters(t, d).Sub(before); got[CounterSNATReverse].Packets != 1 || got[CounterNoRoute].Packets != 1 {
				t.Errorf("reply counted snat_reverse %d, no_route %d; want 1, 1", got[CounterSNATReverse].Packets, got[CounterNoRoute].Packets)
			}
			if ct := ctEntry(t, d, ConntrackKey{Src: src, Dst: vip, Proto: s.key.Proto}); ct.State != StateEstablished {
				t.Errorf("after the reply the flow is %v, want established", ct.State)
			}

			// The flow ends: its port is freed after two collections (see collectSNAT).
			_, err = d.DeleteConntrack([]ConntrackKey{{Src: src, Dst: vip, Proto: s.key.Proto}})
			must(t, err)
			for range 2 {
				_, err := d.CollectConntrack(MonotonicNow())
				must(t, err)
			}
			flows, err = d.SNATFlows()
			must(t, err)
			if _, ok := flows[rk]; ok {
				t.Errorf("snat flow %v survived the end of its flow", rk)
			}
		})
	}
}

// Two clients' flows that hash to the same only SNAT port: the second is dropped and
// counted, the first keeps its port; a live flow's port survives garbage collection.
func TestSNATPortsExhausted(t *testing.T) {
	testenv.RequirePrivileged(t)
	d, svcs := loadSNAT(t, PortRange{61000, 61000})
	s := svcs[0] // TCP IPv4
	one := ap(client4, 43000)
	vip := ap(s.key.Addr, s.key.Port)
	if ret, _ := runXDP(t, d.XDPProgram(), flowFrame(ProtoTCP, one, vip, false)); ret != xdpPass {
		t.Fatalf("first flow: verdict %d", ret)
	}
	// A second client whose flow goes to the same backend: its reply tuple would be the first's.
	var two netip.AddrPort
	for p := uint16(43001); ; p++ {
		if s.pick(client4, p) == s.pick(client4, one.Port()) {
			two = ap(client4, p)
			break
		}
	}
	before := readCounters(t, d)
	if ret, _ := runXDP(t, d.XDPProgram(), flowFrame(ProtoTCP, two, vip, false)); ret != xdpDrop {
		t.Errorf("second flow: verdict %d, want XDP_DROP", ret)
	}
	if got := readCounters(t, d).Sub(before)[CounterSNATNoPort].Packets; got != 1 {
		t.Errorf("snat_no_port counted %d, want 1", got)
	}
	for range 2 {
		_, err := d.CollectConntrack(MonotonicNow())
		must(t, err)
	}
	if ct := ctEntry(t, d, ConntrackKey{Src: one, Dst: vip, Proto: ProtoTCP}); ct.SNATPort != 61000 {
		t.Errorf("first flow's SNAT port %d, want 61000", ct.SNATPort)
	}
	if flows, err := d.SNATFlows(); err != nil || len(flows) != 1 {
		t.Errorf("snat flows after collection: %v, %v; want the live one", flows, err)
	}
}

// Without a SNAT address of the family (or with SNAT off), a flow to a remote backend is only
// DNATed, as before.
func TestSNATWithoutAddress(t *testing.T) {
	testenv.RequirePrivileged(t)
	d, svcs := loadSNAT(t, PortRange{61000, 61099})
	must(t, d.SetSNATAddrs(netip.Addr{}, snat6))
	s := svcs[0] // TCP IPv4
	src, vip := ap(client4, 44000), ap(s.key.Addr, s.key.Port)
	be := s.addrs[s.pick(client4, src.Port())]
	ret, out := runXDP(t, d.XDPProgram(), flowFrame(ProtoTCP, src, vip, false))
	want := flowFrame(ProtoTCP, src, be, false)
	if ret != xdpPass || !bytes.Equal(out[:len(want)], want) {
		t.Errorf("verdict %d, frame\n%x\nwant it DNATed\n%x", ret, out[:len(want)], want)
	}
	if _, err := Load(Options{Sizes: testSizes, SNATPorts: PortRange{62000, 61000}}); err == nil {
		t.Error("Load with SNAT ports 62000-61000: no error")
	}
}
