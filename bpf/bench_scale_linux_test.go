package bpf

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"

	"github.com/sluice-lb/sluice/internal/testenv"
	"github.com/sluice-lb/sluice/test/packet"
)

// The scale benchmarks behind `make bench` (test/bench runs them and prints the table; see
// docs/benchmarks.md). Numbers only, never pass/fail on time: they fail only when a packet
// did not take the path it is meant to measure.

// benchServiceCounts are the numbers of Services (one frontend each) in the frontends map.
var benchServiceCounts = []int{1, 1000, 10000, 65536}

// benchSizes are the agent's default map sizes (cmd/sluice-agent), except the backends map,
// doubled to hold two backends for each of 64k Services.
var benchSizes = MapSizes{Frontends: 65536, Backends: 131072, Maglev: 1 << 22, Conntrack: 262144, Affinity: 65536}

// benchMaglevSize is lb.MaglevSize(2, 0): the table of a Service with two backends.
const benchMaglevSize = 251

type benchFamily struct {
	name         string
	client, vip  netip.Addr
	other        netip.Addr // first address of the other Services' frontends
	notOurs      netip.Addr // an address no frontend has
	backendsBase netip.Addr // the other Services' backends
}

var benchFamilies = []benchFamily{
	{name: "ipv4_tcp", client: client4, vip: vip4, other: netip.MustParseAddr("198.18.0.0"),
		notOurs: netip.MustParseAddr("203.0.113.99"), backendsBase: netip.MustParseAddr("10.128.0.0")},
	{name: "ipv6_tcp", client: client6, vip: vip6, other: netip.MustParseAddr("2001:db8:ff::"),
		notOurs: netip.MustParseAddr("2001:db8:dead::1"), backendsBase: netip.MustParseAddr("fd00:b::")},
}

// loadScale loads a datapath (not attached, not pinned) holding n Services: the measured one
// on fam.vip:80/TCP and n-1 others on other addresses, each with two backends of its own.
//
// BPF_PROG_RUN runs every repeat on the same buffer, so a rewritten packet would no longer be
// addressed to the frontend on the next repeat. The measured Service's two backends (IDs 1
// and 2) therefore both have the frontend's own address and port: the rewrite stores the
// same bytes, each repeat does the whole work (lookups, checksum arithmetic, stores), and
// each repeat still hits the frontend. Its table is a real 251-slot Maglev table alternating
// the two. The other Services point at one shared 251-slot range: their tables are never
// read by the measured packets, and 64k x 251 slots would not fit the default Maglev map.
func loadScale(b *testing.B, fam benchFamily, n int, clock *Clock) *Datapath {
	b.Helper()
	d, err := Load(Options{Sizes: benchSizes, Clock: clock})
	if err != nil {
		b.Fatalf("Load: %v", err)
	}
	table := make([]uint32, benchMaglevSize)
	for i := range table {
		table[i] = uint32(1 + i%2)
	}
	must := func(err error) {
		if err != nil {
			d.Close()
			b.Fatal(err)
		}
	}
	for id := uint32(1); id <= 2; id++ {
		must(d.PutBackend(id, Backend{Addr: fam.vip, Port: 80}))
	}
	must(d.PutMaglev(0, table))
	must(d.PutFrontend(FrontendKey{Addr: fam.vip, Port: 80, Proto: ProtoTCP}, Frontend{ServiceID: 1, MaglevBase: 0, MaglevSize: benchMaglevSize}))

	shared := make([]uint32, benchMaglevSize)
	for i := range shared {
		shared[i] = uint32(3 + i%2)
	}
	must(d.PutMaglev(benchMaglevSize, shared))
	fa, ba := fam.other, fam.backendsBase
	for i := 1; i < n; i++ {
		fa = fa.Next()
		for j := range uint32(2) {
			ba = ba.Next()
			must(d.PutBackend(uint32(2*i+1)+j, Backend{Addr: ba, Port: 8080}))
		}
		must(d.PutFrontend(FrontendKey{Addr: fa, Port: 80, Proto: ProtoTCP},
			Frontend{ServiceID: uint32(i + 1), MaglevBase: benchMaglevSize, MaglevSize: benchMaglevSize}))
	}
	return d
}

func loadEmptyXDP(b *testing.B) *ebpf.Program {
	b.Helper()
	p, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type:         ebpf.XDP,
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, xdpPass), asm.Return()},
		License:      "MIT",
	})
	if err != nil {
		b.Fatalf("load empty program: %v", err)
	}
	b.Cleanup(func() { p.Close() })
	return p
}

// stackWords stores the bytes of v (a map key or value type, native layout) on the
// stack at fp+off with word-sized immediate stores.
func stackWords(b *testing.B, v any, off int16) asm.Instructions {
	b.Helper()
	var buf bytes.Buffer
	if err := binary.Write(&buf, binary.NativeEndian, v); err != nil || buf.Len()%4 != 0 {
		b.Fatalf("stackWords(%T): %v", v, err)
	}
	var ins asm.Instructions
	for i := 0; i < buf.Len(); i += 4 {
		w := binary.NativeEndian.Uint32(buf.Bytes()[i:])
		ins = append(ins, asm.StoreImm(asm.RFP, off+int16(i), int64(int32(w)), asm.Word))
	}
	return ins
}

// loadFloorXDP loads the kernel work that the established path (lookups) or the
// new-flow path (writes too) cannot do without, on d's own maps and with the keys of the
// measured flow from client:sport: a frontends lookup and a conntrack lookup, and for
// writes the two conntrack writes (original and reply entry) of a new flow. Nothing
// else: no parsing, no rewrite, no clock, no counters. Against it the table reads how
// much of a packet's time is the program's own.
func loadFloorXDP(b *testing.B, d *Datapath, fam benchFamily, sport uint16, writes bool) *ebpf.Program {
	b.Helper()
	fk, err := FrontendKey{Addr: fam.vip, Port: 80, Proto: ProtoTCP}.raw()
	if err != nil {
		b.Fatal(err)
	}
	orig := ConntrackKey{Src: ap(fam.client, sport), Dst: ap(fam.vip, 80), Proto: ProtoTCP}
	reply := ConntrackKey{Src: ap(fam.vip, 80), Dst: orig.Src, Proto: ProtoTCP, Reply: true}
	entry := ConntrackEntry{LastSeen: MonotonicNow(), BackendID: 1, ServiceID: 1, NAT: ap(fam.vip, 80), State: StateEstablished}.raw()
	const fkOff, ctOff, rkOff, valOff = -24, -64, -104, -168
	ins := stackWords(b, fk, fkOff)
	ins = append(ins, stackWords(b, orig.raw(), ctOff)...)
	ins = append(ins, stackWords(b, reply.raw(), rkOff)...)
	ins = append(ins, stackWords(b, entry, valOff)...)
	call := func(m *ebpf.Map, fn asm.BuiltinFunc, keyOff int16) {
		ins = append(ins, asm.LoadMapPtr(asm.R1, m.FD()), asm.Mov.Reg(asm.R2, asm.RFP), asm.Add.Imm(asm.R2, int32(keyOff)))
		if fn == asm.FnMapUpdateElem {
			ins = append(ins, asm.Mov.Reg(asm.R3, asm.RFP), asm.Add.Imm(asm.R3, valOff), asm.Mov.Imm(asm.R4, 0))
		}
		ins = append(ins, fn.Call())
	}
	call(d.maps.Frontends, asm.FnMapLookupElem, fkOff)
	call(d.maps.Conntrack, asm.FnMapLookupElem, ctOff)
	if writes {
		call(d.maps.Conntrack, asm.FnMapUpdateElem, ctOff)
		call(d.maps.Conntrack, asm.FnMapUpdateElem, rkOff)
	}
	ins = append(ins, asm.Mov.Imm(asm.R0, xdpPass), asm.Return())
	p, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.XDP, Instructions: ins, License: "MIT"})
	if err != nil {
		b.Fatalf("load floor program: %v", err)
	}
	b.Cleanup(func() { p.Close() })
	return p
}

// benchFrame is a TCP segment with flags from client:sport to dst:80, 64 bytes of payload.
func benchFrame(client, dst netip.Addr, sport uint16, flags uint8) []byte {
	return packet.MustBuild(eth, ipLayer(client, dst),
		packet.TCP{SrcPort: sport, DstPort: 80, Seq: 1, Ack: 1, Flags: flags, Window: 100}, packet.Payload(make([]byte, 64)))
}

// BenchmarkXDPScale measures ns/packet of the XDP program with BPF_PROG_RUN and Repeat
// (b.N repeats in one syscall; ns/packet is the kernel's own per-repeat time) at 1, 1k, 10k
// and 64k Services, IPv4 and IPv6:
//
//   - established: an ACK of a flow conntrack knows (conntrack hit, touch, rewrite);
//   - new: SYN|FIN. The first repeat leaves the flow in FIN_WAIT and a SYN without ACK on a
//     finished flow is selected again, so every repeat takes the new-flow path (conntrack
//     lookup that hits, Maglev, backend lookup, two conntrack writes, rewrite). It also
//     counts ct_expired: three counter updates where a true miss makes two;
//     BenchmarkXDPFlows measures true misses;
//   - not_ours: TCP to an address without a frontend (parse, count, frontend miss);
//   - empty: a two-instruction XDP_PASS program on the same frame, the harness's floor;
//   - floor lookups / lookups_writes (1 Service): only the map operations the
//     established / new path cannot do without (loadFloorXDP);
//   - established_helper_clock (1 Service): established with the clock read through
//     bpf_ktime_get_coarse_ns instead of jiffies, what the jiffies clock saves.
func BenchmarkXDPScale(b *testing.B) {
	testenv.RequirePrivileged(b)
	empty := loadEmptyXDP(b)
	for _, fam := range benchFamilies {
		frame := benchFrame(fam.client, fam.vip, 40000, packet.ACK)
		b.Run(fmt.Sprintf("floor/%s/empty", fam.name), func(b *testing.B) {
			benchRun(b, empty, frame)
		})
	}
	for _, n := range benchServiceCounts {
		for _, fam := range benchFamilies {
			d := loadScale(b, fam, n, nil)
			if n == 1 {
				benchFloors(b, d, fam)
			}
			cases := []struct {
				kind  string
				frame []byte
				lb    bool    // the load balancer acts on it
				want  Counter // then counted once per repeat
			}{
				{"established", benchFrame(fam.client, fam.vip, 40000, packet.ACK), true, CounterFwdEstablished},
				{"new", benchFrame(fam.client, fam.vip, 40001, packet.SYN|packet.FIN), true, CounterFwdNew},
				{"not_ours", benchFrame(fam.client, fam.notOurs, 40002, packet.SYN), false, 0},
			}
			for _, c := range cases {
				b.Run(fmt.Sprintf("services=%d/%s/%s", n, fam.name, c.kind), func(b *testing.B) {
					// One run first: creates the flow, and shows the rewrite leaves the
					// frame as it was (so every repeat sees the same packet).
					if ret, out := runXDP(b, d.XDPProgram(), c.frame); ret != xdpPass || !bytes.Equal(out[:len(c.frame)], c.frame) {
						b.Fatalf("verdict %d, frame changed: the repeats would not all take the measured path", ret)
					}
					before := readCounters(b, d)
					benchRun(b, d.XDPProgram(), c.frame)
					delta := readCounters(b, d).Sub(before)
					lbPackets := delta[CounterFwdNew].Packets + delta[CounterFwdEstablished].Packets
					switch {
					case !c.lb && lbPackets != 0:
						b.Fatalf("not-ours packets were balanced: %+v", delta)
					case c.lb && (delta[c.want].Packets != uint64(b.N) || lbPackets != uint64(b.N)):
						b.Fatalf("%s counted %d of %d repeats (new+established %d): not the path meant", c.want, delta[c.want].Packets, b.N, lbPackets)
					}
				})
			}
			b.StopTimer()
			if err := d.Close(); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
	}
}

// benchFloors runs the floor programs and the helper-clock variant next to the 1-Service
// datapath d (see BenchmarkXDPScale).
func benchFloors(b *testing.B, d *Datapath, fam benchFamily) {
	est := benchFrame(fam.client, fam.vip, 40000, packet.ACK)
	runXDP(b, d.XDPProgram(), est) // the flow the lookups hit
	for _, f := range []struct {
		name   string
		writes bool
	}{{"lookups", false}, {"lookups_writes", true}} {
		prog := loadFloorXDP(b, d, fam, 40000, f.writes)
		b.Run(fmt.Sprintf("floor/%s/%s", fam.name, f.name), func(b *testing.B) {
			benchRun(b, prog, est)
		})
	}
	helper := loadScale(b, fam, 1, &Clock{})
	defer helper.Close()
	runXDP(b, helper.XDPProgram(), est)
	b.Run(fmt.Sprintf("services=1/%s/established_helper_clock", fam.name), func(b *testing.B) {
		before := readCounters(b, helper)
		benchRun(b, helper.XDPProgram(), est)
		if got := readCounters(b, helper).Sub(before)[CounterFwdEstablished].Packets; got != uint64(b.N) {
			b.Fatalf("established %d of %d repeats", got, b.N)
		}
	})
}

// benchRun runs prog b.N times on frame in one BPF_PROG_RUN and reports ns/packet.
func benchRun(b *testing.B, prog *ebpf.Program, frame []byte) {
	b.Helper()
	b.ResetTimer()
	ret, perRun, err := prog.Benchmark(frame, b.N, nil)
	b.StopTimer()
	if err != nil {
		b.Fatalf("BPF_PROG_RUN: %v", err)
	}
	if ret != xdpPass {
		b.Fatalf("verdict %d, want XDP_PASS", ret)
	}
	b.ReportMetric(float64(perRun.Nanoseconds()), "ns/packet")
}

// BenchmarkXDPFlows measures packets of b.N different flows (client addresses), one
// BPF_PROG_RUN each with Repeat 1, at 1 and 64k Services: the median of the kernel's
// per-run times. With Repeat 1 that time includes the harness's clock reads, so "empty"
// (the two-instruction program, same way) is the floor to subtract.
//
//   - new_miss: the first packet of each flow, a true conntrack miss (Maglev, two
//     conntrack writes), which Repeat cannot measure (the second repeat is established);
//   - established: the same flows again, each a conntrack hit on a different key.
func BenchmarkXDPFlows(b *testing.B) {
	testenv.RequirePrivileged(b)
	empty := loadEmptyXDP(b)
	for _, n := range []int{1, 65536} {
		for _, fam := range benchFamilies {
			d := loadScale(b, fam, n, nil)
			// fresh returns count frames with flags, each from a client address never used
			// before on this datapath (b.N grows between calls of one sub-benchmark).
			next := fam.client
			if fam.client.Is4() {
				next = netip.MustParseAddr("100.64.0.0")
			}
			fresh := func(count int, flags uint8) [][]byte {
				out := make([][]byte, count)
				for i := range out {
					next = next.Next()
					out[i] = benchFrame(next, fam.vip, 40000, flags)
				}
				return out
			}
			runAll := func(b *testing.B, prog *ebpf.Program, frames [][]byte) []float64 {
				times := make([]float64, 0, len(frames))
				for _, f := range frames {
					ret, perRun, err := prog.Benchmark(f, 1, nil)
					if err != nil || ret != xdpPass {
						b.Fatalf("BPF_PROG_RUN: verdict %d, %v", ret, err)
					}
					times = append(times, float64(perRun.Nanoseconds()))
				}
				return times
			}
			reportMedian := func(b *testing.B, times []float64) {
				slices.Sort(times)
				b.ReportMetric(times[len(times)/2], "ns/packet")
			}
			b.Run(fmt.Sprintf("services=%d/%s/empty", n, fam.name), func(b *testing.B) {
				fs := fresh(b.N, packet.ACK)
				b.ResetTimer()
				reportMedian(b, runAll(b, empty, fs))
			})
			b.Run(fmt.Sprintf("services=%d/%s/new_miss", n, fam.name), func(b *testing.B) {
				fs := fresh(b.N, packet.SYN)
				before := readCounters(b, d)
				b.ResetTimer()
				times := runAll(b, d.XDPProgram(), fs)
				b.StopTimer()
				delta := readCounters(b, d).Sub(before)
				if delta[CounterFwdNew].Packets != uint64(b.N) || delta[CounterCTExpired].Packets != 0 {
					b.Fatalf("new %d, ct_expired %d of %d packets: not all misses", delta[CounterFwdNew].Packets, delta[CounterCTExpired].Packets, b.N)
				}
				reportMedian(b, times)
				// Established on the same flows, now known to conntrack.
				before = readCounters(b, d)
				times = runAll(b, d.XDPProgram(), fs)
				if got := readCounters(b, d).Sub(before)[CounterFwdEstablished].Packets; got != uint64(b.N) {
					b.Fatalf("established %d of %d", got, b.N)
				}
				slices.Sort(times)
				b.ReportMetric(times[len(times)/2], "est-ns/packet")
			})
			if err := d.Close(); err != nil {
				b.Fatal(err)
			}
		}
	}
}
