package main

import (
	"context"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/sluice-lb/sluice/test/lab"
	"github.com/sluice-lb/sluice/test/traffic"
)

// The lab's addresses (see topology). The host's own 192.0.2.0/24 and fd00::/64 are avoided.
const (
	routerLAN4, routerLAN6 = "198.51.100.1", "2001:db8:1::1"
	routerUp4, routerUp6   = "198.18.0.1", "2001:db8:2::1"
	client4, client6       = "198.18.0.2", "2001:db8:2::2"
	// podPort is where every pod answers, the Services' targetPort.
	podPort = 8080
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

// entry is the node whose agent the demo questions (sluicectl, metrics).
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
	// ECMP hashes flows by ports too: the one client's connections spread over the nodes.
	for _, key := range []string{"net.ipv4.fib_multipath_hash_policy", "net.ipv6.fib_multipath_hash_policy"} {
		if err := d.router.Sysctl(key, "1"); err != nil {
			return err
		}
	}
	fmt.Fprintf(d.out, "  lab: router up: bridge lan %s/24 %s/64, IPv4 and IPv6 forwarding on,\n", routerLAN4, routerLAN6)
	fmt.Fprintln(d.out, "       ECMP routes hash flows by address and port (fib_multipath_hash_policy 1)")

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
	if err := d.buildLANClient(); err != nil {
		return err
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

// podNetwork routes each node's pod subnets to the other nodes, as a CNI's routes would. The
// Services' traffic does not need it (externalTrafficPolicy Local: each node sends what it
// receives to its own pods, whose replies leave through it), the pings do.
func (d *demo) podNetwork(_ context.Context) error {
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

// serviceRoutes are the Service addresses of the quickstart the router must learn.
var serviceRoutes = []netip.Prefix{
	netip.MustParsePrefix("203.0.113.1/32"), netip.MustParsePrefix("2001:db8:100::1/128"), netip.MustParsePrefix("203.0.113.10/32"),
}

// learnRoutes waits until the router's FRR has installed, for every Service address, a
// route over both nodes (ECMP) in the router's kernel, learned from the nodes over BGP, and
// shows them as `ip route` does.
func (d *demo) learnRoutes(ctx context.Context) error {
	start := time.Now()
	for _, prefix := range serviceRoutes {
		var want []netip.Addr
		for _, n := range d.nodes {
			a := n.addr4
			if prefix.Addr().Is6() {
				a = n.addr6
			}
			want = append(want, netip.MustParseAddr(a))
		}
		slices.SortFunc(want, netip.Addr.Compare)
		var got []netip.Addr
		err := wait(ctx, 30*time.Second, 50*time.Millisecond, func() error {
			var err error
			if got, err = d.frr.KernelNextHops(ctx, prefix); err != nil {
				return err
			}
			if !slices.Equal(got, want) {
				return fmt.Errorf("router's route for %s via %v, want via %v", prefix, got, want)
			}
			return nil
		})
		if err != nil {
			return err
		}
		family := "-4"
		if prefix.Addr().Is6() {
			family = "-6"
		}
		out, err := d.router.Exec(ctx, "ip", family, "route", "show", prefix.String())
		if err != nil {
			return err
		}
		fmt.Fprintf(d.out, "  router: $ ip %s route show %s   (installed by FRR from BGP, %v after the agents were ready)\n",
			family, prefix, time.Since(start).Round(time.Millisecond))
		var lines []string
		for line := range strings.Lines(strings.ReplaceAll(string(out), "\t", "  ")) {
			lines = append(lines, strings.TrimRight(line, " \n"))
		}
		fmt.Fprint(d.out, indent(strings.Join(lines, "\n"), "    "))
	}
	fmt.Fprintln(d.out, "  both nodes announce every Service address (each has ready pods of it): the router spreads")
	fmt.Fprintln(d.out, "  the flows over the two (ECMP), and each node sends what it receives to its own pods")
	return nil
}
