// Command bench runs Sluice's benchmarks and prints one table of the numbers, with ratios to
// the targets of the datapath issue (`make bench`; docs/benchmarks.md explains them).
//
// It builds the bpf and lb test binaries into a temporary directory, runs their benchmarks
// (`-test.bench`, privileged: PRIVILEGED_TESTS=1, as root) in several rounds, each round
// running every benchmark once so that the rounds interleave, and reports the median of the
// rounds with their range. Numbers, never pass/fail. It writes nothing, unless -write names
// a Markdown file whose generated section (between the bench:begin and bench:end markers) is
// then replaced.
package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
)

func main() {
	var (
		rounds  = flag.Int("rounds", 5, "rounds; every benchmark runs once per round, results are the median of the rounds")
		repeat  = flag.Int("repeat", 300000, "BPF_PROG_RUN repeats per ns/packet measurement")
		flows   = flag.Int("flows", 20000, "distinct flows per Repeat=1 measurement")
		changes = flag.Int("changes", 200, "single changes per kind per round (p50/p99 over these)")
		write   = flag.String("write", "", "replace the generated section of this Markdown file (docs/benchmarks.md)")
	)
	flag.Parse()
	if err := run(*rounds, *repeat, *flows, *changes, *write); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// job is one benchmark invocation of a test binary.
type job struct {
	pkg, bench, benchtime string
	once                  bool // in the first round only (minutes long)
}

func run(rounds, repeat, flows, changes int, write string) error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("the benchmarks load BPF programs: run as root (make bench)")
	}
	root, err := moduleRoot()
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "sluice-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		return fmt.Errorf("the IPAM benchmark runs a real kube-apiserver: set KUBEBUILDER_ASSETS (make bench does: hack/kube-binaries.sh)")
	}
	binary := func(pkg string) string { return filepath.Join(tmp, strings.ReplaceAll(pkg, "/", "_")+".test") }
	for _, pkg := range []string{"bpf", "lb", "ipam", "internal/agent", "test/e2e"} {
		fmt.Fprintf(os.Stderr, "bench: building the %s test binary\n", pkg)
		cmd := exec.Command("go", "test", "-c", "-o", binary(pkg), "./"+pkg)
		cmd.Dir, cmd.Stdout, cmd.Stderr = root, os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("go test -c ./%s: %w", pkg, err)
		}
	}
	jobs := []job{
		{"bpf", "^BenchmarkXDPScale$", fmt.Sprintf("%dx", repeat), false},
		{"bpf", "^BenchmarkXDPFlows$", fmt.Sprintf("%dx", flows), false},
		{"lb", "^BenchmarkSyncCold$", "1x", false},
		{"lb", "^BenchmarkSyncChange$", fmt.Sprintf("%dx", changes), false},
		{"lb", "^BenchmarkMapMemory$", "1x", false},
		{"ipam", "^BenchmarkController$", "1x", true},
		{"internal/agent", "^BenchmarkRebuildOneMore$", "20x", false},
		{"test/e2e", "^BenchmarkBGP$", "1x", true},
		{"test/e2e", "^BenchmarkL2Failover$", "1x", true},
		{"test/e2e", "^BenchmarkKubeProxy$", "1x", true},
	}
	res := results{}
	start := time.Now()
	for r := 1; r <= rounds; r++ {
		for _, j := range jobs {
			if j.once && r > 1 {
				continue
			}
			fmt.Fprintf(os.Stderr, "bench: round %d/%d: %s %s (%s)\n", r, rounds, j.pkg, strings.Trim(j.bench, "^$"), time.Since(start).Round(time.Second))
			cmd := exec.Command(binary(j.pkg), "-test.run", "^$", "-test.bench", j.bench,
				"-test.benchtime", j.benchtime, "-test.count", "1", "-test.timeout", "90m") // the kube-proxy comparison up to 10k Services takes a while
			cmd.Dir = filepath.Join(root, j.pkg)
			cmd.Env = append(os.Environ(), "PRIVILEGED_TESTS=1")
			out, err := cmd.CombinedOutput()
			if err != nil || bytes.Contains(out, []byte("--- SKIP")) || bytes.Contains(out, []byte("--- FAIL")) {
				os.Stderr.Write(out)
				return fmt.Errorf("%s %s: %v", j.pkg, j.bench, err)
			}
			if n := res.parse(out); n == 0 {
				os.Stderr.Write(out)
				return fmt.Errorf("%s %s: no benchmark results", j.pkg, j.bench)
			}
		}
	}
	report := render(res, rounds, repeat, flows, changes)
	fmt.Print(report)
	if write != "" {
		if err := replaceSection(write, report); err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "bench: wrote %s\n", write)
	}
	return nil
}

func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", fmt.Errorf("not inside the module: run from the repository")
	}
	return filepath.Dir(mod), nil
}

// results are the values of each benchmark's metrics, one per round: name -> unit -> values.
type results map[string]map[string][]float64

var benchLine = regexp.MustCompile(`^(Benchmark\S+?)(?:-\d+)?\s+\d+\s+(.*)$`)

// parse adds the benchmark lines of a test binary's output and returns how many it read.
func (r results) parse(out []byte) int {
	n := 0
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		m := benchLine.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		f := strings.Fields(m[2])
		for i := 0; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				continue
			}
			if r[m[1]] == nil {
				r[m[1]] = map[string][]float64{}
			}
			r[m[1]][f[i+1]] = append(r[m[1]][f[i+1]], v)
		}
		n++
	}
	return n
}

// stat is the median of a metric over the rounds and its range.
type stat struct {
	med, min, max float64
	ok            bool
}

func (r results) get(name, unit string) stat {
	v := slices.Clone(r[name][unit])
	if len(v) == 0 {
		return stat{}
	}
	slices.Sort(v)
	med := v[len(v)/2]
	if len(v)%2 == 0 {
		med = (v[len(v)/2-1] + v[len(v)/2]) / 2
	}
	return stat{med: med, min: v[0], max: v[len(v)-1], ok: true}
}

// scaled is s in another unit: every value times f.
func (s stat) scaled(f float64) stat {
	return stat{med: s.med * f, min: s.min * f, max: s.max * f, ok: s.ok}
}

// cell formats a stat as "median (min–max)" with the given precision.
func (s stat) cell(prec int) string {
	if !s.ok {
		return "n/a"
	}
	f := func(v float64) string { return strconv.FormatFloat(v, 'f', prec, 64) }
	if s.min == s.max {
		return f(s.med)
	}
	return fmt.Sprintf("%s (%s–%s)", f(s.med), f(s.min), f(s.max))
}

// table renders a Markdown table.
func table(b *strings.Builder, head []string, rows [][]string) {
	b.WriteString("| " + strings.Join(head, " | ") + " |\n|")
	for range head {
		b.WriteString(" --- |")
	}
	b.WriteString("\n")
	for _, r := range rows {
		b.WriteString("| " + strings.Join(r, " | ") + " |\n")
	}
	b.WriteString("\n")
}

var (
	scales     = []int{1, 1000, 10000, 65536}
	scaleNames = map[int]string{1: "1", 1000: "1k", 10000: "10k", 65536: "64k"}
)

func render(r results, rounds, repeat, flows, changes int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Generated by `make bench` (test/bench) on %s: kernel %s, %d CPUs (%s), %s; %d rounds, median (min–max) of the rounds.\n\n",
		time.Now().UTC().Format("2006-01-02"), kernel(), runtime.NumCPU(), cpuModel(), runtime.Version(), rounds)

	// 1. ns/packet with Repeat.
	fmt.Fprintf(&b, "**XDP ns/packet, BPF_PROG_RUN with Repeat %d** (BenchmarkXDPScale), by Services in the maps:\n\n", repeat)
	head := []string{"packet"}
	for _, n := range scales {
		head = append(head, scaleNames[n])
	}
	head = append(head, "target", "worst / target", "flatness vs 1 Service (target ±10 %)")
	var rows [][]string
	for _, fam := range []string{"ipv4_tcp", "ipv6_tcp"} {
		for _, kind := range []struct {
			name, label string
			target      float64
		}{{"established", "established", 60}, {"new", "new (SYN on a finished flow)", 120}, {"not_ours", "not ours (no frontend)", 0}} {
			row := []string{strings.ReplaceAll(fam, "_", " ") + " " + kind.label}
			var meds []float64
			for _, n := range scales {
				s := r.get(fmt.Sprintf("BenchmarkXDPScale/services=%d/%s/%s", n, fam, kind.name), "ns/packet")
				row = append(row, s.cell(0))
				if s.ok {
					meds = append(meds, s.med)
				}
			}
			target, ratio := "—", "—"
			if kind.target > 0 && len(meds) > 0 {
				target = fmt.Sprintf("≤ %.0f", kind.target)
				ratio = fmt.Sprintf("%.1f×", slices.Max(meds)/kind.target)
			}
			row = append(row, target, ratio, flatness(meds))
			rows = append(rows, row)
		}
	}
	for _, fam := range []string{"ipv4_tcp", "ipv6_tcp"} {
		for _, f := range []struct{ name, label string }{
			{"services=1/" + fam + "/established_helper_clock", "established, clock read with the kernel helper (not jiffies)"},
			{"floor/" + fam + "/empty", "empty XDP program (harness floor)"},
			{"floor/" + fam + "/lookups", "map work alone: frontend + conntrack lookups (floor of established)"},
			{"floor/" + fam + "/lookups_writes", "map work alone: the lookups + 2 conntrack writes (floor of new)"},
		} {
			s := r.get("BenchmarkXDPScale/"+f.name, "ns/packet")
			rows = append(rows, []string{strings.ReplaceAll(fam, "_", " ") + " " + f.label, s.cell(0), "", "", "", "—", "—", "—"})
		}
	}
	table(&b, head, rows)
	b.WriteString(overFloor(r))

	// 2. Repeat 1, distinct flows.
	fmt.Fprintf(&b, "**XDP ns/packet, one BPF_PROG_RUN per packet (Repeat 1) over %d distinct flows** (BenchmarkXDPFlows): median of the packets; includes the harness's clock reads, see the empty row:\n\n", flows)
	head = []string{"packet", "IPv4, 1 Service", "IPv4, 64k", "IPv6, 1 Service", "IPv6, 64k"}
	rows = nil
	for _, c := range []struct{ label, kind, unit string }{
		{"new, true conntrack miss", "new_miss", "ns/packet"},
		{"established, a different flow each packet", "new_miss", "est-ns/packet"},
		{"empty XDP program (harness floor)", "empty", "ns/packet"},
	} {
		row := []string{c.label}
		for _, fam := range []string{"ipv4_tcp", "ipv6_tcp"} {
			for _, n := range []int{1, 65536} {
				row = append(row, r.get(fmt.Sprintf("BenchmarkXDPFlows/services=%d/%s/%s", n, fam, c.kind), c.unit).cell(0))
			}
		}
		rows = append(rows, row)
	}
	table(&b, head, rows)

	// 3. Programming.
	b.WriteString("**Programming through lb.Syncer + lb.BPFTable** (BenchmarkSyncCold, BenchmarkSyncChange), 10k Services × 2 backends:\n\n")
	cold := r.get("BenchmarkSyncCold", "ns/op")
	cold = cold.scaled(1e-9)
	ratio := "n/a"
	if cold.ok {
		ratio = fmt.Sprintf("%.1f×", cold.med/0.5)
	}
	rows = [][]string{
		{"cold start: NewSyncer + Set of 10k Services into fresh maps", cold.cell(2) + " s", "≤ 0.5 s", ratio},
		{"(bpf.Load of the maps before it, not included)", r.get("BenchmarkSyncCold", "load-ms").cell(0) + " ms", "—", "—"},
	}
	for _, k := range []struct{ name, label string }{
		{"inplace", "remove / re-add a service's 2nd backend (table rewritten in place)"},
		{"resize", "add / remove a 3rd backend (251 ↔ 509 slots: new range, frontend repointed)"},
	} {
		name := "BenchmarkSyncChange/change=" + k.name
		for _, p := range []string{"p50", "p99"} {
			s := r.get(name, p+"-us")
			s = s.scaled(1e-3)
			rows = append(rows, []string{fmt.Sprintf("single change %s over %d changes: %s", p, changes, k.label), s.cell(1) + " ms", "—", "—"})
		}
	}
	table(&b, []string{"what", "time", "target", "ratio"}, rows)

	// 4. Memory.
	b.WriteString("**Kernel memory** (BenchmarkMapMemory): memlock from fdinfo at the agent's default sizes, with 10k Services × 2 backends programmed:\n\n")
	rows = nil
	var total float64
	for _, m := range []struct{ name, per string }{
		{"frontends", "per entry added (hash, no prealloc)"},
		{"backends", "per entry added (hash, no prealloc)"},
		{"maglev", "per slot (array, preallocated)"},
		{"conntrack", "per entry (LRU hash, preallocated)"},
		{"affinity", "per entry (LRU hash, preallocated)"},
		{"counters", "per counter (per-CPU array)"},
		{"events", "ring buffer"},
	} {
		mem := r.get("BenchmarkMapMemory", m.name+"-B")
		total += mem.med
		per := r.get("BenchmarkMapMemory", m.name+"-B/entry")
		perCell := per.cell(0) + " B " + m.per
		if m.name == "events" {
			perCell = m.per
		}
		rows = append(rows, []string{m.name, r.get("BenchmarkMapMemory", m.name+"-max").cell(0), mib(mem.med), perCell})
	}
	rows = append(rows, []string{"**total**", "", "**" + mib(total) + "**", ""})
	table(&b, []string{"map", "max_entries", "memlock", "cost"}, rows)

	fe := r.get("BenchmarkMapMemory", "frontends-B/entry").med
	be := r.get("BenchmarkMapMemory", "backends-B/entry").med
	slot := r.get("BenchmarkMapMemory", "maglev-B/entry").med
	ct := r.get("BenchmarkMapMemory", "conntrack-B/entry").med
	rows = [][]string{
		{"per Service (1 frontend, 2 backends: 251 Maglev slots)", fmt.Sprintf("%.0f B = %.0f B frontend entry + 251 × %.0f B slots", fe+251*slot, fe, slot)},
		{"per backend", fmt.Sprintf("%.0f B backends entry, plus ~100–200 Maglev slots (%.0f–%.0f B) as its Service's table grows", be, 100*slot, 200*slot)},
		{"per flow (2 conntrack entries, reserved up front)", fmt.Sprintf("%.0f B", 2*ct)},
	}
	table(&b, []string{"unit", "kernel memory"}, rows)

	// 5. BGP.
	fmt.Fprintf(&b, "**BGP: a real sluice-agent and FRR in network namespaces** (BenchmarkBGP, one run): %s prefixes from the session's establishment until FRR has accepted them all, against FRR announcing as many to FRR in the same run; then one more Service at that steady state:\n\n", "10k")
	agent := r.get("BenchmarkBGP", "agent-s/10k")
	frr := r.get("BenchmarkBGP", "frr-s/10k")
	ratio = "n/a"
	if agent.ok && frr.ok && frr.med > 0 {
		ratio = fmt.Sprintf("%.2f×", agent.med/frr.med)
	}
	table(&b, []string{"what", "value", "target"}, [][]string{
		{"sluice-agent → FRR, 10k prefixes", agent.cell(2) + " s", "≤ 1 s"},
		{"FRR → FRR, 10k prefixes (same run)", frr.cell(2) + " s", "—"},
		{"agent / FRR", ratio, "≤ 2×"},
		{"one more Service at 10k, from the config file's rename until FRR has it (standalone: file reload, model, allocation, UPDATE), 100 adds: median", r.get("BenchmarkBGP", "add-p50-ms").cell(0) + " ms", "—"},
		{"the same, p99", r.get("BenchmarkBGP", "add-p99-ms").cell(0) + " ms", "≤ 50 ms"},
		{"the same, slowest", r.get("BenchmarkBGP", "add-max-ms").cell(0) + " ms", "—"},
		{"of which the agent's rebuild at 10k (model, allocation and its state file, BGP desired set and diff; BenchmarkRebuildOneMore, in process)", r.get("BenchmarkRebuildOneMore", "ns/op").scaled(1e-6).cell(0) + " ms", "—"},
		{"agent resident memory with 10k Services announced", r.get("BenchmarkBGP", "agent-rss-MiB").cell(0) + " MiB", "—"},
	})

	// 6. L2 failover.
	fmt.Fprintf(&b, "**L2 failover: two real agents and a client on a LAN in network namespaces** (BenchmarkL2Failover, one run of 10 failovers each): the client opens a connection to the Service address every 10 ms; the longest time between two answered requests while the owner fails:\n\n")
	rows = nil
	for _, k := range []struct{ name, label string }{
		{"linkdown", "the owner's link goes down"},
		{"sigkill", "the owner's agent is killed (SIGKILL; its node's pinned datapath keeps serving)"},
		{"sigstop", "the owner's agent is frozen (SIGSTOP, then SIGCONT)"},
	} {
		rows = append(rows, []string{k.label, r.get("BenchmarkL2Failover", k.name+"-p50-ms").cell(0) + " ms",
			r.get("BenchmarkL2Failover", k.name+"-max-ms").cell(0) + " ms", "p50 ≤ 500 ms, max ≤ 1000 ms"})
	}
	table(&b, []string{"owner fails by", "gap p50", "gap max", "target"}, rows)

	// 7. Against the real kube-proxy.
	fmt.Fprintf(&b, "**Sluice against the real kube-proxy** (BenchmarkKubeProxy, one run): a real API server with N LoadBalancer Services of 2 endpoints each; in one node namespace, in turn, sluice-agent (Kubernetes mode), kube-proxy in iptables mode and kube-proxy in nftables mode (v1.37.2, the API server's release), each started cold; a client outside. Ratios are kube-proxy's figure over Sluice's (above 1: Sluice is faster):\n\n")
	rows = nil
	for _, n := range []int{1, 1000, 10000} {
		name := fmt.Sprintf("BenchmarkKubeProxy/services=%d", n)
		for _, m := range []struct{ unit, label string }{
			{"program-s", "from start until the last Service answers (s)"},
			{"connect-p50-us", "TCP connect through a Service address, p50 (µs)"},
			{"connect-p99-us", "the same, p99 (µs)"},
			{"conn-per-s", "new connections per second, 4 at a time (higher is better)"},
			{"cluster-connect-p50-us", "TCP connect from a node process to a cluster IP, p50 (µs)"},
			{"cluster-connect-p99-us", "the same, p99 (µs)"},
			{"cluster-conn-per-s", "new connections per second to a cluster IP, 4 at a time (higher is better)"},
			{"endpoint-change-p50-ms", "an EndpointSlice change until it is served, p50 of 10, while 20 other slices change a second (ms)"},
			{"endpoint-change-max-ms", "the same, the slowest of 10 (ms)"},
			{"rss-MiB", "proxy's resident memory once serving (MiB)"},
			{"conn-failed", "connections that got no answer in 2 s, of 2400 (lower is better)"},
		} {
			sl, ipt, nft := r.get(name, "sluice-"+m.unit), r.get(name, "iptables-"+m.unit), r.get(name, "nftables-"+m.unit)
			prec := 0
			if m.unit == "program-s" {
				prec = 2
			}
			ratio := func(k stat) string {
				if !k.ok || !sl.ok || sl.med == 0 || k.med == 0 {
					return "n/a"
				}
				if strings.HasSuffix(m.unit, "conn-per-s") {
					return fmt.Sprintf("%.2f×", sl.med/k.med)
				}
				return fmt.Sprintf("%.2f×", k.med/sl.med)
			}
			rows = append(rows, []string{fmt.Sprint(n), m.label, sl.cell(prec), ipt.cell(prec), nft.cell(prec), ratio(ipt), ratio(nft)})
		}
	}
	table(&b, []string{"Services", "what", "Sluice", "kube-proxy iptables", "kube-proxy nftables", "vs iptables", "vs nftables"}, rows)
	for _, n := range []int{1, 1000, 10000} {
		if m := r.get(fmt.Sprintf("BenchmarkKubeProxy/services=%d", n), "sluice-maps-MiB"); m.ok {
			fmt.Fprintf(&b, "Sluice's BPF maps (kernel memory, memlock) with %d Services: %s MiB — mostly preallocated conntrack and Maglev, whatever the count.\n\n", n, m.cell(1))
		}
	}

	// 8. IPAM.
	fmt.Fprintf(&b, "**LB-IPAM controller against a real kube-apiserver + etcd on this machine** (BenchmarkController, one run): 10k LoadBalancer Services exist, the controller starts:\n\n")
	t := r.get("BenchmarkController", "s/10k-services")
	heap := r.get("BenchmarkController", "heap-MiB")
	runs := r.get("BenchmarkController", "runs")
	table(&b, []string{"what", "value"}, [][]string{
		{"start to every Service's address in its status (informer sync, allocation, 10k status writes + 10k annotation writes)", t.cell(1) + " s"},
		{"controller heap once done (informer caches of 10k Services included)", heap.cell(0) + " MiB"},
		{"reconcile runs it took (events coalesce into one pending run)", runs.cell(0)},
	})
	return b.String()
}

// overFloor says how much of an established and a new packet is the program's own work:
// its time minus the map work it cannot do without, at 1 Service.
func overFloor(r results) string {
	var parts []string
	for _, fam := range []string{"ipv4_tcp", "ipv6_tcp"} {
		for _, k := range []struct{ kind, floor string }{{"established", "lookups"}, {"new", "lookups_writes"}} {
			p := r.get("BenchmarkXDPScale/services=1/"+fam+"/"+k.kind, "ns/packet")
			f := r.get("BenchmarkXDPScale/floor/"+fam+"/"+k.floor, "ns/packet")
			if p.ok && f.ok {
				parts = append(parts, fmt.Sprintf("%s %s %+.0f ns", strings.ReplaceAll(fam, "_", " "), k.kind, p.med-f.med))
			}
		}
	}
	if len(parts) == 0 {
		return ""
	}
	return "The program's own work over the map operations it cannot do without (median minus floor, 1 Service): " + strings.Join(parts, ", ") + ".\n\n"
}

// flatness is the largest deviation of the medians from the first (1 Service), in percent.
func flatness(meds []float64) string {
	if len(meds) < 2 || meds[0] == 0 {
		return "n/a"
	}
	worst := 0.0
	for _, m := range meds[1:] {
		if d := (m - meds[0]) / meds[0] * 100; math.Abs(d) > math.Abs(worst) {
			worst = d
		}
	}
	return fmt.Sprintf("%+.0f %%", worst)
}

func mib(v float64) string {
	if v < 1<<20 {
		return fmt.Sprintf("%.1f KiB", v/(1<<10))
	}
	return fmt.Sprintf("%.2f MiB", v/(1<<20))
}

func kernel() string {
	out, err := exec.Command("uname", "-r").Output()
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(out))
}

func cpuModel() string {
	data, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown CPU"
	}
	for _, l := range strings.Split(string(data), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown CPU"
}

const (
	beginMarker = "<!-- bench:begin (generated by make bench BENCH_WRITE=1; edit around it) -->"
	endMarker   = "<!-- bench:end -->"
)

// replaceSection replaces what lies between the markers in the Markdown file path.
func replaceSection(path, section string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	s := string(data)
	i, j := strings.Index(s, beginMarker), strings.Index(s, endMarker)
	if i < 0 || j < i {
		return fmt.Errorf("%s: no %q ... %q section to replace", path, beginMarker, endMarker)
	}
	s = s[:i+len(beginMarker)] + "\n\n" + section + s[j:]
	return os.WriteFile(path, []byte(s), 0o644)
}
