package lb_test

import (
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/sluice-lb/sluice/bpf"
	"github.com/sluice-lb/sluice/internal/testenv"
	"github.com/sluice-lb/sluice/lb"
)

// The control-side benchmarks behind `make bench` (test/bench runs them and prints the
// table; see docs/benchmarks.md): programming Services through the real Syncer and BPFTable
// into freshly loaded maps, and the maps' kernel memory. Numbers only, never pass/fail on
// time.

// benchServices is the number of Services programmed, two backends each.
const benchServices = 10000

// benchSizes are the agent's default map sizes (cmd/sluice-agent flags): the Maglev map
// (4M slots) holds 10k x lb.MaglevSize(2, 0) = 10k x 251 slots with room to spare.
var benchSizes = bpf.MapSizes{Frontends: 65536, Backends: 65536, Maglev: 1 << 22, Conntrack: 262144, Affinity: 65536}

// benchModel returns n Services, each with one TCP frontend (198.18.0.0/15) and two backends
// of its own (10.128.0.0/9, port 8080).
func benchModel(n int) []lb.Service {
	svcs := make([]lb.Service, n)
	fa, ba := netip.MustParseAddr("198.18.0.0"), netip.MustParseAddr("10.128.0.0")
	for i := range svcs {
		fa = fa.Next()
		s := lb.Service{Key: lb.ServiceKey{Namespace: "bench", Name: fmt.Sprintf("svc-%05d", i), Family: lb.IPv4},
			Frontends: []lb.Frontend{{Addr: fa, Port: 80, Protocol: lb.TCP}}}
		for range 2 {
			ba = ba.Next()
			s.Backends = append(s.Backends, lb.Backend{Addr: ba, Port: 8080, Weight: lb.DefaultWeight})
		}
		svcs[i] = s
	}
	return svcs
}

func loadBench(b *testing.B) *bpf.Datapath {
	b.Helper()
	d, err := bpf.Load(bpf.Options{Sizes: benchSizes})
	if err != nil {
		b.Fatalf("Load: %v", err)
	}
	return d
}

// coldProgram is what the agent does on its first apply: NewSyncer reads the (empty) maps
// back, Set writes every Service.
func coldProgram(b *testing.B, d *bpf.Datapath, svcs []lb.Service) *lb.Syncer {
	b.Helper()
	s, err := lb.NewSyncer(lb.BPFTable{DP: d}, lb.SyncerOptions{MaxBackends: benchSizes.Backends})
	if err != nil {
		b.Fatal(err)
	}
	st, err := s.Set(svcs)
	if err != nil {
		b.Fatal(err)
	}
	if st.FrontendsUpdated != len(svcs) || st.BackendsUpdated != 2*len(svcs) || st.SlotsWritten != 251*len(svcs) {
		b.Fatalf("programmed %+v, want %d frontends, %d backends, %d slots", st, len(svcs), 2*len(svcs), 251*len(svcs))
	}
	return s
}

// BenchmarkSyncCold measures programming 10k Services x 2 backends from a cold start: a
// freshly loaded datapath (not timed: bpf.Load, reported as load-ms), then NewSyncer + Set
// through lb.BPFTable (timed). One op is one cold start.
func BenchmarkSyncCold(b *testing.B) {
	testenv.RequirePrivileged(b)
	svcs := benchModel(benchServices)
	var load time.Duration
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		start := time.Now()
		d := loadBench(b)
		load += time.Since(start)
		b.StartTimer()
		coldProgram(b, d, svcs)
		b.StopTimer()
		if err := d.Close(); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(load.Milliseconds())/float64(b.N), "load-ms")
}

// BenchmarkSyncChange measures single-change latency with 10k Services programmed: each op
// is one Set (the complete desired list, as the agent calls it) in which one Service gained
// or lost one backend, from the call to its return. Reports the p50 and p99 of the ops.
//
//   - inplace: the second backend removed, then added back (2 <-> 1 backends: the table size
//     stays 251, so the table is rewritten in place and one backend written or deleted);
//   - resize: a third backend added, then removed (2 <-> 3 backends: 251 <-> 509 slots, so a
//     new range is written and the frontend repointed).
func BenchmarkSyncChange(b *testing.B) {
	testenv.RequirePrivileged(b)
	for _, kind := range []string{"inplace", "resize"} {
		b.Run("change="+kind, func(b *testing.B) {
			d := loadBench(b)
			defer d.Close()
			orig, svcs := benchModel(benchServices), benchModel(benchServices)
			s := coldProgram(b, d, svcs)
			extra := netip.MustParseAddr("10.200.0.0")
			times := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for i := range b.N {
				b.StopTimer()
				j := (i / 2 * 7919) % len(svcs) // a different Service every pair of changes
				sv := &svcs[j]
				switch {
				case kind == "inplace" && i%2 == 0:
					sv.Backends = sv.Backends[:1]
				case kind == "inplace":
					sv.Backends = append(sv.Backends, orig[j].Backends[1])
				case i%2 == 0:
					extra = extra.Next()
					sv.Backends = append(slices.Clone(sv.Backends), lb.Backend{Addr: extra, Port: 8080, Weight: lb.DefaultWeight})
				default:
					sv.Backends = sv.Backends[:2]
				}
				b.StartTimer()
				start := time.Now()
				st, err := s.Set(svcs)
				times = append(times, time.Since(start))
				if err != nil {
					b.Fatal(err)
				}
				if st.Writes() == 0 {
					b.Fatalf("change %d wrote nothing", i)
				}
			}
			b.StopTimer()
			slices.Sort(times)
			b.ReportMetric(float64(times[len(times)/2].Microseconds()), "p50-us")
			b.ReportMetric(float64(times[min(len(times)-1, len(times)*99/100)].Microseconds()), "p99-us")
		})
	}
}

// BenchmarkMapMemory reports the maps' kernel memory as the kernel accounts it: the memlock
// line of /proc/<pid>/fdinfo/<map fd> (bpf_map_memory_usage(), what bpftool shows as
// memlock), read through cilium/ebpf's MapInfo for every map the XDP program uses, at the
// agent's default sizes. The preallocated maps (arrays, LRU hashes) cost the same empty and
// full; the frontends and backends hashes (BPF_F_NO_PREALLOC) grow per entry, so they are
// read empty and with 10k Services x 2 backends programmed, and the difference divided.
//
// Metrics: <map>-B (memlock at the configured size, with the 10k Services programmed),
// <map>-B/entry (preallocated: memlock / max_entries; frontends, backends: the growth per
// entry), <map>-max (max_entries).
func BenchmarkMapMemory(b *testing.B) {
	testenv.RequirePrivileged(b)
	d := loadBench(b)
	defer d.Close()
	empty := mapMemory(b, d)
	coldProgram(b, d, benchModel(benchServices))
	full := mapMemory(b, d)
	b.ResetTimer()
	for range b.N {
		mapMemory(b, d)
	}
	b.StopTimer()
	perEntry := map[string]float64{"frontends": benchServices, "backends": 2 * benchServices}
	for name, m := range full {
		b.ReportMetric(float64(m.memlock), name+"-B")
		b.ReportMetric(float64(m.max), name+"-max")
		if n, ok := perEntry[name]; ok {
			b.ReportMetric(float64(m.memlock-empty[name].memlock)/n, name+"-B/entry")
		} else if m.max > 0 {
			b.ReportMetric(float64(m.memlock)/float64(m.max), name+"-B/entry")
		}
	}
}

type mapMem struct {
	memlock uint64
	max     uint32
}

// mapMemory reads the memlock of each map the XDP program uses, by map name.
func mapMemory(b *testing.B, d *bpf.Datapath) map[string]mapMem {
	b.Helper()
	info, err := d.XDPProgram().Info()
	if err != nil {
		b.Fatal(err)
	}
	ids, ok := info.MapIDs()
	if !ok {
		b.Fatal("the kernel does not list the program's maps")
	}
	out := map[string]mapMem{}
	for _, id := range ids {
		m, err := ebpf.NewMapFromID(id)
		if err != nil {
			b.Fatal(err)
		}
		mi, err := m.Info()
		m.Close()
		if err != nil {
			b.Fatal(err)
		}
		memlock, ok := mi.Memlock()
		if !ok {
			// The LPM trie of source ranges, empty here, says nothing on some kernels.
			b.Logf("map %s: no memlock in fdinfo: left out", mi.Name)
			continue
		}
		name := mi.Name
		if name == "" {
			name = fmt.Sprintf("map%d", id)
		}
		out[name] = mapMem{memlock: memlock, max: mi.MaxEntries}
	}
	return out
}
