package main

import (
	"context"
	"fmt"
	"net"
	"regexp"
	"time"

	"github.com/sluice-lb/sluice/test/lab"
)

// The lab's addresses (see topology). The host's own 192.0.2.0/24 and fd00::/64 are avoided.
const (
	routerLAN4, routerLAN6 = "198.51.100.1", "2001:db8:1::1"
	routerUp4, routerUp6   = "198.18.0.1", "2001:db8:2::1"
	client4, client6       = "198.18.0.2", "2001:db8:2::2"
	// serviceAddr is what Service demo/legacy of the quickstart asks for (its MetalLB
	// annotation): the address the client should reach once the datapath exists.
	serviceAddr = "203.0.113.10:8080"
)

// node is one lab node running sluice-agent.
type node struct {
	name         string // the Kubernetes node name, also the namespace's short name
	addr4, addr6 string
	ns           *lab.Namespace
	stateDir     string
	bpffs        string
	agent        *lab.Process
	exited       bool // the agent exited before teardown, and that was reported
}

func newNodes() []*node {
	return []*node{
		{name: "node-1", addr4: "198.51.100.11", addr6: "2001:db8:1::11"},
		{name: "node-2", addr4: "198.51.100.12", addr6: "2001:db8:1::12"},
	}
}

// buildLab makes the router with its LAN bridge, the client and the nodes.
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
		if n.ns, err = d.lab.Namespace(n.name); err != nil {
			return err
		}
		if err := d.lab.Connect(
			lab.Endpoint{NS: d.router, Name: "to-" + n.name, Bridge: "lan"},
			lab.Endpoint{NS: n.ns, Name: "eth0", Addrs: []string{n.addr4 + "/24", n.addr6 + "/64"}},
		); err != nil {
			return err
		}
		if err := defaultRoutes(n.ns, routerLAN4, routerLAN6); err != nil {
			return err
		}
		fmt.Fprintf(d.out, "  lab: %s up: eth0 %s/24 %s/64 on the router's bridge, default routes via the router\n", n.name, n.addr4, n.addr6)
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

// pingNodes pings both nodes from the client over IPv4 and IPv6, through the router.
func (d *demo) pingNodes(ctx context.Context) error {
	for _, n := range d.nodes {
		for _, addr := range []string{n.addr4, n.addr6} {
			var out []byte
			// The first packet may wait for ARP/NDP on the way; a few tries absorb that.
			err := wait(ctx, 10*time.Second, 200*time.Millisecond, func() error {
				var err error
				out, err = d.client.Exec(ctx, "ping", "-n", "-c", "1", "-W", "2", addr)
				return err
			})
			if err != nil {
				fmt.Fprintf(d.out, "  client -> %-7s %-15s FAILED\n", n.name, addr)
				return fmt.Errorf("ping from the client to %s (%s): %w", n.name, addr, err)
			}
			rtt := "?"
			if m := pingTime.FindSubmatch(out); m != nil {
				rtt = string(m[1])
			}
			fmt.Fprintf(d.out, "  client -> %-7s %-15s ok  (round trip %s)\n", n.name, addr, rtt)
		}
	}
	return nil
}

// probeService tries a TCP connection from the client to the quickstart's Service address
// and describes what happened.
func (d *demo) probeService() string {
	var result string
	err := d.client.Do(func() error {
		conn, err := net.DialTimeout("tcp", serviceAddr, 2*time.Second)
		if err != nil {
			return err
		}
		conn.Close()
		return nil
	})
	if err != nil {
		result = fmt.Sprintf("client -> %s fails: %v", serviceAddr, err)
	} else {
		result = fmt.Sprintf("client -> %s connects", serviceAddr)
	}
	return result
}
