package bpf

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/sluice-lb/sluice/internal/testenv"
	"github.com/sluice-lb/sluice/test/packet"
)

// maxLinearFrame is the largest frame BPF_PROG_RUN hands an XDP program in
// one buffer: a page minus XDP_PACKET_HEADROOM (256) and the skb_shared_info
// tailroom (320 on x86-64). Linux 6.18 accepts longer input even for programs
// without BPF_F_XDP_HAS_FRAGS but puts the rest in fragments the program
// cannot see, so data_end - data is no longer the frame length.
const maxLinearFrame = 4096 - 256 - 320

// rawView is a lenient decode of a frame's addresses, straight from the
// bytes (one VLAN tag, no length checks beyond what it reads): what the
// fuzz properties need even for frames packet.Parse rejects.
type rawView struct {
	ok        bool
	src, dst  netip.Addr
	proto     uint8
	sport     uint16
	dport     uint16
	icmpError bool
	ports     bool
}

func viewFrame(f []byte) rawView {
	var v rawView
	off := 14
	if len(f) < off {
		return v
	}
	et := binary.BigEndian.Uint16(f[12:])
	if et == packet.EtherTypeVLAN || et == packet.EtherTypeQinQ {
		if len(f) < 18 {
			return v
		}
		et, off = binary.BigEndian.Uint16(f[16:]), 18
	}
	var l4 int
	switch et {
	case packet.EtherTypeIPv4:
		if len(f) < off+20 {
			return v
		}
		v.src, v.dst = netip.AddrFrom4([4]byte(f[off+12:])), netip.AddrFrom4([4]byte(f[off+16:]))
		v.proto, l4 = f[off+9], off+int(f[off]&0xf)*4
	case packet.EtherTypeIPv6:
		if len(f) < off+40 {
			return v
		}
		v.src, v.dst = netip.AddrFrom16([16]byte(f[off+8:])), netip.AddrFrom16([16]byte(f[off+24:]))
		v.proto, l4 = f[off+6], off+40
	default:
		return v
	}
	v.ok = true
	if len(f) >= l4+4 {
		v.sport, v.dport, v.ports = binary.BigEndian.Uint16(f[l4:]), binary.BigEndian.Uint16(f[l4+2:]), true
		t := f[l4]
		v.icmpError = (v.proto == packet.ProtoICMPv4 && (t == 3 || t == 11 || t == 12)) ||
			(v.proto == packet.ProtoICMPv6 && t >= 1 && t <= 4)
	}
	return v
}

// shortIP reports whether frame's EtherType (no VLAN look-through: the
// kernel's test runner does not either) is IPv4 or IPv6 with fewer bytes than
// that header after the Ethernet header.
func shortIP(frame []byte) bool {
	switch binary.BigEndian.Uint16(frame[12:]) {
	case packet.EtherTypeIPv4:
		return len(frame) < 14+20
	case packet.EtherTypeIPv6:
		return len(frame) < 14+40
	}
	return false
}

// classCounters are the counters of which XDP counts exactly one per frame.
func classCounters(delta Counters) []Counter {
	var got []Counter
	for i := range CounterFwdNew {
		if delta[i] != (CounterValue{}) {
			got = append(got, i)
		}
	}
	return got
}

// FuzzXDP feeds arbitrary frames through the XDP program with frontends
// configured: whatever the bytes, it never fails; a frame it changes or
// answers is for a frontend (or an ICMP error, which may be about a flow
// an earlier input created); a valid frame it rewrites stays valid; its
// answers are valid; and each frame is counted in exactly one class.
func FuzzXDP(f *testing.F) {
	testenv.RequirePrivileged(f)
	for _, tc := range xdpCases() {
		f.Add(tc.frame)
	}
	for _, s := range standardServices() {
		client := client4
		if s.key.Addr.Is6() {
			client = client6
		}
		f.Add(flowFrame(s.key.Proto, ap(client, 1234), ap(s.key.Addr, s.key.Port), false))
	}
	d, svcs := loadLB(f, Options{})
	// One frontend without backends, for the reject paths.
	noBackend := FrontendKey{Addr: vip4b, Port: 80, Proto: ProtoTCP}
	program(f, d, newService(9, vip4b, 80, ProtoTCP, netip.MustParseAddr("10.9.0.0"), 80, 1))
	if err := d.PutFrontend(noBackend, Frontend{ServiceID: 9}); err != nil {
		f.Fatal(err)
	}
	if err := d.PutFrontend(FrontendKey{Addr: vip4b, Port: 53, Proto: ProtoUDP}, Frontend{ServiceID: 9}); err != nil {
		f.Fatal(err)
	}
	f.Add(flowFrame(ProtoTCP, ap(client4, 1), ap(vip4b, 80), false))
	f.Add(flowFrame(ProtoUDP, ap(client4, 1), ap(vip4b, 53), false))
	isFrontend := func(v rawView) bool {
		if !v.ports {
			return false
		}
		for _, s := range svcs {
			if v.dst.Unmap() == s.key.Addr && v.dport == s.key.Port && v.proto == s.key.Proto {
				return true
			}
		}
		return v.dst == vip4b && ((v.dport == 80 && v.proto == ProtoTCP) || (v.dport == 53 && v.proto == ProtoUDP))
	}
	prog := d.XDPProgram()

	f.Fuzz(func(t *testing.T, frame []byte) {
		if len(frame) < packet.EthernetLen || len(frame) > maxLinearFrame {
			return // BPF_PROG_RUN takes 14 to 3520 bytes: nothing to check for this input
		}
		before := readCounters(t, d)
		ret, out := runXDP(t, prog, frame)
		delta := readCounters(t, d).Sub(before)

		v := viewFrame(frame)
		changed := ret != xdpPass || !bytes.Equal(out, frame)
		if changed && !isFrontend(v) && !v.icmpError {
			t.Fatalf("verdict %d, frame changed, but it is not for a frontend (%+v):\n got %x\nwant %x", ret, v, out, frame)
		}
		switch ret {
		case xdpPass:
			if changed && packet.Verify(frame) == nil {
				if err := packet.Verify(out); err != nil {
					t.Fatalf("a valid frame came out invalid: %v\n got %x\n was %x", err, out, frame)
				}
			}
		case xdpTX:
			if err := packet.Verify(out); err != nil {
				t.Fatalf("answer is invalid: %v\n%x", err, out)
			}
		case xdpDrop:
			if delta[CounterNoBackendDrop].Packets != 1 {
				t.Fatalf("dropped without counting no_backend_drop: %v", delta)
			}
		default:
			t.Fatalf("verdict %d", ret)
		}
		got := classCounters(delta)
		if len(got) != 1 || delta[got[0]] != (CounterValue{Packets: 1, Bytes: uint64(len(frame))}) {
			t.Fatalf("counted in classes %v (%v), want exactly one +1 packet +%d bytes", got, delta, len(frame))
		}
		// Differential check against the Go parser, which is at least as
		// strict: what the program calls malformed, it rejects too.
		if malformed(got[0]) && packet.Verify(frame) == nil {
			t.Fatalf("program counts %s, but packet.Verify accepts the frame", got[0])
		}
	})
}

// FuzzTCEgress feeds arbitrary frames through the TC egress program with
// flows in conntrack: it always continues (TCX_NEXT), changes only replies
// from backends and ICMP errors, keeps valid frames valid, and counts no
// class.
func FuzzTCEgress(f *testing.F) {
	testenv.RequirePrivileged(f)
	d, svcs := loadLB(f, Options{})
	backends := map[netip.Addr]bool{}
	for _, s := range svcs {
		client := client4
		if s.key.Addr.Is6() {
			client = client6
		}
		for _, a := range s.addrs {
			backends[a.Addr()] = true
		}
		src := ap(client, 1234)
		runXDP(f, d.XDPProgram(), flowFrame(s.key.Proto, src, ap(s.key.Addr, s.key.Port), false))
		be := s.addrs[s.pick(client, 1234)]
		f.Add(replyFrame(s.key.Proto, be, src, packet.SYN|packet.ACK))
		f.Add(icmpError(client.Is4(), be.Addr(), client, map[bool]uint8{true: 3, false: 2}[client.Is4()], 4, 1400, ipPacket(s.key.Proto, src, be, 10)))
	}
	for _, tc := range xdpCases() {
		f.Add(tc.frame)
	}
	prog := d.TCEgressProgram()

	f.Fuzz(func(t *testing.T, frame []byte) {
		if len(frame) < packet.EthernetLen || len(frame) > maxLinearFrame {
			return // BPF_PROG_RUN takes 14 to 3520 bytes: nothing to check for this input
		}
		before := readCounters(t, d)
		ret, out, err := runTCErr(prog, frame)
		if err != nil {
			if errors.Is(err, unix.EINVAL) && shortIP(frame) {
				return // the kernel's test runner refuses an skb shorter than its IP header: nothing ran
			}
			t.Fatalf("BPF_PROG_RUN (tc) on %d bytes: %v", len(frame), err)
		}
		delta := readCounters(t, d).Sub(before)
		if ret != tcxNext {
			t.Fatalf("verdict %#x, want TCX_NEXT", ret)
		}
		v := viewFrame(frame)
		if !bytes.Equal(out, frame) {
			if !(v.ok && backends[v.src.Unmap()]) && !v.icmpError {
				t.Fatalf("frame changed, but it is neither from a backend nor an ICMP error (%+v):\n got %x\nwant %x", v, out, frame)
			}
			if packet.Verify(frame) == nil {
				if err := packet.Verify(out); err != nil {
					t.Fatalf("a valid frame came out invalid: %v\n got %x\n was %x", err, out, frame)
				}
			}
		}
		if got := classCounters(delta); len(got) != 0 {
			t.Fatalf("TC egress counted classes %v", got)
		}
	})
}
