package main

import (
	"bufio"
	"cmp"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sluice-lb/sluice/bpf"
	"github.com/sluice-lb/sluice/internal/localapi"
	"github.com/sluice-lb/sluice/test/lab"
	"github.com/sluice-lb/sluice/test/peers"
)

// The agents' HTTP endpoints: loopback is per network namespace, so every node uses the same.
const (
	device      = "eth0" // the node's interface toward the router, where the datapath attaches
	metricsAddr = "127.0.0.1:9472"
	healthAddr  = "127.0.0.1:9473"
	routerASN   = 64512
	nodeASN     = 64513
)

// startFRR runs zebra and bgpd on the router with both nodes as passive neighbors, over
// IPv4 and IPv6: it waits for the nodes to open their BGP sessions, and installs what it
// learns in the router's routing table, equal paths as one ECMP route.
func (d *demo) startFRR(ctx context.Context) error {
	cfg := peers.Config{RouterID: netip.MustParseAddr(routerLAN4), ASN: routerASN, HoldTime: 9 * time.Second, InstallRoutes: true}
	var neighbors []string
	for _, n := range d.nodes {
		for _, a := range []string{n.addr4, n.addr6} {
			cfg.Neighbors = append(cfg.Neighbors, peers.Neighbor{Address: netip.MustParseAddr(a), ASN: nodeASN, Passive: true})
			neighbors = append(neighbors, a)
		}
	}
	dir := filepath.Join(d.dir, "frr")
	if err := os.Mkdir(dir, 0o755); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	frr, err := peers.StartFRR(ctx, d.router.Name, dir, cfg)
	if err != nil {
		return err
	}
	d.frr = frr
	fmt.Fprintf(d.out, "  router: FRR zebra and bgpd up (bgpd pid %d): AS %d, router ID %s, up to %d equal paths installed per prefix\n",
		frr.PID(), routerASN, routerLAN4, peers.MaxPaths)
	fmt.Fprintf(d.out, "  router: passive neighbors %s (AS %d): it waits for the nodes to connect\n", strings.Join(neighbors, ", "), nodeASN)
	return nil
}

// startAgents mounts a bpffs for each node and starts sluice-agent in each node's namespace
// with the datapath on eth0, and waits until it is ready.
func (d *demo) startAgents(ctx context.Context) error {
	fmt.Fprintln(d.out, "  each node runs, inside its own network namespace:")
	fmt.Fprintf(d.out, "    %s --config %s --node-name NODE --devices %s\n", filepath.Base(d.opts.Agent), d.config, device)
	fmt.Fprintf(d.out, "      --state-dir %s --bpffs %s\n", filepath.Join(d.dir, "NODE", "state"), filepath.Join(d.dir, "NODE", "bpf"))
	fmt.Fprintf(d.out, "      --metrics-addr %s --health-addr %s\n", metricsAddr, healthAddr)
	fmt.Fprintln(d.out, "      --cgroup-root <the node's own cgroup> (socket load balancing for its processes only)")
	fmt.Fprintln(d.out, "  the demo mounts each node's bpffs itself, in the host's mount namespace, as a DaemonSet's")
	fmt.Fprintln(d.out, "  hostPath gives it: `ip netns exec` gives the agent a mount namespace of its own, and the")
	fmt.Fprintln(d.out, "  pinned maps and program links must outlive the agent")
	for _, n := range d.nodes {
		n.stateDir, n.bpffs = filepath.Join(d.dir, n.name, "state"), filepath.Join(d.dir, n.name, "bpf")
		for _, dir := range []string{n.stateDir, n.bpffs} {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return err
			}
		}
		mounted, err := bpf.MountBPFFS(n.bpffs)
		if err != nil {
			return fmt.Errorf("%s: %w", n.name, err)
		}
		n.bpffsMounted = mounted
		start := time.Now()
		if err := d.startAgent(ctx, n, false); err != nil {
			return err
		}
		samples, err := n.metricSamples(ctx)
		if err != nil {
			return err
		}
		fmt.Fprintf(d.out, "\n  %s: sluice-agent (pid %d) ready after %v: /readyz ok, /metrics serves %d sluice_* samples\n",
			n.name, n.agent.PID, time.Since(start).Round(time.Millisecond), samples)
		fmt.Fprintf(d.out, "  %s: from its log:\n", n.name)
		for _, line := range agentLog(n.agent.Output()) {
			fmt.Fprintf(d.out, "    %s | %s\n", n.name, line)
		}
	}
	return nil
}

// startAgent starts node n's agent and waits until it is ready: until it has built its model
// and, unless it starts again over its own pinned maps (restart) and so has nothing to
// write, programmed the datapath.
func (d *demo) startAgent(ctx context.Context, n *node, restart bool) error {
	// Each node's socket programs attach to its own cgroup, never the machine's.
	cg, err := n.ns.Cgroup()
	if err != nil {
		return fmt.Errorf("%s: %w", n.name, err)
	}
	n.exited = false
	n.agent, err = n.ns.Start(d.opts.Agent, "--cgroup-root", cg.Path,
		"--config", d.config, "--node-name", n.name, "--devices", device,
		"--state-dir", n.stateDir, "--bpffs", n.bpffs,
		"--metrics-addr", metricsAddr, "--health-addr", healthAddr)
	if err != nil {
		return err
	}
	logged := []string{"model built", "datapath programmed"}
	if restart {
		logged = logged[:1]
	}
	return n.waitReady(ctx, logged)
}

// waitReady polls the agent's /readyz and then its log until the first model and the
// datapath's first programming are logged.
func (n *node) waitReady(ctx context.Context, logged []string) error {
	err := wait(ctx, 15*time.Second, 100*time.Millisecond, func() error {
		select {
		case <-n.agent.Done():
			n.exited = true
			return giveUp{fmt.Errorf("sluice-agent exited (%v)", n.agent.Err())}
		default:
		}
		_, err := n.get(ctx, "/readyz")
		return err
	})
	if err == nil {
		// The model is logged before /readyz answers; the copy from the pipe may lag.
		err = wait(ctx, 5*time.Second, 50*time.Millisecond, func() error {
			for _, msg := range logged {
				if !strings.Contains(n.agent.Output(), msg) {
					return fmt.Errorf("no %q in its log yet", msg)
				}
			}
			return nil
		})
	}
	if err != nil {
		return fmt.Errorf("%s: sluice-agent not ready: %w; its log:\n%s", n.name, err, indent(lastLines(n.agent.Output(), 20), "  "))
	}
	return nil
}

// get fetches a path of the agent's health/metrics endpoint from inside the node's namespace.
func (n *node) get(ctx context.Context, path string) (string, error) {
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			var conn net.Conn
			err := n.ns.Do(func() error {
				var err error
				conn, err = (&net.Dialer{}).DialContext(ctx, network, addr)
				return err
			})
			return conn, err
		},
	}}
	addr := healthAddr
	if path == "/metrics" {
		addr = metricsAddr
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+path, nil)
	if err != nil {
		return "", err
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s: %s: %s", path, resp.Status, strings.TrimSpace(string(body)))
	}
	return string(body), nil
}

// metricSamples counts the sluice_* samples the agent's /metrics serves.
func (n *node) metricSamples(ctx context.Context) (int, error) {
	body, err := n.get(ctx, "/metrics")
	if err != nil {
		return 0, fmt.Errorf("%s: %w", n.name, err)
	}
	count := 0
	for line := range strings.Lines(body) {
		if strings.HasPrefix(line, "sluice_") {
			count++
		}
	}
	if count == 0 {
		return 0, fmt.Errorf("%s: /metrics serves no sluice_* samples", n.name)
	}
	return count, nil
}

// stop stops the node's agent with SIGTERM and checks that it exited with status 0.
func (n *node) stop() error {
	if n.agent == nil || n.exited {
		return nil
	}
	if err := n.agent.Stop(lab.StopGrace); err != nil {
		return fmt.Errorf("%s: stopping sluice-agent: %w", n.name, err)
	}
	if err := n.agent.Err(); err != nil {
		return fmt.Errorf("%s: sluice-agent exited with %v, its log:\n%s", n.name, err, indent(lastLines(n.agent.Output(), 10), "  "))
	}
	return nil
}

// agentLog picks the lines of an agent's (text) log that say what it understood, what it
// rejected and what went wrong.
func agentLog(output string) []string {
	var lines []string
	sc := bufio.NewScanner(strings.NewReader(output))
	for sc.Scan() {
		attrs := parseLogfmt(sc.Text())
		msg, level := attrs.get("msg"), attrs.get("level")
		switch {
		case msg == "understood":
			lines = append(lines, "understood  "+attrs.get("what"))
		case msg == "problem":
			lines = append(lines, "PROBLEM     "+attrs.get("what"))
		case msg == "model built":
			lines = append(lines, "model built "+attrs.except("time", "level", "msg", "took"))
		case msg == "datapath attached":
			lines = append(lines, "datapath    attached to "+attrs.get("device")+": "+attrs.get("programs"))
		case msg == "datapath programmed":
			lines = append(lines, "datapath    programmed "+attrs.except("time", "level", "msg", "took"))
		case level == "WARN" || level == "ERROR":
			lines = append(lines, level+"        "+msg+" "+attrs.except("time", "level", "msg"))
		}
	}
	return lines
}

type attr struct{ key, value string }

type attrs []attr

func (as attrs) get(key string) string {
	for _, a := range as {
		if a.key == key {
			return a.value
		}
	}
	return ""
}

// except formats the attributes other than the given keys as key=value.
func (as attrs) except(keys ...string) string {
	var parts []string
	for _, a := range as {
		skip := false
		for _, k := range keys {
			skip = skip || a.key == k
		}
		if !skip {
			parts = append(parts, a.key+"="+a.value)
		}
	}
	return strings.Join(parts, " ")
}

// parseLogfmt parses one line of log/slog's text format: key=value pairs, values quoted
// with Go syntax where needed. It stops at anything else.
func parseLogfmt(line string) attrs {
	var out attrs
	s := strings.TrimSpace(line)
	for s != "" {
		key, rest, ok := strings.Cut(s, "=")
		if !ok || strings.ContainsRune(key, ' ') {
			break
		}
		var value string
		if strings.HasPrefix(rest, `"`) {
			quoted, err := strconv.QuotedPrefix(rest)
			if err != nil {
				break
			}
			value, _ = strconv.Unquote(quoted)
			rest = rest[len(quoted):]
		} else {
			value, rest, _ = strings.Cut(rest, " ")
		}
		out = append(out, attr{key, value})
		s = strings.TrimLeft(rest, " ")
	}
	return out
}

// shownMetrics are the datapath's metrics the demo shows.
var shownMetrics = []string{"sluice_datapath_writes_total", "sluice_datapath_sync_errors_total", "sluice_datapath_sync_seconds_count"}

// showStatus runs `sluicectl status` against the entry node's local API socket, from the root
// namespace (a Unix socket is reached by its path, whatever the network namespace), and shows
// its datapath metrics.
func (d *demo) showStatus(ctx context.Context) error {
	n := d.entry()
	sctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	for _, cmd := range []string{"status", "ipam"} {
		out, err := exec.CommandContext(sctx, d.opts.Sluicectl, cmd, "--state-dir", n.stateDir).CombinedOutput()
		fmt.Fprintf(d.out, "  $ %s %s --state-dir %s\n", filepath.Base(d.opts.Sluicectl), cmd, n.stateDir)
		fmt.Fprint(d.out, indent(string(out), "    "))
		if err != nil {
			cancel()
			return fmt.Errorf("%s: sluicectl %s: %w", n.name, cmd, err)
		}
	}
	cancel()

	body, err := n.get(ctx, "/metrics")
	if err != nil {
		return fmt.Errorf("%s: %w", n.name, err)
	}
	fmt.Fprintf(d.out, "\n  $ curl -s http://%s/metrics | grep -E '^(%s) '   # in %s's namespace\n",
		metricsAddr, strings.Join(shownMetrics, "|"), n.name)
	var lines []string
	for line := range strings.Lines(body) {
		name, _, _ := strings.Cut(line, " ")
		if slices.Contains(shownMetrics, name) {
			lines = append(lines, strings.TrimSpace(line))
		}
	}
	if len(lines) == 0 {
		return fmt.Errorf("%s: /metrics serves none of %s", n.name, strings.Join(shownMetrics, ", "))
	}
	fmt.Fprint(d.out, indent(strings.Join(lines, "\n"), "    "))
	return nil
}

// summary says which parts run today and which are not there yet, with evidence from the lab.
func (d *demo) summary(ctx context.Context) error {
	var statuses []*localapi.Status
	for _, n := range d.nodes {
		st, err := localapi.NewClient(n.stateDir).Status(ctx)
		if err != nil {
			return fmt.Errorf("%s: %w", n.name, err)
		}
		statuses = append(statuses, st)
	}
	sessions, err := d.frr.Sessions(ctx)
	if err != nil {
		return err
	}
	features := statuses[0].Features
	row := func(running bool, what string, details ...string) {
		state := "not yet"
		if running {
			state = "running"
		}
		fmt.Fprintf(d.out, "  %-8s %-20s %s\n", state, what, details[0])
		for _, more := range details[1:] {
			fmt.Fprintf(d.out, "  %-8s %-20s %s\n", "", "", more)
		}
	}
	// A feature runs when every agent says "running" (possibly with details: "running: ...").
	feature := func(name string) (bool, string) {
		running := true
		for _, st := range statuses {
			state := st.Features[name]
			running = running && (state == "running" || strings.HasPrefix(state, "running:"))
		}
		return running, "the agents say: " + features[name]
	}

	row(true, "lab", fmt.Sprintf("%d network namespaces on one kernel: router, client, %d nodes, %d pods",
		2+len(d.nodes)+len(d.allPods()), len(d.nodes), len(d.allPods())))
	running, _ := feature("model")
	row(running, "model", d.modelSummary(statuses)...)
	row(true, "agent", "each node's agent answers /healthz, /readyz and /metrics on its own loopback")
	row(true, "local API", "sluicectl status reads each agent over <state-dir>/"+localapi.SocketName)
	running, says := feature("datapath")
	lb := append([]string{says}, d.evidence()...)
	lb = append(lb, "(through the router's ECMP routes over both nodes, learned over BGP; each node serves its own pods)")
	row(running && d.trafficOK(), "eBPF load balancing", lb...)
	running, says = feature("ipam")
	alloc := []string{says}
	allocs, err := localapi.NewClient(d.entry().stateDir).Allocations(ctx)
	if err != nil {
		return fmt.Errorf("%s: %w", d.entry().name, err)
	}
	for _, a := range allocs {
		alloc = append(alloc, fmt.Sprintf("%s: %s (%s, pool %s)", a.Service, strings.Join(a.IPs, ", "), a.Reason, strings.Join(slices.Compact(slices.Clone(a.Pools)), ", ")))
		running = running && a.Ready
	}
	row(running, "address allocation", alloc...)
	running, says = feature("bgp")
	// The agents open their sessions at start; give them a few seconds to be up.
	var learned []string
	established := 0
	_ = wait(ctx, 15*time.Second, 200*time.Millisecond, func() error {
		if sessions, err = d.frr.Sessions(ctx); err != nil {
			return err
		}
		established = 0
		for _, s := range sessions {
			if s.State == peers.Established {
				established++
			}
		}
		routes, err := d.frr.Routes(ctx)
		if err != nil {
			return err
		}
		learned = learnedRoutes(routes)
		if established < len(sessions) || len(learned) < 2 {
			return fmt.Errorf("%d of %d sessions established, %d prefixes learned", established, len(sessions), len(learned))
		}
		return nil
	})
	var states []string
	for _, s := range sessions {
		states = append(states, fmt.Sprintf("%s (AS %d) %s", s.Neighbor, s.ASN, s.State))
	}
	bgp := []string{says, "FRR on the router: " + strings.Join(states, ", ")}
	for _, l := range learned {
		bgp = append(bgp, "FRR learned "+l)
	}
	row(running && established == len(sessions) && len(learned) > 0, "BGP announcements", bgp...)
	running, says = feature("l2announce")
	l2 := []string{says}
	if st, err := localapi.NewClient(d.entry().stateDir).L2(ctx); err == nil {
		l2 = append(l2, fmt.Sprintf("%s hears %s; on the LAN, these addresses are answered for by:", d.entry().name, strings.Join(st.Alive, ", ")))
		for _, o := range st.Owners {
			l2 = append(l2, fmt.Sprintf("%s (%s): %s", o.Address, o.Service, cmp.Or(o.Owner, "nobody")))
		}
		running = running && len(st.Owners) > 0 && !slices.ContainsFunc(st.Owners, func(o localapi.L2Owner) bool { return o.Owner == "" })
	} else {
		l2 = append(l2, fmt.Sprintf("%s: %v", d.entry().name, err))
		running = false
	}
	if d.lan != nil {
		l2 = append(l2, fmt.Sprintf("lan-client -> %s:80 while %s's link was down: %s took over after %v, longest gap %v, %d of %d answered",
			lanVIP, d.lan.owner, d.lan.other, d.lan.tookOver.Round(time.Millisecond), d.lan.gap.Round(time.Millisecond), d.lan.answered, d.lan.sent))
	}
	running = running && d.lan != nil && d.lan.gap <= time.Second
	row(running, "ARP/NDP answers", l2...)
	if k := d.kill; k != nil {
		row(k.answered*100 >= k.sent*95, "agent killed",
			fmt.Sprintf("client -> %s while %s's agent was killed and restarted: %d of %d answered, longest gap %v",
				targets[0].addr, k.node, k.answered, k.sent, k.gap.Round(time.Millisecond)),
			fmt.Sprintf("the router dropped %s's path %v after the kill, and took it back %v after the restart",
				k.node, k.withdrawn.Round(time.Millisecond), k.rejoined.Round(time.Millisecond)))
	}
	fmt.Fprintln(d.out, "\n  In a cluster: helm install sluice manifests/helm/sluice (docs/configuration.md); from MetalLB:")
	fmt.Fprintln(d.out, "  sluicectl migrate metallb --from-cluster (docs/migration-from-metallb.md).")
	return nil
}

// trafficOK reports whether every request of every spread was answered, by every pod.
func (d *demo) trafficOK() bool {
	if len(d.spreads) == 0 {
		return false
	}
	for _, s := range d.spreads {
		if d.check(s.target, s.result) != nil {
			return false
		}
	}
	return true
}

// modelSummary describes what the agents understood, in one line when they agree.
func (d *demo) modelSummary(statuses []*localapi.Status) []string {
	describe := func(st *localapi.Status) string {
		return fmt.Sprintf("%s, %s, %s, %s", plural(len(st.Pools), "IP pool"), plural(len(st.Peers), "BGP peer"),
			plural(st.ServicesOurs, "LoadBalancer Service"), plural(len(st.Problems)+len(st.InputProblems), "problem"))
	}
	first := describe(statuses[0])
	agree := true
	for _, st := range statuses[1:] {
		agree = agree && describe(st) == first
	}
	if agree {
		return []string{"both agents read " + filepath.Base(d.config) + " alike: " + first}
	}
	var lines []string
	for i, st := range statuses {
		lines = append(lines, d.nodes[i].name+": "+describe(st))
	}
	return lines
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// learnedRoutes renders the routes FRR learned from the nodes, one line per prefix with
// every next hop: "203.0.113.1/32 via 198.51.100.11, 198.51.100.12 (AS 64513)".
func learnedRoutes(routes []peers.Route) []string {
	hops := map[netip.Prefix][]string{}
	var prefixes []netip.Prefix
	for _, r := range routes {
		if !r.Peer.IsValid() {
			continue // originated by FRR itself
		}
		if _, ok := hops[r.Prefix]; !ok {
			prefixes = append(prefixes, r.Prefix)
		}
		for _, nh := range r.NextHops {
			if !slices.Contains(hops[r.Prefix], nh.String()) {
				hops[r.Prefix] = append(hops[r.Prefix], nh.String())
			}
		}
	}
	slices.SortFunc(prefixes, func(a, b netip.Prefix) int { return a.Addr().Compare(b.Addr()) })
	var out []string
	for _, p := range prefixes {
		h := hops[p]
		slices.Sort(h)
		out = append(out, fmt.Sprintf("%s via %s (AS 64513)", p, strings.Join(h, ", ")))
	}
	return out
}
