package bpf

import (
	"encoding/binary"
	"errors"
	"math/bits"
	"net/netip"
	"testing"
	"time"

	"github.com/cilium/ebpf"
)

const (
	xdpDrop = 1 // XDP_DROP
	xdpTX   = 3 // XDP_TX
	tcxNext = 0xffffffff
	tcxDrop = 2
)

// testSizes keeps the maps small: tests load the datapath many times.
var testSizes = MapSizes{Frontends: 1024, Backends: 1024, Maglev: 4096, Conntrack: 4096, Affinity: 1024}

// service is one frontend with its backends, as the tests program it.
type service struct {
	id       uint32
	key      FrontendKey
	backends []uint32 // ids
	addrs    []netip.AddrPort
	table    []uint32 // Maglev slots, written at base 64*id
}

func (s service) base() uint32 { return 64 * s.id }

var (
	vip4b   = netip.MustParseAddr("198.51.100.2")
	router4 = netip.MustParseAddr("203.0.113.1")
	router6 = netip.MustParseAddr("2001:db8:ffff::1")
)

// newService makes service id on vip:port/proto with n backends at
// base+1.., port bport, and a 7-slot table cycling through them.
func newService(id uint32, vip netip.Addr, port uint16, proto uint8, base netip.Addr, bport uint16, n int) service {
	s := service{id: id, key: FrontendKey{Addr: vip, Port: port, Proto: proto}}
	a := base
	for i := range n {
		a = a.Next()
		s.backends = append(s.backends, id*100+uint32(i)+1)
		s.addrs = append(s.addrs, netip.AddrPortFrom(a, bport))
	}
	for i := range 7 {
		s.table = append(s.table, s.backends[i%n])
	}
	return s
}

// standardServices: TCP and UDP over both families, three backends each.
func standardServices() []service {
	return []service{
		newService(1, vip4, 80, ProtoTCP, netip.MustParseAddr("10.1.0.0"), 8080, 3),
		newService(2, vip4, 53, ProtoUDP, netip.MustParseAddr("10.2.0.0"), 5353, 3),
		newService(3, vip6, 80, ProtoTCP, netip.MustParseAddr("fd00:3::"), 8080, 3),
		newService(4, vip6, 53, ProtoUDP, netip.MustParseAddr("fd00:4::"), 5353, 3),
	}
}

// program writes services into d.
func program(t testing.TB, d *Datapath, svcs ...service) {
	t.Helper()
	for _, s := range svcs {
		for i, id := range s.backends {
			if err := d.PutBackend(id, Backend{Addr: s.addrs[i].Addr(), Port: s.addrs[i].Port()}); err != nil {
				t.Fatal(err)
			}
		}
		if err := d.PutMaglev(s.base(), s.table); err != nil {
			t.Fatal(err)
		}
		if err := d.PutFrontend(s.key, Frontend{ServiceID: s.id, MaglevBase: s.base(), MaglevSize: uint32(len(s.table))}); err != nil {
			t.Fatal(err)
		}
	}
}

// loadLB loads the datapath with small maps and the standard services.
func loadLB(t testing.TB, opts Options) (*Datapath, []service) {
	t.Helper()
	if opts.Sizes == (MapSizes{}) {
		opts.Sizes = testSizes
	}
	d := mustLoad(t, opts)
	svcs := standardServices()
	program(t, d, svcs...)
	return d, svcs
}

// flowHash is lib/hash.h's flow_hash in Go (little-endian loads), so the
// tests know which slot the program must pick.
func flowHash(client netip.Addr, sport, dport uint16, proto uint8) uint32 {
	a16 := client.As16()
	k := func(i int) uint32 { return binary.LittleEndian.Uint32(a16[4*i:]) }
	rol := bits.RotateLeft32
	seed, init := uint32(0x5c1ce5ed), uint32(0xdeadbeef)
	a := init + 6<<2 + seed // wraps, as in C
	b, c := a, a
	a += k(0)
	b += k(1)
	c += k(2)
	a -= c
	a ^= rol(c, 4)
	c += b
	b -= a
	b ^= rol(a, 6)
	a += c
	c -= b
	c ^= rol(b, 8)
	b += a
	a -= c
	a ^= rol(c, 16)
	c += b
	b -= a
	b ^= rol(a, 19)
	a += c
	c -= b
	c ^= rol(b, 4)
	b += a
	a += k(3)
	b += uint32(htons(sport))<<16 | uint32(htons(dport))
	c += uint32(proto)
	c ^= b
	c -= rol(b, 14)
	a ^= c
	a -= rol(c, 11)
	b ^= a
	b -= rol(a, 25)
	c ^= b
	c -= rol(b, 16)
	a ^= c
	a -= rol(c, 4)
	b ^= a
	b -= rol(a, 14)
	c ^= b
	c -= rol(b, 24)
	return c
}

// pick is the backend (index into s.backends) Maglev picks for the flow.
func (s service) pick(client netip.Addr, sport uint16) int {
	id := s.table[flowHash(client, sport, s.key.Port, s.key.Proto)%uint32(len(s.table))]
	for i, b := range s.backends {
		if b == id {
			return i
		}
	}
	panic("table holds an unknown backend")
}

// runTC runs a TC program once on frame and returns the verdict and output.
func runTC(t testing.TB, prog *ebpf.Program, frame []byte) (uint32, []byte) {
	t.Helper()
	ret, out, err := runTCErr(prog, frame)
	if err != nil {
		t.Fatalf("BPF_PROG_RUN (tc) on %d bytes: %v", len(frame), err)
	}
	return ret, out
}

// runTCErr is runTC returning the error: BPF_PROG_RUN refuses (EINVAL) skb
// input whose EtherType is IPv4 / IPv6 but that is shorter than that header.
func runTCErr(prog *ebpf.Program, frame []byte) (uint32, []byte, error) {
	opts := ebpf.RunOptions{Data: frame, DataOut: make([]byte, len(frame)+256), Repeat: 1}
	ret, err := prog.Run(&opts)
	return ret, opts.DataOut, err
}

// deltas builds expected counter deltas: every counter listed moves by one
// packet of n bytes.
func deltas(n int, cs ...Counter) Counters {
	var d Counters
	for _, c := range cs {
		d[c].Packets++
		d[c].Bytes += uint64(n)
	}
	return d
}

// ctEntry reads a conntrack entry, failing the test if it is missing.
func ctEntry(t testing.TB, d *Datapath, k ConntrackKey) ConntrackEntry {
	t.Helper()
	e, err := d.LookupConntrack(k)
	if err != nil {
		t.Fatalf("conntrack entry %+v: %v", k, err)
	}
	return e
}

func ctMissing(t testing.TB, d *Datapath, k ConntrackKey) {
	t.Helper()
	if _, err := d.LookupConntrack(k); !errors.Is(err, ebpf.ErrKeyNotExist) {
		t.Fatalf("conntrack entry %+v: %v, want none", k, err)
	}
}

func ap(a netip.Addr, p uint16) netip.AddrPort { return netip.AddrPortFrom(a, p) }

// recent reports whether the monotonic timestamp ts is within the last minute.
func recent(ts time.Duration) bool {
	now := MonotonicNow()
	return ts <= now && now-ts < time.Minute
}
