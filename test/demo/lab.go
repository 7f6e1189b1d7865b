package main

import (
	"context"
	"fmt"
	"net/netip"
	"regexp"
	"time"

	"github.com/sluice-lb/sluice/test/lab"
	"github.com/sluice-lb/sluice/test/traffic"
)

// The lab's addresses (see topology). The host's own 192.0.2.0/24 and fd00::/64 are avoided.
const (
	routerLAN4, routerLAN6 = "198.51.100.1", "2001:db8:1::1"
	routerUp4, routerUp6   = "198.18.0.1", "2001:db8:2::1"
	client4, client6       = "198.18.0.2", "2001:db8:2::2"
	// The quickstart's pool, which the router sends to the entry node (see routeServices).
	pool4, pool6 = "203.0.113.0/28", "2001:db8:100::/120"
	// podPort is where every pod answers, the Services' targetPort.
	podPort = 8080
	// returnTable is the routing table of the policy routes that send the replies of the
	// other nodes' pods back through the entry node.
	returnTable = "100"
)

// node is one lab node running sluice-agent, with its pods.
type node struct {
	name         string // the Kubernetes node name, also the namespace's short name
	addr4, addr6 string
	// The node's pod subnets; the node is .1 / ::1 on its bridge "pods".
	podNet4, podNet6 string
	pods             []*pod
	ns               *lab.Namespace
	stateDir         string
	bpffs            string
	bpffsMounted     bool // the demo mounted a bpffs on bpffs (teardown unmounts it)
	agent            *lab.Process
	exited           bool // the agent exited before teardown, and that was reported
}

// pod is a backend "pod": a namespace on its node's pod bridge running a server that
// answers with the pod's name.
type pod struct {
	name         string // also the namespace's short name and the node's interface to it
	addr4, addr6 string
	node         *node
	ns           *lab.Namespace
	server       *traffic.Server
}

func newNodes() []*node {
	nodes := []*node{
		{name: "node-1", addr4: "198.51.100.11", addr6: "2001:db8:1::11", podNet4: "10.244.1.0/24", podNet6: "2001:db8:244:1::/64"},
		{name: "node-2", addr4: "198.51.100.12", addr6: "2001:db8:1::12", podNet4: "10.244.2.0/24", podNet6: "2001:db8:244:2::/64"},
	}
	for i, n := range nodes {
		for j, suffix := range []string{"a", "b"} {
			n.pods = append(n.pods, &pod{
				name:  fmt.Sprintf("pod-%d%s", i+1, suffix),
				addr4: fmt.Sprintf("10.244.%d.%d", i+1, j+2),
				addr6: fmt.Sprintf("2001:db8:244:%d::%d", i+1, j+2),
				node:  n,
			})
		}
	}
	return nodes
}

// podGateways are the node's addresses on its pod bridge: the first of each pod subnet.
func (n *node) podGateways() (string, string) {
	first := func(cidr string) string { return netip.MustParsePrefix(cidr).Addr().Next().String() }
	return first(n.podNet4), first(n.podNet6)
}

// allPods lists every pod of every node.
func (d *demo) allPods() []*pod {
	var pods []*pod
	for _, n := range d.nodes {
		pods = append(pods, n.pods...)
	}
	return pods
}

// entry is the node the router sends the Service addresses to.
func (d *demo) entry() *node { return d.nodes[0] }

// buildLab makes the router with its LAN bridge, the client, the nodes and their pods.
func (d *demo) buildLab(ctx context.Context) error {
	var err error
	if d.lab, err = lab.New("demo"); err != nil {
		return err
	}
	fmt.Fprintf(d.out, "  lab: network namespaces are named %s<name>\n", d.lab.Prefix())
	if d.router, err = d.lab.Namespace("router"); err != nil {
		return err
	}
	if err := d.router.AddBridge("lan", routerLAN4+"/24", routerLAN6+"/64"); err != nil {
		return err
	}
	if err := d.router.EnableForwarding(); err != nil {
		return err
	}
	fmt.Fprintf(d.out, "  lab: router up: bridge lan %s/24 %s/64, IPv4 and IPv6 forwarding on\n", routerLAN4, routerLAN6)

	if d.client, err = d.lab.Namespace("client"); err != nil {
		return err
	}
	if err := d.lab.Connect(
		lab.Endpoint{NS: d.router, Name: "to-client", Addrs: []string{routerUp4 + "/24", routerUp6 + "/64"}},
		lab.Endpoint{NS: d.client, Name: "eth0", Addrs: []string{client4 + "/24", client6 + "/64"}},
	); err != nil {
		return err
	}
	if err := defaultRoutes(d.client, routerUp4, routerUp6); err != nil {
		return err
	}
	fmt.Fprintf(d.out, "  lab: client up: eth0 %s/24 %s/64, default routes via the router\n", client4, client6)

	for _, n := range d.nodes {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := d.buildNode(n); err != nil {
			return err
		}
	}
	return d.podNetwork(ctx)
}

// buildNode makes a node on the router's bridge, its pod bridge and its pods, each running
// a server.
func (d *demo) buildNode(n *node) error {
	var err error
	if n.ns, err = d.lab.Namespace(n.name); err != nil {
		return err
	}
	if err := d.lab.Connect(
		lab.Endpoint{NS: d.router, Name: "to-" + n.name, Bridge: "lan"},
		lab.Endpoint{NS: n.ns, Name: "eth0", Addrs: []string{n.addr4 + "/24", n.addr6 + "/64"}},
	); err != nil {
		return err
	}
	// The node's XDP answers some packets itself (a RST for a Service without backends):
	// the router's end of the veth must take them, as a wire would.
	if err := d.router.ReceiveXDPFrames("to-" + n.name); err != nil {
		return err
	}
	if err := defaultRoutes(n.ns, routerLAN4, routerLAN6); err != nil {
		return err
	}
	if err := n.ns.EnableForwarding(); err != nil {
		return err
	}
	gw4, gw6 := n.podGateways()
	if err := n.ns.AddBridge("pods", gw4+"/24", gw6+"/64"); err != nil {
		return err
	}
	fmt.Fprintf(d.out, "  lab: %s up: eth0 %s/24 %s/64 on the router's bridge, default routes via the router,\n", n.name, n.addr4, n.addr6)
	fmt.Fprintf(d.out, "       forwarding on, bridge pods %s/24 %s/64\n", gw4, gw6)
	for _, p := range n.pods {
		if p.ns, err = d.lab.Namespace(p.name); err != nil {
			return err
		}
		if err := d.lab.Connect(
			lab.Endpoint{NS: n.ns, Name: p.name, Bridge: "pods"},
			lab.Endpoint{NS: p.ns, Name: "eth0", Addrs: []string{p.addr4 + "/24", p.addr6 + "/64"}},
		); err != nil {
			return err
		}
		if err := defaultRoutes(p.ns, gw4, gw6); err != nil {
			return err
		}
		if p.server, err = traffic.Serve(p.ns, p.name, podPort); err != nil {
			return err
		}
		fmt.Fprintf(d.out, "  lab: %s up on %s: eth0 %s %s, default routes via %s; answers with its name on port %d\n",
			p.name, n.name, p.addr4, p.addr6, n.name, podPort)
	}
	return nil
}

// podNetwork routes each node's pod subnets to the other nodes, as a CNI's routes would, and
// sends the replies of the other nodes' pods back through the entry node: the datapath
// rewrites only the destination of a request (no SNAT), so the reply must leave through the
// node that translated the request, whose egress program rewrites its source back.
func (d *demo) podNetwork(ctx context.Context) error {
	entry := d.entry()
	for _, n := range d.nodes {
		for _, other := range d.nodes {
			if other == n {
				continue
			}
			if err := n.ns.AddRoute(other.podNet4, other.addr4); err != nil {
				return err
			}
			if err := n.ns.AddRoute(other.podNet6, other.addr6); err != nil {
				return err
			}
		}
	}
	fmt.Fprintln(d.out, "  lab: pod network: each node routes the other node's pod subnets via that node")
	for _, n := range d.nodes {
		if n == entry {
			continue
		}
		for _, cmd := range [][]string{
			{"ip", "-4", "rule", "add", "from", n.podNet4, "lookup", returnTable},
			{"ip", "-4", "route", "add", "default", "via", entry.addr4, "table", returnTable},
			{"ip", "-6", "rule", "add", "from", n.podNet6, "lookup", returnTable},
			{"ip", "-6", "route", "add", "default", "via", entry.addr6, "table", returnTable},
		} {
			if _, err := n.ns.Exec(ctx, cmd[0], cmd[1:]...); err != nil {
				return err
			}
		}
		fmt.Fprintf(d.out, "  lab: %s routes what its pods send out through %s (policy routes from %s, %s):\n",
			n.name, entry.name, n.podNet4, n.podNet6)
		fmt.Fprintf(d.out, "       %s translates every request to a Service, and the datapath rewrites only the destination\n", entry.name)
		fmt.Fprintln(d.out, "       (no SNAT), so a reply must leave through the node that translated the request")
	}
	return nil
}

func defaultRoutes(ns *lab.Namespace, gw4, gw6 string) error {
	if err := ns.AddRoute("default", gw4); err != nil {
		return err
	}
	return ns.AddRoute("default", gw6)
}

var pingTime = regexp.MustCompile(`time=([0-9.]+ ?ms)`)

// ping pings addr from ns once, with a few tries for ARP/NDP on the way, and returns the
// round trip time.
func ping(ctx context.Context, ns *lab.Namespace, addr string) (string, error) {
	var out []byte
	err := wait(ctx, 10*time.Second, 200*time.Millisecond, func() error {
		var err error
		out, err = ns.Exec(ctx, "ping", "-n", "-c", "1", "-W", "2", addr)
		return err
	})
	if err != nil {
		return "", err
	}
	if m := pingTime.FindSubmatch(out); m != nil {
		return string(m[1]), nil
	}
	return "?", nil
}

// pingLab pings both nodes from the client over IPv4 and IPv6, through the router, and
// every pod from the entry node, over the pod network.
func (d *demo) pingLab(ctx context.Context) error {
	for _, n := range d.nodes {
		for _, addr := range []string{n.addr4, n.addr6} {
			rtt, err := ping(ctx, d.client, addr)
			if err != nil {
				fmt.Fprintf(d.out, "  client -> %-7s %-19s FAILED\n", n.name, addr)
				return fmt.Errorf("ping from the client to %s (%s): %w", n.name, addr, err)
			}
			fmt.Fprintf(d.out, "  client -> %-7s %-19s ok  (round trip %s)\n", n.name, addr, rtt)
		}
	}
	entry := d.entry()
	for _, p := range d.allPods() {
		for _, addr := range []string{p.addr4, p.addr6} {
			rtt, err := ping(ctx, entry.ns, addr)
			if err != nil {
				fmt.Fprintf(d.out, "  %s -> %-7s %-19s FAILED\n", entry.name, p.name, addr)
				return fmt.Errorf("ping from %s to %s (%s): %w", entry.name, p.name, addr, err)
			}
			fmt.Fprintf(d.out, "  %s -> %-7s %-19s ok  (round trip %s)\n", entry.name, p.name, addr, rtt)
		}
	}
	return nil
}

// routeServices gives the router static routes for the pool via the entry node: what the
// nodes' BGP announcements will do once BGP is implemented.
func (d *demo) routeServices(_ context.Context) error {
	entry := d.entry()
	if err := d.router.AddRoute(pool4, entry.addr4); err != nil {
		return err
	}
	if err := d.router.AddRoute(pool6, entry.addr6); err != nil {
		return err
	}
	fmt.Fprintf(d.out, "  router: ip route add %s via %s (%s)\n", pool4, entry.addr4, entry.name)
	fmt.Fprintf(d.out, "  router: ip route add %s via %s (%s)\n", pool6, entry.addr6, entry.name)
	fmt.Fprintln(d.out, "  a static route on the router, standing in for the BGP announcement that comes later:")
	fmt.Fprintln(d.out, "  the agents do not speak BGP yet, and nothing answers ARP/NDP for the Service addresses")
	return nil
}
