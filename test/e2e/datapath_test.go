package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/internal/localapi"
	"github.com/sluice-lb/sluice/test/traffic"
)

var (
	tcp4 = net.JoinHostPort(vip4, "80")
	tcp6 = net.JoinHostPort(vip6, "80")
)

// TestSpread: many connections to the Service address reach every backend, about evenly,
// over TCP and UDP, IPv4 and IPv6.
func TestSpread(t *testing.T) {
	s := newSingleNode(t, 3)
	s.startAgent(t, s.config(t, "1", "2", "3"))
	c := traffic.NewClient(s.client)

	r := c.Spread("tcp", tcp4, 3000, 8)
	t.Logf("TCP/IPv4, 3000 connections: %v (max deviation from even %.1f %%)", r, 100*r.MaxDeviation(3))
	if r.Failed != 0 || r.MaxDeviation(3) > 0.10 {
		t.Fatalf("TCP/IPv4 spread: %v", r)
	}
	for _, tc := range []struct{ network, addr string }{{"tcp", tcp6}, {"udp", tcp4}, {"udp", tcp6}} {
		r := c.Spread(tc.network, tc.addr, 300, 4)
		t.Logf("%s %s, 300 requests: %v", tc.network, tc.addr, r)
		if r.Failed != 0 || len(r.ByServer) != 3 {
			t.Fatalf("%s %s: %v", tc.network, tc.addr, r)
		}
	}

	// What is programmed, read back from the maps by the agent.
	var svcs []localapi.ServiceStatus
	must(t, json.Unmarshal([]byte(s.ctl(t, "services", "-o", "json")), &svcs))
	if len(svcs) != 5 {
		t.Fatalf("sluicectl services: %d frontends, want 5 (web: TCP and UDP, IPv4 and IPv6; empty)", len(svcs))
	}
	for _, svc := range svcs {
		total := 0
		for _, b := range svc.Backends {
			total += b.Slots
		}
		if strings.HasPrefix(svc.Service, "demo/empty:") {
			if len(svc.Backends) != 0 || svc.Slots != 0 {
				t.Fatalf("sluicectl services: %+v, want no backends", svc)
			}
			continue
		}
		if !strings.HasPrefix(svc.Service, "demo/web:") || len(svc.Backends) != 3 || uint32(total) != svc.Slots || svc.Slots == 0 {
			t.Fatalf("sluicectl services: %+v", svc)
		}
	}
	text := s.ctl(t, "services")
	if !strings.Contains(text, "203.0.113.10:80/TCP") || !strings.Contains(text, "198.51.100.11:8080 (active") {
		t.Fatalf("sluicectl services:\n%s", text)
	}
	t.Logf("sluicectl services:\n%s", text)

	// The flows just made are tracked, both directions.
	var flows []localapi.ConntrackEntry
	must(t, json.Unmarshal([]byte(s.ctl(t, "bpf", "conntrack", "-n", "50", "-o", "json")), &flows))
	dirs := map[string]int{}
	for _, f := range flows {
		dirs[f.Direction]++
	}
	if len(flows) != 50 || dirs["original"] == 0 || dirs["reply"] == 0 {
		t.Fatalf("sluicectl bpf conntrack -n 50: %d entries %v", len(flows), dirs)
	}

	// A Service without backends refuses at once (the datapath's RST), and says so.
	start := time.Now()
	_, err := c.Dial("tcp", net.JoinHostPort(emptyVIP4, "80"))
	if !errors.Is(err, syscall.ECONNREFUSED) || time.Since(start) > time.Second {
		t.Fatalf("connecting to a Service without backends: %v after %v, want connection refused at once", err, time.Since(start))
	}

	// The datapath's counters and events, as Prometheus metrics, and the event in the log.
	// Every TCP connection is a new flow (a UDP request may reuse a live flow's port).
	if v := s.metric(t, `sluice_datapath_packets_total{counter="fwd_new"}`); atoi(t, v) < 3000+300 {
		t.Fatalf("fwd_new = %s, want at least the %d TCP connections made", v, 3000+300)
	}
	waitFor(t, "the no_backend metrics and log line", func() bool {
		return atoi(t, s.metric(t, `sluice_datapath_packets_total{counter="no_backend_rst"}`)) >= 1 &&
			atoi(t, s.metric(t, `sluice_datapath_events_total{type="no_backend"}`)) >= 1 &&
			strings.Contains(s.agent.Output(), "packet to a Service without a usable backend rejected")
	})
}

func atoi(t *testing.T, s string) int {
	t.Helper()
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		t.Fatalf("metric value %q: %v", s, err)
	}
	return int(f)
}

// TestBackendRemoval: taking a backend out of the Service breaks no established connection —
// not of the other backends, nor of the one removed (its flows keep their conntrack entry,
// as with kube-proxy) — and new connections no longer reach it. A terminating backend
// likewise takes no new flows but keeps its own.
func TestBackendRemoval(t *testing.T) {
	s := newSingleNode(t, 3)
	config := s.config(t, "1", "2", "3")
	s.startAgent(t, config)
	c := traffic.NewClient(s.client)

	var sessions []*traffic.Session
	on := map[string]int{}
	for i := 0; i < 30; i++ {
		sess, err := c.Hold(tcp4, 20*time.Millisecond)
		must(t, err)
		sessions = append(sessions, sess)
		on[sess.Server]++
	}
	if len(on) != 3 {
		t.Fatalf("30 sessions landed on %v; want all three backends", on)
	}

	s.config(t, "1", "2", "~3") // be3 terminating: no new flows
	waitFor(t, "be3 to take no new flows", func() bool {
		r := c.Spread("tcp", tcp4, 100, 4)
		return r.Failed == 0 && r.ByServer["be3"] == 0
	})
	s.config(t, "1", "2") // be3 removed
	time.Sleep(300 * time.Millisecond)
	r := c.Spread("tcp", tcp4, 600, 8)
	t.Logf("after removing be3: %v", r)
	if r.Failed != 0 || r.ByServer["be3"] != 0 || r.MaxDeviation(2) > 0.15 {
		t.Fatalf("after removing be3: %v", r)
	}
	for i, sess := range sessions {
		n, err := sess.Stop()
		if err != nil {
			t.Errorf("session %d on %s: %v", i, sess.Server, err)
		}
		if n < 10 {
			t.Errorf("session %d on %s: only %d exchanges", i, sess.Server, n)
		}
	}
}

// TestAgentRestartHitless: the agent is killed with SIGKILL and started again while
// long-lived connections and a steady stream of new connections run: nothing breaks and
// nothing is refused, because maps and program attachments are pinned.
func TestAgentRestartHitless(t *testing.T) {
	s := newSingleNode(t, 3)
	config := s.config(t, "1", "2", "3")
	s.startAgent(t, config)
	c := traffic.NewClient(s.client)

	var sessions []*traffic.Session
	for i := 0; i < 10; i++ {
		sess, err := c.Hold(tcp4, 20*time.Millisecond)
		must(t, err)
		sessions = append(sessions, sess)
	}
	stream4 := c.Stream("tcp", tcp4, 3)
	stream6 := c.Stream("tcp", tcp6, 1)
	time.Sleep(300 * time.Millisecond)

	for round := 1; round <= 2; round++ {
		must(t, syscall.Kill(s.agent.PID, syscall.SIGKILL))
		<-s.agent.Done()
		time.Sleep(200 * time.Millisecond) // no agent at all for a while
		s.startAgent(t, config)
		time.Sleep(300 * time.Millisecond)
		// The restarted agent found everything in the pinned maps: it wrote nothing.
		if got := s.metric(t, "sluice_datapath_writes_total"); got != "0" {
			t.Fatalf("restart %d: the agent rewrote %s map entries; the pinned maps should have been read back as they were\n%s", round, got, s.agent.Output())
		}
	}

	r4, r6 := stream4.Stop(), stream6.Stop()
	t.Logf("new connections during two SIGKILL restarts: IPv4 %v; IPv6 %v", r4, r6)
	if r4.Failed != 0 || r6.Failed != 0 || r4.OK() < 50 {
		t.Fatalf("connections failed across restarts: IPv4 %v; IPv6 %v", r4, r6)
	}
	for i, sess := range sessions {
		if n, err := sess.Stop(); err != nil {
			t.Errorf("session %d: %v (after %d exchanges)", i, err, n)
		}
	}
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	waitUpTo(t, 10*time.Second, what, cond)
}

func waitUpTo(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestNodePort: a NodePort Service answers on the node's addresses, IPv4 and IPv6, at its
// node port, through the datapath.
func TestNodePort(t *testing.T) {
	s := newSingleNode(t, 2)
	s.extra = `---
apiVersion: v1
kind: Node
metadata: {name: node}
status: {addresses: [{type: InternalIP, address: 198.18.0.1}, {type: InternalIP, address: "2001:db8:18::1"}]}
---
apiVersion: v1
kind: Service
metadata: {name: np, namespace: demo}
spec: {type: NodePort, ipFamilyPolicy: PreferDualStack, ports: [{name: tcp, port: 80, nodePort: 30080, protocol: TCP}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: np-ipv4, namespace: demo, labels: {kubernetes.io/service-name: np}}
addressType: IPv4
ports: [{name: tcp, port: 8080, protocol: TCP}]
endpoints: [{addresses: [198.51.100.11], conditions: {ready: true}}, {addresses: [198.51.100.12], conditions: {ready: true}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: np-ipv6, namespace: demo, labels: {kubernetes.io/service-name: np}}
addressType: IPv6
ports: [{name: tcp, port: 8080, protocol: TCP}]
endpoints: [{addresses: ["2001:db8:51::11"], conditions: {ready: true}}]
`
	s.startAgent(t, s.config(t, "1"))
	c := traffic.NewClient(s.client)
	r := c.Spread("tcp", "198.18.0.1:30080", 100, 4)
	if r.Failed != 0 || len(r.ByServer) != 2 {
		t.Fatalf("198.18.0.1:30080: %v; want every connection answered, by both IPv4 endpoints", r)
	}
	r = c.Spread("tcp", "[2001:db8:18::1]:30080", 20, 4)
	if r.Failed != 0 || r.ByServer["be1"] != 20 {
		t.Fatalf("[2001:db8:18::1]:30080: %v; want every connection answered by be1", r)
	}
}

// TestTerminatingFallback: when a Service's only endpoints are terminating but still serving
// (a rolling update of one replica), new connections go to them rather than being refused;
// once a ready endpoint is back, new flows go to it alone.
func TestTerminatingFallback(t *testing.T) {
	s := newSingleNode(t, 2)
	s.startAgent(t, s.config(t, "~1"))
	c := traffic.NewClient(s.client)
	if r := c.Spread("tcp", tcp4, 20, 4); r.Failed != 0 || r.ByServer["be1"] != 20 {
		t.Fatalf("only a terminating, serving endpoint: %v; want every connection answered by be1", r)
	}
	s.config(t, "~1", "2")
	waitFor(t, "new flows on the ready endpoint only", func() bool {
		r := c.Spread("tcp", tcp4, 20, 4)
		return r.Failed == 0 && r.ByServer["be2"] == 20
	})
}

// TestExternalIPsPolicy: an external IP inside an IPPool is served; one outside every pool
// is ignored, and said so, until --external-ip-cidrs allows it (CVE-2020-8554).
func TestExternalIPsPolicy(t *testing.T) {
	s := newSingleNode(t, 1)
	must(t, s.client.AddRoute("203.0.114.0/24", "198.18.0.1"))
	s.extra = `---
apiVersion: sluice.dev/v1alpha1
kind: IPPool
metadata: {name: lab}
spec: {autoAssign: false, blocks: [{cidr: 203.0.113.0/24}]}
---
apiVersion: v1
kind: Service
metadata: {name: ext, namespace: demo}
spec: {type: ClusterIP, externalIPs: [203.0.113.60, 203.0.114.1], ports: [{name: tcp, port: 80, protocol: TCP}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: ext, namespace: demo, labels: {kubernetes.io/service-name: ext}}
addressType: IPv4
ports: [{name: tcp, port: 8080, protocol: TCP}]
endpoints: [{addresses: [198.51.100.11], conditions: {ready: true}}]
`
	config := s.config(t, "1")
	s.startAgent(t, config)
	c := traffic.NewClient(s.client)
	c.Timeout = 500 * time.Millisecond
	if r := c.Spread("tcp", "203.0.113.60:80", 10, 2); r.Failed != 0 || r.ByServer["be1"] != 10 {
		t.Fatalf("external IP in an IPPool: %v; want every connection answered", r)
	}
	if r := c.Spread("tcp", "203.0.114.1:80", 4, 2); r.OK() != 0 {
		t.Fatalf("external IP outside every pool: %v; want no answer", r)
	}
	if st := s.ctl(t, "status"); !strings.Contains(st, "203.0.114.1 is in no IPPool and no --external-ip-cidrs: ignored") {
		t.Fatalf("sluicectl status does not say why 203.0.114.1 is ignored:\n%s", st)
	}
	must(t, s.agent.Stop(5*time.Second))
	s.startAgent(t, config, "--external-ip-cidrs", "203.0.114.0/24")
	if r := c.Spread("tcp", "203.0.114.1:80", 10, 2); r.Failed != 0 || r.ByServer["be1"] != 10 {
		t.Fatalf("external IP allowed by --external-ip-cidrs: %v; want every connection answered", r)
	}
}

// TestHealthCheckNodePort: the healthCheckNodePort of a LoadBalancer Service with
// externalTrafficPolicy Local answers as kube-proxy's: 200 and the count while the node has a
// ready endpoint, 503 once it has none.
func TestHealthCheckNodePort(t *testing.T) {
	s := newSingleNode(t, 1)
	probe := func() (int, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		out, err := s.client.Exec(ctx, "curl", "-s", "-w", "\n%{http_code}", "http://198.18.0.1:32000/")
		if err != nil {
			return 0, err.Error()
		}
		fields := strings.Fields(string(out)) // the JSON body (no spaces), then the status code
		if len(fields) != 2 {
			return 0, string(out)
		}
		return atoi(t, fields[1]), fields[0]
	}
	s.extra = nodeObject + localService(true)
	s.startAgent(t, s.config(t, "1"))
	var code int
	var body string
	waitFor(t, "200 from the health check node port", func() bool { code, body = probe(); return code == 200 })
	if !strings.Contains(body, `"localEndpoints":1`) || !strings.Contains(body, `"name":"local"`) {
		t.Fatalf("health check: %d %s", code, body)
	}
	s.extra = nodeObject + localService(false)
	s.config(t, "1")
	waitFor(t, "503 once the endpoint is not ready", func() bool { code, body = probe(); return code == 503 })
	if !strings.Contains(body, `"localEndpoints":0`) {
		t.Fatalf("health check: %d %s", code, body)
	}
}

// TestLoadBalancerSourceRanges: a LoadBalancer Service with loadBalancerSourceRanges answers
// the clients inside them only; the others get no answer, and the datapath counts them. A
// change of the ranges takes effect without a restart. The Service's cluster IP and node
// port are not restricted, as with kube-proxy.
func TestLoadBalancerSourceRanges(t *testing.T) {
	s := newSingleNode(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if out, err := s.client.Exec(ctx, "ip", "addr", "add", "198.18.0.3/24", "dev", "eth0"); err != nil {
		t.Fatalf("second client address: %v: %s", err, out)
	}
	guarded := func(ranges string) {
		s.extra = fmt.Sprintf(`---
apiVersion: v1
kind: Node
metadata: {name: node}
status: {addresses: [{type: InternalIP, address: 198.18.0.1}]}
---
apiVersion: v1
kind: Service
metadata: {name: guarded, namespace: demo}
spec: {type: LoadBalancer, loadBalancerSourceRanges: [%s], ports: [{name: tcp, port: 80, nodePort: 30081, protocol: TCP}]}
status: {loadBalancer: {ingress: [{ip: 203.0.113.30}]}}
`, ranges) + endpointSliceYAML("guarded", "{addresses: [198.51.100.11], conditions: {ready: true}}")
	}
	guarded("198.18.0.2/32")
	s.startAgent(t, s.config(t, "1"))
	from := func(src string) *traffic.Client {
		c := traffic.NewClient(s.client)
		c.Source, c.Timeout = netip.MustParseAddr(src), 500*time.Millisecond
		return c
	}
	if r := from("198.18.0.2").Spread("tcp", "203.0.113.30:80", 10, 2); r.Failed != 0 || r.ByServer["be1"] != 10 {
		t.Fatalf("a client inside the ranges: %v; want every connection answered", r)
	}
	if r := from("198.18.0.3").Spread("tcp", "203.0.113.30:80", 4, 2); r.OK() != 0 {
		t.Fatalf("a client outside the ranges: %v; want no answer", r)
	}
	if got := s.metric(t, `sluice_datapath_packets_total{counter="source_denied"}`); got == "0" || got == "" {
		t.Fatalf("source_denied counter %q after refused connections", got)
	}
	if r := from("198.18.0.3").Spread("tcp", "198.18.0.1:30081", 10, 2); r.Failed != 0 {
		t.Fatalf("the node port from outside the ranges: %v; want every connection answered (the ranges hold for the LoadBalancer address)", r)
	}

	guarded("198.18.0.3/32, 192.0.2.0/24")
	s.config(t, "1")
	waitFor(t, "the new ranges", func() bool {
		r := from("198.18.0.3").Spread("tcp", "203.0.113.30:80", 4, 2)
		return r.Failed == 0
	})
	if r := from("198.18.0.2").Spread("tcp", "203.0.113.30:80", 4, 2); r.OK() != 0 {
		t.Fatalf("a client no longer inside the ranges: %v; want no answer", r)
	}
}

// TestTopologyHints: with EndpointSlice zone hints, a node sends a Service's traffic to the
// endpoints hinted for its own zone only, as kube-proxy does; once a ready endpoint has no
// hint, to all of them.
func TestTopologyHints(t *testing.T) {
	s := newSingleNode(t, 2)
	zoned := func(hinted bool) {
		hintB := "hints: {forZones: [{name: b}]}"
		if !hinted {
			hintB = ""
		}
		s.extra = `---
apiVersion: v1
kind: Node
metadata: {name: node, labels: {topology.kubernetes.io/zone: a}}
status: {addresses: [{type: InternalIP, address: 198.18.0.1}]}
---
apiVersion: v1
kind: Service
metadata: {name: zoned, namespace: demo}
spec: {type: LoadBalancer, trafficDistribution: PreferClose, ports: [{name: tcp, port: 80, protocol: TCP}]}
status: {loadBalancer: {ingress: [{ip: 203.0.113.40}]}}
` + endpointSliceYAML("zoned",
			"{addresses: [198.51.100.11], zone: a, conditions: {ready: true}, hints: {forZones: [{name: a}]}}",
			"{addresses: [198.51.100.12], zone: b, conditions: {ready: true}, "+hintB+"}")
	}
	zoned(true)
	s.startAgent(t, s.config(t, "1"))
	c := traffic.NewClient(s.client)
	if r := c.Spread("tcp", "203.0.113.40:80", 40, 4); r.Failed != 0 || r.ByServer["be1"] != 40 {
		t.Fatalf("zone hints: %v; want every connection to be1, the endpoint of the node's zone", r)
	}
	zoned(false)
	s.config(t, "1")
	waitFor(t, "both endpoints once one has no hint", func() bool {
		r := c.Spread("tcp", "203.0.113.40:80", 40, 4)
		return r.Failed == 0 && r.ByServer["be1"] > 0 && r.ByServer["be2"] > 0
	})
}
