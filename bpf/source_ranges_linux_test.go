package bpf

import (
	"bytes"
	"net/netip"
	"slices"
	"testing"

	"github.com/sluice-lb/sluice/internal/testenv"
	"github.com/sluice-lb/sluice/test/packet"
)

// A frontend with FrontendSourceRanges admits new flows only from its service's source
// ranges (loadBalancerSourceRanges): a client outside them is dropped and counted, with no
// conntrack entry; one inside is balanced as usual, in either family. A connection made while
// its client was admitted lives on when the range goes; a new one from that client does not.
// With the flag and no range at all, nobody is admitted; without the flag, everybody is.
func TestXDPSourceRanges(t *testing.T) {
	testenv.RequirePrivileged(t)
	d, svcs := loadLB(t, Options{})
	v4, v6 := svcs[0], svcs[2]
	for _, s := range []service{v4, v6} {
		if err := d.PutFrontend(s.key, Frontend{ServiceID: s.id, MaglevBase: s.base(), MaglevSize: uint32(len(s.table)), Flags: FrontendSourceRanges}); err != nil {
			t.Fatal(err)
		}
	}
	allowed4, denied4 := netip.MustParsePrefix("192.0.2.0/28"), netip.MustParseAddr("192.0.2.200")
	allowed6, denied6 := netip.MustParsePrefix("2001:db8::/120"), netip.MustParseAddr("2001:db8:9::1")
	for _, r := range []struct {
		id     uint32
		prefix netip.Prefix
	}{{v4.id, allowed4}, {v4.id, netip.MustParsePrefix("10.9.0.0/16")}, {v6.id, allowed6},
		{svcs[1].id, netip.PrefixFrom(denied4, 32)}, // another service's range admits nobody here
	} {
		if err := d.PutSourceRange(r.id, r.prefix); err != nil {
			t.Fatal(err)
		}
	}
	got, err := d.SourceRanges()
	if err != nil || !slices.Contains(got[v4.id], allowed4) || !slices.Contains(got[v6.id], allowed6) || len(got[v4.id]) != 2 {
		t.Fatalf("source ranges read back: %v, %v", got, err)
	}

	send := func(s service, client netip.Addr, sport uint16) (uint32, []byte, Counters) {
		t.Helper()
		in := flowFrame(ProtoTCP, ap(client, sport), ap(s.key.Addr, s.key.Port), false)
		before := readCounters(t, d)
		ret, out := runXDP(t, d.XDPProgram(), in)
		return ret, out, readCounters(t, d).Sub(before)
	}
	for _, c := range []struct {
		name   string
		s      service
		client netip.Addr
		admit  bool
	}{
		{"ipv4 inside", v4, client4, true},
		{"ipv4 outside (inside another service's)", v4, denied4, false},
		{"ipv6 inside", v6, client6, true},
		{"ipv6 outside", v6, denied6, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			ret, out, delta := send(c.s, c.client, 40100)
			in := flowFrame(ProtoTCP, ap(c.client, 40100), ap(c.s.key.Addr, c.s.key.Port), false)
			class := classOf(ProtoTCP, c.client.Is4())
			if c.admit {
				if ret != xdpPass || bytes.Equal(out, in) {
					t.Fatalf("verdict %d, packet %s rewritten: %v; want it balanced", ret, map[bool]string{true: "not", false: ""}[bytes.Equal(out, in)], c.client)
				}
				if diff := diffCounters(delta, deltas(len(in), class, CounterFwdNew)); diff != "" {
					t.Errorf("counter deltas differ:%s", diff)
				}
				return
			}
			if ret != xdpDrop {
				t.Fatalf("verdict %d for a client outside the ranges, want XDP_DROP", ret)
			}
			if diff := diffCounters(delta, deltas(len(in), class, CounterSourceDenied)); diff != "" {
				t.Errorf("counter deltas differ:%s", diff)
			}
			ctMissing(t, d, ConntrackKey{Src: ap(c.client, 40100), Dst: ap(c.s.key.Addr, c.s.key.Port), Proto: ProtoTCP})
		})
	}

	// The range goes: the established connection stays, a new one is dropped.
	src, vip := ap(client4, 40100), ap(v4.key.Addr, v4.key.Port)
	be := v4.addrs[v4.pick(client4, src.Port())]
	if err := d.DeleteSourceRange(v4.id, allowed4); err != nil {
		t.Fatal(err)
	}
	ack := packet.MustBuild(eth, packet.IPv4{Src: client4, Dst: vip4}, packet.TCP{SrcPort: src.Port(), DstPort: vip.Port(), Seq: 1001, Ack: 1, Flags: packet.ACK, Window: 100})
	want := packet.MustBuild(eth, packet.IPv4{Src: client4, Dst: be.Addr()}, packet.TCP{SrcPort: src.Port(), DstPort: be.Port(), Seq: 1001, Ack: 1, Flags: packet.ACK, Window: 100})
	if ret, out := runXDP(t, d.XDPProgram(), ack); ret != xdpPass || !bytes.Equal(out, want) {
		t.Errorf("established connection after its range went: verdict %d\n got %x\nwant %x", ret, out, want)
	}
	if ret, _, _ := send(v4, client4, 40200); ret != xdpDrop {
		t.Errorf("new connection after its range went: verdict %d, want XDP_DROP", ret)
	}
	if ret, _, _ := send(v4, netip.MustParseAddr("10.9.3.4"), 40300); ret != xdpPass {
		t.Errorf("a client of the remaining range: verdict %d, want XDP_PASS", ret)
	}

	// No range at all: nobody; no flag: everybody.
	if err := d.DeleteSourceRange(v4.id, netip.MustParsePrefix("10.9.0.0/16")); err != nil {
		t.Fatal(err)
	}
	if ret, _, _ := send(v4, netip.MustParseAddr("10.9.3.4"), 40400); ret != xdpDrop {
		t.Errorf("restricted with no range: verdict %d, want XDP_DROP", ret)
	}
	if err := d.PutFrontend(v4.key, Frontend{ServiceID: v4.id, MaglevBase: v4.base(), MaglevSize: uint32(len(v4.table))}); err != nil {
		t.Fatal(err)
	}
	if ret, _, _ := send(v4, denied4, 40500); ret != xdpPass {
		t.Errorf("unrestricted frontend: verdict %d, want XDP_PASS", ret)
	}
}
