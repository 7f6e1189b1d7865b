package bpf

import (
	"bytes"
	"net/netip"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/internal/testenv"
	"github.com/sluice-lb/sluice/test/packet"
)

var ethBack = packet.Ethernet{Dst: macClient, Src: macNode}

// A frontend without a usable backend rejects like kube-proxy: TCP gets a
// RST, UDP an ICMP / ICMPv6 port unreachable, sent back out (XDP_TX), with
// an event for the agent.
func TestXDPNoBackend(t *testing.T) {
	testenv.RequirePrivileged(t)
	d, svcs := loadLB(t, Options{})
	for _, s := range svcs {
		if err := d.PutFrontend(s.key, Frontend{ServiceID: s.id, MaglevBase: s.base()}); err != nil {
			t.Fatal(err)
		}
	}
	events, err := d.Events()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { events.Close() })

	hi := packet.Payload("sluice says hi")
	big := packet.Payload(bytes.Repeat([]byte{0xab}, 1400))
	udp4 := packet.MustBuild(eth, packet.IPv4{Src: client4, Dst: vip4}, packet.UDP{SrcPort: 5000, DstPort: 53}, hi)
	udp6 := packet.MustBuild(eth, packet.IPv6{Src: client6, Dst: vip6}, packet.UDP{SrcPort: 5000, DstPort: 53}, hi)
	udp6big := packet.MustBuild(eth, packet.IPv6{Src: client6, Dst: vip6}, packet.UDP{SrcPort: 5000, DstPort: 53}, big)
	udp4opt := packet.MustBuild(eth, packet.VLAN{ID: 7}, packet.IPv4{Src: client4, Dst: vip4, Options: []byte{1, 1, 1, 0}}, packet.UDP{SrcPort: 5000, DstPort: 53}, hi)

	for _, c := range []struct {
		name    string
		in      []byte
		verdict uint32
		want    []byte
		counted []Counter
	}{
		{"ipv4 tcp syn",
			packet.MustBuild(eth, packet.IPv4{Src: client4, Dst: vip4}, packet.TCP{SrcPort: 40000, DstPort: 80, Seq: 1000, Flags: packet.SYN, Window: 65535}, hi),
			xdpTX,
			packet.MustBuild(ethBack, packet.IPv4{Src: vip4, Dst: client4, Flags: packet.IPv4DontFragment}, packet.TCP{SrcPort: 80, DstPort: 40000, Ack: 1000 + 14 + 1, Flags: packet.RST | packet.ACK}),
			[]Counter{CounterIPv4TCP, CounterNoBackendRST}},
		{"ipv4 tcp ack with options",
			packet.MustBuild(eth, packet.IPv4{Src: client4, Dst: vip4, Options: []byte{1, 1, 1, 0}}, packet.TCP{SrcPort: 40000, DstPort: 80, Seq: 1000, Ack: 777, Flags: packet.ACK | packet.FIN, Options: []byte{1, 1, 1, 0}}, hi),
			xdpTX,
			packet.MustBuild(ethBack, packet.IPv4{Src: vip4, Dst: client4, Flags: packet.IPv4DontFragment}, packet.TCP{SrcPort: 80, DstPort: 40000, Seq: 777, Flags: packet.RST}),
			[]Counter{CounterIPv4TCP, CounterNoBackendRST}},
		{"ipv6 tcp syn",
			packet.MustBuild(eth, packet.IPv6{Src: client6, Dst: vip6}, packet.TCP{SrcPort: 40000, DstPort: 80, Seq: 0xffffffff, Flags: packet.SYN}),
			xdpTX,
			packet.MustBuild(ethBack, packet.IPv6{Src: vip6, Dst: client6}, packet.TCP{SrcPort: 80, DstPort: 40000, Ack: 0, Flags: packet.RST | packet.ACK}),
			[]Counter{CounterIPv6TCP, CounterNoBackendRST}},
		{"tcp rst is not answered",
			packet.MustBuild(eth, packet.IPv4{Src: client4, Dst: vip4}, packet.TCP{SrcPort: 40000, DstPort: 80, Flags: packet.RST}),
			xdpDrop, nil,
			[]Counter{CounterIPv4TCP, CounterNoBackendDrop}},
		{"ipv4 udp", udp4, xdpTX,
			packet.MustBuild(ethBack, packet.IPv4{Src: vip4, Dst: client4, TOS: 0xc0}, packet.ICMPv4{Type: 3, Code: 3}, packet.Payload(udp4[14:14+28])),
			[]Counter{CounterIPv4UDP, CounterNoBackendICMP}},
		{"vlan ipv4 udp with ip options", udp4opt, xdpTX,
			packet.MustBuild(ethBack, packet.VLAN{ID: 7}, packet.IPv4{Src: vip4, Dst: client4, TOS: 0xc0}, packet.ICMPv4{Type: 3, Code: 3}, packet.Payload(udp4opt[18:18+32])),
			[]Counter{CounterIPv4UDP, CounterNoBackendICMP}},
		{"ipv6 udp", udp6, xdpTX,
			packet.MustBuild(ethBack, packet.IPv6{Src: vip6, Dst: client6}, packet.ICMPv6{Type: 1, Code: 4}, packet.Payload(udp6[14:])),
			[]Counter{CounterIPv6UDP, CounterNoBackendICMP}},
		{"ipv6 udp quoted up to 1280 bytes", udp6big, xdpTX,
			packet.MustBuild(ethBack, packet.IPv6{Src: vip6, Dst: client6}, packet.ICMPv6{Type: 1, Code: 4}, packet.Payload(udp6big[14:14+1280-48])),
			[]Counter{CounterIPv6UDP, CounterNoBackendICMP}},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := readCounters(t, d)
			ret, out := runXDP(t, d.XDPProgram(), c.in)
			delta := readCounters(t, d).Sub(before)
			if ret != c.verdict {
				t.Fatalf("verdict %d, want %d", ret, c.verdict)
			}
			if c.want != nil {
				if err := packet.Verify(out); err != nil {
					t.Errorf("answer: %v", err)
				}
				if !bytes.Equal(out, c.want) {
					t.Errorf("answer:\n got %x\nwant %x", out, c.want)
				}
			}
			if diff := diffCounters(delta, deltas(len(c.in), c.counted...)); diff != "" {
				t.Errorf("counter deltas differ:%s", diff)
			}

			events.SetDeadline(time.Now().Add(time.Second))
			ev, err := events.Read()
			if err != nil {
				t.Fatalf("event: %v", err)
			}
			p, _ := packet.Parse(c.in)
			var src, dst netip.AddrPort
			if ip := p.IPv4(); ip != nil {
				src, dst = ap(ip.Src, 0), ap(ip.Dst, 0)
			} else {
				src, dst = ap(p.IPv6().Src, 0), ap(p.IPv6().Dst, 0)
			}
			if tcp := p.TCP(); tcp != nil {
				src, dst = ap(src.Addr(), tcp.SrcPort), ap(dst.Addr(), tcp.DstPort)
			} else {
				src, dst = ap(src.Addr(), p.UDP().SrcPort), ap(dst.Addr(), p.UDP().DstPort)
			}
			if ev.Type != EventNoBackend || ev.Src != src || ev.Dst != dst || ev.Len != uint32(len(c.in)) ||
				ev.Counter != c.counted[1] || !recent(ev.Time) || (ev.ServiceID != 1 && ev.ServiceID != 2 && ev.ServiceID != 3 && ev.ServiceID != 4) {
				t.Errorf("event %+v, want no_backend %v -> %v", ev, src, dst)
			}
		})
	}
	// No conntrack entry for rejected flows.
	ctMissing(t, d, ConntrackKey{Src: ap(client4, 40000), Dst: ap(vip4, 80), Proto: ProtoTCP})
}

// A malformed packet aimed at a frontend passes (the kernel drops it) with
// an event.
func TestXDPMalformedEvent(t *testing.T) {
	testenv.RequirePrivileged(t)
	d, _ := loadLB(t, Options{})
	events, err := d.Events()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { events.Close() })
	frame := packet.MustBuild(eth, packet.IPv4{Src: client4, Dst: vip4}, packet.TCP{SrcPort: 40000, DstPort: 80, Flags: packet.SYN})
	frame[14+20+12] = 0x40 // data offset 4
	ret, out := runXDP(t, d.XDPProgram(), frame)
	if ret != xdpPass || !bytes.Equal(out, frame) {
		t.Errorf("malformed frame: verdict %d, changed %v", ret, !bytes.Equal(out, frame))
	}
	events.SetDeadline(time.Now().Add(time.Second))
	ev, err := events.Read()
	if err != nil {
		t.Fatal(err)
	}
	if ev.Type != EventMalformed || ev.ServiceID != 1 || ev.Dst != ap(vip4, 80) || ev.Counter != CounterMalformedL4 {
		t.Errorf("event %+v", ev)
	}
}
