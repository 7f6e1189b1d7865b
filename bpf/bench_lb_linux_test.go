package bpf

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/sluice-lb/sluice/internal/testenv"
	"github.com/sluice-lb/sluice/test/packet"
)

// BenchmarkXDPLB measures the XDP forward path per packet (BPF_PROG_RUN
// with Repeat) for an established flow and a new flow, with 1 and 10k
// frontends. Numbers only.
//
// BPF_PROG_RUN runs all repeats on the same buffer, so a rewritten packet
// would stop being for a frontend after the first run. The benchmarked
// frontend therefore has itself as its only backend: the rewrite writes the
// same bytes, and every run does the whole work (lookups, checksum
// arithmetic, stores). "new" sends SYN|FIN: the first run leaves the flow in
// FIN_WAIT, and a SYN on a finished flow is selected again, so every run
// takes the new-flow path (one conntrack lookup that hits, Maglev, two
// conntrack writes) — a pure miss costs a little less.
func BenchmarkXDPLB(b *testing.B) {
	testenv.RequirePrivileged(b)
	for _, n := range []int{1, 10000} {
		d := mustLoad(b, Options{Sizes: MapSizes{Frontends: 16384, Backends: 16384, Maglev: 16384, Conntrack: 65536, Affinity: 1024}})
		// n-1 other frontends, on other addresses.
		base := netip.MustParseAddr("198.18.0.0")
		for i := 1; i < n; i++ {
			base = base.Next()
			if err := d.PutFrontend(FrontendKey{Addr: base, Port: 80, Proto: ProtoTCP}, Frontend{ServiceID: uint32(100 + i), MaglevBase: 0, MaglevSize: 1}); err != nil {
				b.Fatal(err)
			}
		}
		for _, fam := range []struct {
			name           string
			client, vip    netip.Addr
			serviceID, bID uint32
		}{
			{"ipv4_tcp", client4, vip4, 1, 1},
			{"ipv6_tcp", client6, vip6, 2, 2},
		} {
			if err := d.PutBackend(fam.bID, Backend{Addr: fam.vip, Port: 80}); err != nil {
				b.Fatal(err)
			}
			if err := d.PutMaglev(64*fam.serviceID, []uint32{fam.bID}); err != nil {
				b.Fatal(err)
			}
			if err := d.PutFrontend(FrontendKey{Addr: fam.vip, Port: 80, Proto: ProtoTCP}, Frontend{ServiceID: fam.serviceID, MaglevBase: 64 * fam.serviceID, MaglevSize: 1}); err != nil {
				b.Fatal(err)
			}
			for _, kind := range []struct {
				name  string
				flags uint8
			}{{"established", packet.ACK}, {"new", packet.SYN | packet.FIN}} {
				frame := packet.MustBuild(eth, ipLayer(fam.client, fam.vip),
					packet.TCP{SrcPort: 40000, DstPort: 80, Seq: 1, Ack: 1, Flags: kind.flags, Window: 100}, packet.Payload(make([]byte, 64)))
				want := CounterFwdEstablished
				if kind.name == "new" {
					want = CounterFwdNew
				}
				b.Run(fmt.Sprintf("frontends=%d/%s/%s", n, fam.name, kind.name), func(b *testing.B) {
					runXDP(b, d.XDPProgram(), frame) // create the flow
					before := readCounters(b, d)
					b.ResetTimer()
					ret, perRun, err := d.XDPProgram().Benchmark(frame, b.N, nil)
					if err != nil {
						b.Fatalf("BPF_PROG_RUN: %v", err)
					}
					if ret != xdpPass {
						b.Fatalf("verdict %d", ret)
					}
					if got := readCounters(b, d).Sub(before)[want].Packets; got < uint64(b.N) {
						b.Fatalf("%s counted %d of %d runs: not the path meant", want, got, b.N)
					}
					b.ReportMetric(float64(perRun.Nanoseconds()), "ns/packet")
				})
			}
		}
	}
}
