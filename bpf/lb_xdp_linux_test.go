package bpf

import (
	"bytes"
	"net/netip"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/internal/testenv"
	"github.com/sluice-lb/sluice/test/packet"
)

// ipLayer returns the IP layer for src -> dst in the right family.
func ipLayer(src, dst netip.Addr) packet.Layer {
	if src.Is4() {
		return packet.IPv4{Src: src, Dst: dst}
	}
	return packet.IPv6{Src: src, Dst: dst}
}

// l4Layer returns a TCP SYN or a UDP header from sport to dport.
func l4Layer(proto uint8, sport, dport uint16, zeroCsum bool) packet.Layer {
	if proto == ProtoTCP {
		return packet.TCP{SrcPort: sport, DstPort: dport, Seq: 1000, Flags: packet.SYN, Window: 65535}
	}
	return packet.UDP{SrcPort: sport, DstPort: dport, ZeroChecksum: zeroCsum}
}

// flowFrame builds a frame from src:sport to dst:dport.
func flowFrame(proto uint8, src, dst netip.AddrPort, zeroCsum bool) []byte {
	return packet.MustBuild(eth, ipLayer(src.Addr(), dst.Addr()), l4Layer(proto, src.Port(), dst.Port(), zeroCsum), packet.Payload("sluice says hi"))
}

func classOf(proto uint8, v4 bool) Counter {
	switch {
	case v4 && proto == ProtoTCP:
		return CounterIPv4TCP
	case v4:
		return CounterIPv4UDP
	case proto == ProtoTCP:
		return CounterIPv6TCP
	}
	return CounterIPv6UDP
}

// A new flow to each frontend (TCP/UDP, IPv4/IPv6) goes to the backend
// Maglev picks, with only the destination rewritten and every checksum
// valid; both conntrack entries are written.
func TestXDPForwardNewFlow(t *testing.T) {
	testenv.RequirePrivileged(t)
	d, svcs := loadLB(t, Options{})

	type tc struct {
		name     string
		svc      service
		client   netip.Addr
		zeroCsum bool
	}
	var cases []tc
	for _, s := range svcs {
		client := client4
		if s.key.Addr.Is6() {
			client = client6
		}
		name := map[bool]string{true: "ipv4", false: "ipv6"}[client.Is4()] + map[uint8]string{ProtoTCP: " tcp", ProtoUDP: " udp"}[s.key.Proto]
		cases = append(cases, tc{name, s, client, false})
		if s.key.Proto == ProtoUDP && client.Is4() {
			cases = append(cases, tc{name + " zero checksum", s, client, true})
		}
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			sport := uint16(40000 + i)
			src, vip := ap(c.client, sport), ap(c.svc.key.Addr, c.svc.key.Port)
			in := flowFrame(c.svc.key.Proto, src, vip, c.zeroCsum)
			be := c.svc.addrs[c.svc.pick(c.client, sport)]
			want := flowFrame(c.svc.key.Proto, src, be, c.zeroCsum)

			before := readCounters(t, d)
			ret, out := runXDP(t, d.XDPProgram(), in)
			delta := readCounters(t, d).Sub(before)
			if ret != xdpPass {
				t.Errorf("verdict %d, want XDP_PASS", ret)
			}
			if err := packet.Verify(out); err != nil {
				t.Errorf("output: %v", err)
			}
			if !bytes.Equal(out, want) {
				t.Errorf("output:\n got %x\nwant %x", out, want)
			}
			if diff := diffCounters(delta, deltas(len(in), classOf(c.svc.key.Proto, c.client.Is4()), CounterFwdNew)); diff != "" {
				t.Errorf("counter deltas differ:%s", diff)
			}

			beID := c.svc.backends[c.svc.pick(c.client, sport)]
			orig := ctEntry(t, d, ConntrackKey{Src: src, Dst: vip, Proto: c.svc.key.Proto})
			wantState := StateSynSent
			if c.svc.key.Proto == ProtoUDP {
				wantState = StateUnreplied
			}
			if orig.BackendID != beID || orig.ServiceID != c.svc.id || orig.NAT != be || orig.State != wantState ||
				orig.Packets != 1 || orig.Bytes != uint64(len(in)) || !recent(orig.LastSeen) || orig.Created != orig.LastSeen {
				t.Errorf("original entry %+v, want backend %d (%v) service %d state %v", orig, beID, be, c.svc.id, wantState)
			}
			reply := ctEntry(t, d, ConntrackKey{Src: be, Dst: src, Proto: c.svc.key.Proto, Reply: true})
			if reply.BackendID != beID || reply.ServiceID != c.svc.id || reply.NAT != vip || reply.State != wantState {
				t.Errorf("reply entry %+v, want NAT %v", reply, vip)
			}
		})
	}
}

// Traffic that is not for a frontend comes out exactly as it went in and
// is only counted by class; so do fragments, even to a frontend.
func TestXDPNotOurs(t *testing.T) {
	testenv.RequirePrivileged(t)
	d, _ := loadLB(t, Options{})
	b := packet.MustBuild
	for _, c := range []struct {
		name  string
		frame []byte
		class Counter
	}{
		{"other address", b(eth, packet.IPv4{Src: client4, Dst: vip4b}, syn), CounterIPv4TCP},
		{"other port", b(eth, packet.IPv4{Src: client4, Dst: vip4}, packet.TCP{SrcPort: 1, DstPort: 443, Flags: packet.SYN}), CounterIPv4TCP},
		{"other protocol (udp to a tcp port)", b(eth, packet.IPv4{Src: client4, Dst: vip4}, packet.UDP{SrcPort: 1, DstPort: 80}), CounterIPv4UDP},
		{"ipv6 other port", b(eth, packet.IPv6{Src: client6, Dst: vip6}, packet.UDP{SrcPort: 1, DstPort: 54}), CounterIPv6UDP},
		{"icmp echo to a frontend", b(eth, packet.IPv4{Src: client4, Dst: vip4}, packet.ICMPv4{Type: 8, ID: 1}), CounterIPv4Other},
		{"first fragment to a frontend", b(eth, packet.IPv4{Src: client4, Dst: vip4, Flags: packet.IPv4MoreFragments}, syn, packet.Payload("first")), CounterIPv4Other},
		{"non-first fragment to a frontend", b(eth, packet.IPv4{Src: client4, Dst: vip4, Protocol: packet.ProtoTCP, FragmentOffset: 100}, packet.Payload("middle")), CounterIPv4Other},
		{"ipv6 fragment header to a frontend", b(eth, packet.IPv6{Src: client6, Dst: vip6, NextHeader: packet.ProtoFragment}, packet.Payload{packet.ProtoTCP, 0, 0, 1, 0, 0, 0, 1}), CounterIPv6Other},
		{"reply from a backend", b(eth, packet.IPv4{Src: netip.MustParseAddr("10.1.0.1"), Dst: client4}, packet.TCP{SrcPort: 8080, DstPort: 40000, Flags: packet.SYN | packet.ACK}), CounterIPv4TCP},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := readCounters(t, d)
			ret, out := runXDP(t, d.XDPProgram(), c.frame)
			delta := readCounters(t, d).Sub(before)
			if ret != xdpPass || !bytes.Equal(out, c.frame) {
				t.Errorf("verdict %d, frame changed %v:\n got %x\nwant %x", ret, !bytes.Equal(out, c.frame), out, c.frame)
			}
			if diff := diffCounters(delta, deltas(len(c.frame), c.class)); diff != "" {
				t.Errorf("counter deltas differ:%s", diff)
			}
		})
	}
}

// An established flow keeps its backend when the Maglev table changes and
// when its backend starts terminating; new flows avoid a terminating one.
func TestXDPConntrackKeepsBackend(t *testing.T) {
	testenv.RequirePrivileged(t)
	d, svcs := loadLB(t, Options{})
	s := svcs[0]
	vip := ap(s.key.Addr, s.key.Port)
	src := ap(client4, 41000)
	first := s.pick(client4, src.Port())
	be := s.addrs[first]

	if _, out := runXDP(t, d.XDPProgram(), flowFrame(ProtoTCP, src, vip, false)); !bytes.Equal(out, flowFrame(ProtoTCP, src, be, false)) {
		t.Fatalf("first packet not sent to %v", be)
	}

	// The backend terminates: out of the table, state terminating.
	var table []uint32
	for i := range 7 {
		if id := s.backends[(first+1+i%2)%3]; true {
			table = append(table, id)
		}
	}
	if err := d.PutMaglev(s.base(), table); err != nil {
		t.Fatal(err)
	}
	if err := d.PutBackend(s.backends[first], Backend{Addr: be.Addr(), Port: be.Port(), State: BackendTerminating}); err != nil {
		t.Fatal(err)
	}

	ack := packet.MustBuild(eth, packet.IPv4{Src: client4, Dst: vip4}, packet.TCP{SrcPort: src.Port(), DstPort: 80, Seq: 1001, Ack: 5001, Flags: packet.ACK, Window: 100}, packet.Payload("GET /"))
	want := packet.MustBuild(eth, packet.IPv4{Src: client4, Dst: be.Addr()}, packet.TCP{SrcPort: src.Port(), DstPort: be.Port(), Seq: 1001, Ack: 5001, Flags: packet.ACK, Window: 100}, packet.Payload("GET /"))
	before := readCounters(t, d)
	ret, out := runXDP(t, d.XDPProgram(), ack)
	if ret != xdpPass || !bytes.Equal(out, want) {
		t.Errorf("established packet: verdict %d\n got %x\nwant %x", ret, out, want)
	}
	if diff := diffCounters(readCounters(t, d).Sub(before), deltas(len(ack), CounterIPv4TCP, CounterFwdEstablished)); diff != "" {
		t.Errorf("counter deltas differ:%s", diff)
	}
	if e := ctEntry(t, d, ConntrackKey{Src: src, Dst: vip, Proto: ProtoTCP}); e.Packets != 2 || e.State != StateSynSent {
		t.Errorf("original entry after 2 packets: %+v", e)
	}

	// New flows: never the terminating backend.
	for p := range uint16(64) {
		nsrc := ap(client4, 42000+p)
		_, out := runXDP(t, d.XDPProgram(), flowFrame(ProtoTCP, nsrc, vip, false))
		pp, err := packet.Parse(out)
		if err != nil {
			t.Fatal(err)
		}
		if pp.IPv4().Dst == be.Addr() {
			t.Fatalf("new flow %v went to the terminating backend %v", nsrc, be)
		}
	}

	// A removed backend keeps its TCP flows, as with kube-proxy's conntrack: the entry holds
	// the address.
	if err := d.DeleteBackend(s.backends[first]); err != nil {
		t.Fatal(err)
	}
	before = readCounters(t, d)
	if _, out = runXDP(t, d.XDPProgram(), ack); !bytes.Equal(out, want) {
		t.Errorf("TCP flow of a removed backend moved:\n got %x\nwant %x", out, want)
	}
	if diff := diffCounters(readCounters(t, d).Sub(before), deltas(len(ack), CounterIPv4TCP, CounterFwdEstablished)); diff != "" {
		t.Errorf("counter deltas differ:%s", diff)
	}

	// UDP flows of a removed backend move to a live one (kube-proxy flushes UDP conntrack).
	u := svcs[1]
	uvip := ap(u.key.Addr, u.key.Port)
	usrc := ap(client4, 45000)
	ufirst := u.pick(client4, usrc.Port())
	ube := u.addrs[ufirst]
	if _, out := runXDP(t, d.XDPProgram(), flowFrame(ProtoUDP, usrc, uvip, false)); !bytes.Equal(out, flowFrame(ProtoUDP, usrc, ube, false)) {
		t.Fatalf("UDP flow not sent to %v", ube)
	}
	var utable []uint32
	for i := range 7 {
		utable = append(utable, u.backends[(ufirst+1+i%2)%3])
	}
	if err := d.PutMaglev(u.base(), utable); err != nil {
		t.Fatal(err)
	}
	if err := d.DeleteBackend(u.backends[ufirst]); err != nil {
		t.Fatal(err)
	}
	before = readCounters(t, d)
	_, out = runXDP(t, d.XDPProgram(), flowFrame(ProtoUDP, usrc, uvip, false))
	if p, _ := packet.Parse(out); p == nil || p.IPv4().Dst == ube.Addr() {
		t.Errorf("UDP flow of a removed backend still goes to it")
	}
	if diff := diffCounters(readCounters(t, d).Sub(before), deltas(len(out), CounterIPv4UDP, CounterCTExpired, CounterFwdNew)); diff != "" {
		t.Errorf("counter deltas differ:%s", diff)
	}
}

// An expired conntrack entry is a miss: the flow is selected again and the
// entry overwritten.
func TestXDPConntrackExpired(t *testing.T) {
	testenv.RequirePrivileged(t)
	d, svcs := loadLB(t, Options{})
	s := svcs[0]
	vip, src := ap(s.key.Addr, s.key.Port), ap(client4, 43000)
	pick := s.pick(client4, src.Port())
	other := (pick + 1) % 3
	key := ConntrackKey{Src: src, Dst: vip, Proto: ProtoTCP}
	stale := ConntrackEntry{
		LastSeen: MonotonicNow() - DefaultTimeouts.TCPSynSent - time.Second, BackendID: s.backends[other],
		ServiceID: s.id, NAT: s.addrs[other], State: StateSynSent,
	}
	stale.Created = stale.LastSeen
	if err := d.PutConntrack(key, stale); err != nil {
		t.Fatal(err)
	}
	in := flowFrame(ProtoTCP, src, vip, false)
	before := readCounters(t, d)
	_, out := runXDP(t, d.XDPProgram(), in)
	if want := flowFrame(ProtoTCP, src, s.addrs[pick], false); !bytes.Equal(out, want) {
		t.Errorf("expired flow not reselected:\n got %x\nwant %x", out, want)
	}
	if diff := diffCounters(readCounters(t, d).Sub(before), deltas(len(in), CounterIPv4TCP, CounterCTExpired, CounterFwdNew)); diff != "" {
		t.Errorf("counter deltas differ:%s", diff)
	}
	if e := ctEntry(t, d, key); e.BackendID != s.backends[pick] || !recent(e.LastSeen) {
		t.Errorf("entry not overwritten: %+v", e)
	}

	// Still fresh (one second short of the timeout): followed.
	fresh := stale
	fresh.LastSeen = MonotonicNow() - DefaultTimeouts.TCPSynSent + 5*time.Second
	if err := d.PutConntrack(key, fresh); err != nil {
		t.Fatal(err)
	}
	if _, out := runXDP(t, d.XDPProgram(), in); !bytes.Equal(out, flowFrame(ProtoTCP, src, s.addrs[other], false)) {
		t.Errorf("fresh entry not followed")
	}
}

// ClientIP affinity: flows of one client stick to the first one's backend,
// even where Maglev would pick another.
func TestXDPAffinity(t *testing.T) {
	testenv.RequirePrivileged(t)
	d, svcs := loadLB(t, Options{})
	s := svcs[0]
	if err := d.PutFrontend(s.key, Frontend{ServiceID: s.id, MaglevBase: s.base(), MaglevSize: 7, AffinityTimeout: time.Hour}); err != nil {
		t.Fatal(err)
	}
	vip := ap(s.key.Addr, s.key.Port)
	first := s.pick(client4, 44000)
	var differs uint16
	for p := uint16(44001); p < 45000; p++ {
		if s.pick(client4, p) != first {
			differs = p
			break
		}
	}
	if differs == 0 {
		t.Fatal("no port where Maglev picks another backend")
	}
	runXDP(t, d.XDPProgram(), flowFrame(ProtoTCP, ap(client4, 44000), vip, false))
	if id, last, err := d.Affinity(s.id, client4); err != nil || id != s.backends[first] || !recent(last) {
		t.Fatalf("affinity entry: %d %v %v, want backend %d", id, last, err, s.backends[first])
	}
	_, out := runXDP(t, d.XDPProgram(), flowFrame(ProtoTCP, ap(client4, differs), vip, false))
	if want := flowFrame(ProtoTCP, ap(client4, differs), s.addrs[first], false); !bytes.Equal(out, want) {
		t.Errorf("second flow of the client not on the affine backend %v", s.addrs[first])
	}
	// Another client is not affected.
	other := netip.MustParseAddr("192.0.2.99")
	_, out = runXDP(t, d.XDPProgram(), flowFrame(ProtoTCP, ap(other, 44000), vip, false))
	if want := flowFrame(ProtoTCP, ap(other, 44000), s.addrs[s.pick(other, 44000)], false); !bytes.Equal(out, want) {
		t.Errorf("another client's flow not on its Maglev backend")
	}
	// A terminating affine backend takes no new flows: Maglev decides.
	be := s.addrs[first]
	if err := d.PutBackend(s.backends[first], Backend{Addr: be.Addr(), Port: be.Port(), State: BackendTerminating}); err != nil {
		t.Fatal(err)
	}
	_, out = runXDP(t, d.XDPProgram(), flowFrame(ProtoTCP, ap(client4, differs+1000), vip, false))
	if p, _ := packet.Parse(out); p == nil || (p.IPv4().Dst == be.Addr() && s.pick(client4, differs+1000) != first) {
		t.Errorf("terminating affine backend got a new flow")
	}
}

// FrontendRandom spreads new flows without Maglev, over the table's backends.
func TestXDPRandom(t *testing.T) {
	testenv.RequirePrivileged(t)
	d, svcs := loadLB(t, Options{})
	s := svcs[1] // UDP
	if err := d.PutFrontend(s.key, Frontend{ServiceID: s.id, MaglevBase: s.base(), MaglevSize: 7, Flags: FrontendRandom}); err != nil {
		t.Fatal(err)
	}
	seen := map[netip.Addr]int{}
	for p := range uint16(200) {
		_, out := runXDP(t, d.XDPProgram(), flowFrame(ProtoUDP, ap(client4, 1000+p), ap(s.key.Addr, s.key.Port), false))
		if err := packet.Verify(out); err != nil {
			t.Fatal(err)
		}
		pp, _ := packet.Parse(out)
		seen[pp.IPv4().Dst]++
	}
	if len(seen) != 3 {
		t.Errorf("200 random flows reached %v, want all 3 backends", seen)
	}
	for a := range seen {
		if a != s.addrs[0].Addr() && a != s.addrs[1].Addr() && a != s.addrs[2].Addr() {
			t.Errorf("flow sent to %v, not a backend", a)
		}
	}
}
