package e2e

import (
	"context"
	"net/netip"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/internal/testenv"
	"github.com/sluice-lb/sluice/test/lab"
	"github.com/sluice-lb/sluice/test/peers"
	"github.com/sluice-lb/sluice/test/traffic"
)

// The ECMP topology: a router running FRR with zebra, a client behind it, and two nodes on
// the router's LAN, each with one backend of Service ecmp (externalTrafficPolicy Local).
//
//	client 198.19.0.2 ── 198.19.0.1 router 198.18.1.1 ─┬─ 198.18.1.11 node-a ── be-a 198.51.100.11
//	                                (bridge lan)         └─ 198.18.1.12 node-b ── be-b 198.51.100.139
const (
	ecmpVIP   = "203.0.113.30"
	routerLAN = "198.18.1.1"
)

// ecmpConfig is the standalone config both agents read: the nodes, the router as BGP peer
// (with graceful restart or not), and Service ecmp with one endpoint on each node, the one on
// node-a ready or not.
func ecmpConfig(t *testing.T, path string, aReady, gracefulRestart bool) {
	peerSpec := ""
	if gracefulRestart {
		peerSpec = ", gracefulRestart: {enabled: true}"
	}
	writeConfig(t, path, `apiVersion: v1
kind: Node
metadata: {name: node-a}
status: {addresses: [{type: InternalIP, address: 198.18.1.11}]}
---
apiVersion: v1
kind: Node
metadata: {name: node-b}
status: {addresses: [{type: InternalIP, address: 198.18.1.12}]}
`+routerObjects(routerLAN, peerSpec)+localServiceYAML("ecmp", ecmpVIP, map[string]bool{"node-a": aReady, "node-b": true}))
}

// ecmpLab is the ECMP topology with both agents running and the router's route over both.
type ecmpLab struct {
	router, client *lab.Namespace
	nodes          []*labNode
	frr            *peers.FRR
	config         string
	ctx            context.Context
	both           []netip.Addr // the nodes' addresses: the ECMP route's next hops
}

// newECMPLab builds the ECMP topology, starts FRR (with zebra) and both agents, and waits
// until the router's kernel route goes over both nodes. With gracefulRestart, FRR and the
// agents' BGPPeer do graceful restart.
func newECMPLab(t *testing.T, gracefulRestart bool) *ecmpLab {
	testenv.RequirePrivileged(t)
	l := lab.ForTest(t)
	dir := t.TempDir()
	e := &ecmpLab{}
	var err error
	e.client, err = l.Namespace("client")
	must(t, err)
	e.router, err = l.Namespace("router")
	must(t, err)
	must(t, e.router.EnableForwarding())
	// Hash flows over the ECMP members by ports too, not only by addresses: one client.
	must(t, e.router.Sysctl("net.ipv4.fib_multipath_hash_policy", "1"))
	must(t, l.Connect(lab.Endpoint{NS: e.client, Name: "eth0", Addrs: []string{"198.19.0.2/24"}},
		lab.Endpoint{NS: e.router, Name: "eth0", Addrs: []string{"198.19.0.1/24"}}))
	must(t, e.client.AddRoute("default", "198.19.0.1"))
	must(t, e.router.AddBridge("lan", routerLAN+"/24"))

	e.nodes = twoNodes("198.18.1")
	var neighbors []peers.Neighbor
	for _, n := range e.nodes {
		n.build(t, l, dir, e.router, "lan", "to-"+n.name)
		must(t, n.ns.AddRoute("default", routerLAN))
		neighbors = append(neighbors, peers.Neighbor{Address: netip.MustParseAddr(n.addr), ASN: 64513, GracefulRestart: gracefulRestart})
		e.both = append(e.both, netip.MustParseAddr(n.addr))
	}
	e.frr = peers.StartForTest(t, peers.StartFRR, e.router.Name, peers.Config{
		RouterID: netip.MustParseAddr(routerLAN), ASN: 64512, HoldTime: 9 * time.Second, Neighbors: neighbors, InstallRoutes: true,
	})
	e.config = filepath.Join(dir, "config.yaml")
	ecmpConfig(t, e.config, true, gracefulRestart)
	for _, n := range e.nodes {
		n.agent = startAgent(t, n.ns, n.name, n.dir, e.config)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	e.ctx = ctx
	e.waitNextHops(t, e.both)
	return e
}

// waitNextHops waits until the router's kernel route for the Service address goes via want,
// and returns when it saw it.
func (e *ecmpLab) waitNextHops(t *testing.T, want []netip.Addr) time.Time {
	t.Helper()
	prefix := netip.MustParsePrefix(ecmpVIP + "/32")
	for {
		got, err := e.frr.KernelNextHops(e.ctx, prefix)
		must(t, err)
		if slices.Equal(got, want) {
			return time.Now()
		}
		if e.ctx.Err() != nil {
			t.Fatalf("router's kernel route for %s via %v, want %v\nnode-a:\n%s\nnode-b:\n%s", prefix, got, want,
				e.nodes[0].agent.Output(), e.nodes[1].agent.Output())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// pathOf returns FRR's path for the Service address from node n (none: zero Attributes).
func (e *ecmpLab) pathOf(t *testing.T, n *labNode) peers.Attributes {
	t.Helper()
	paths, err := e.frr.Paths(e.ctx, netip.MustParsePrefix(ecmpVIP+"/32"))
	must(t, err)
	for _, p := range paths {
		if slices.Contains(p.NextHops, netip.MustParseAddr(n.addr)) {
			return p
		}
	}
	return peers.Attributes{}
}

// TestBGPECMP: both nodes announce the address of a Service with externalTrafficPolicy Local
// that has an endpoint on each; FRR with zebra installs an ECMP route over the two, and a
// client behind the router reaches the Service through both nodes, each node serving its own
// endpoint (DNAT only, so the reply leaves through the node that translated the request).
// When node-a's endpoint stops being ready, node-a withdraws and every connection goes
// through node-b, none failing once the router's route has only node-b.
func TestBGPECMP(t *testing.T) {
	e := newECMPLab(t, false)
	out, err := e.router.Exec(e.ctx, "ip", "route", "show", ecmpVIP)
	must(t, err)
	t.Logf("router: ip route show %s:\n%s", ecmpVIP, out)

	c := traffic.NewClient(e.client)
	addr := ecmpVIP + ":80"
	r := c.Spread("tcp", addr, 400, 8)
	t.Logf("400 connections through the router: %v", r)
	if r.Failed != 0 || len(r.ByServer) != 2 || r.MaxDeviation(2) > 0.25 {
		t.Fatalf("through the ECMP route: %v; want every connection answered, by be-a and be-b about evenly", r)
	}

	// node-a's endpoint stops being ready: node-a withdraws, the router's route narrows to
	// node-b, and node-b's endpoint takes every connection.
	start := time.Now()
	ecmpConfig(t, e.config, false, false)
	narrowed := e.waitNextHops(t, e.both[1:])
	t.Logf("router's route down to node-b %v after node-a's endpoint stopped being ready", narrowed.Sub(start).Round(time.Millisecond))
	r = c.Spread("tcp", addr, 200, 8)
	if r.Failed != 0 || len(r.ByServer) != 1 || r.ByServer["be-b"] != 200 {
		t.Fatalf("after node-a withdrew: %v; want every connection answered by be-b", r)
	}
}

// TestBGPGracefulRestartTraffic: node-a's agent is killed (SIGKILL) and started again while a
// client keeps opening connections through the router. With graceful restart FRR keeps
// node-a's route, stale, in the kernel; the datapath, pinned, keeps serving; so no connection
// fails. The agent back refreshes the route.
func TestBGPGracefulRestartTraffic(t *testing.T) {
	e := newECMPLab(t, true)
	a := e.nodes[0]
	prefix := netip.MustParsePrefix(ecmpVIP + "/32")
	stream := traffic.NewClient(e.client).Stream("tcp", ecmpVIP+":80", 4)
	time.Sleep(500 * time.Millisecond)
	must(t, syscall.Kill(a.agent.PID, syscall.SIGKILL))
	<-a.agent.Done()
	waitFor(t, "FRR to keep node-a's route, stale", func() bool { return e.pathOf(t, a).Stale })
	time.Sleep(2 * time.Second) // traffic through node-a, its agent gone
	if hops, err := e.frr.KernelNextHops(e.ctx, prefix); err != nil || !slices.Equal(hops, e.both) {
		t.Fatalf("router's route during the restart: via %v (%v), want still via both nodes", hops, err)
	}
	a.agent = startAgent(t, a.ns, a.name, a.dir, e.config)
	waitFor(t, "node-a's route refreshed", func() bool { p := e.pathOf(t, a); return len(p.NextHops) > 0 && !p.Stale })
	time.Sleep(500 * time.Millisecond)
	r := stream.Stop()
	t.Logf("connections during kill, restart and refresh: %v", r)
	if r.Failed != 0 || r.ByServer["be-a"] == 0 || r.ByServer["be-b"] == 0 {
		t.Fatalf("through the restart: %v; want no failure, both nodes serving", r)
	}
}
