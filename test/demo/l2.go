package main

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/sluice-lb/sluice/internal/localapi"
	"github.com/sluice-lb/sluice/test/lab"
	"github.com/sluice-lb/sluice/test/traffic"
)

// The LAN client and Service demo/lan, whose address the nodes answer for by ARP.
const (
	lanClient4 = "198.51.100.50"
	lanVIP     = "198.51.100.100"
)

// lanResult is what the LAN client saw, for the summary.
type lanResult struct {
	owner, other string
	tookOver     time.Duration
	gap          time.Duration
	answered     int
	sent         int
}

// buildLANClient puts a client on the nodes' LAN, where Service addresses of pool lan are
// found by ARP, not routed.
func (d *demo) buildLANClient() error {
	var err error
	if d.lanClient, err = d.lab.Namespace("lan-client"); err != nil {
		return err
	}
	if err := d.lab.Connect(
		lab.Endpoint{NS: d.router, Name: "to-lan-client", Bridge: "lan"},
		lab.Endpoint{NS: d.lanClient, Name: "eth0", Addrs: []string{lanClient4 + "/24"}},
	); err != nil {
		return err
	}
	fmt.Fprintf(d.out, "  lab: lan-client up: eth0 %s/24 on the router's bridge, the nodes' LAN (no route to the pods)\n", lanClient4)
	return nil
}

// l2Failover: the LAN client reaches demo/lan by ARP — one node answers — and keeps reaching
// it while that node's link goes down and the other takes the address over.
func (d *demo) l2Failover(ctx context.Context) error {
	var owner, other *node
	err := wait(ctx, 15*time.Second, 100*time.Millisecond, func() error {
		st, err := localapi.NewClient(d.entry().stateDir).L2(ctx)
		if err != nil {
			return err
		}
		i := slices.IndexFunc(st.Owners, func(o localapi.L2Owner) bool { return o.Address == lanVIP })
		if len(st.Alive) != len(d.nodes) || i < 0 || st.Owners[i].Owner == "" {
			return fmt.Errorf("%s: no owner of %s yet (hears %v)", d.entry().name, lanVIP, st.Alive)
		}
		for _, n := range d.nodes {
			if n.name == st.Owners[i].Owner {
				owner = n
			} else {
				other = n
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	mac, err := d.mac(ctx, owner)
	if err != nil {
		return err
	}
	fmt.Fprintf(d.out, "  the agents agree: %s (%s) answers ARP for %s (demo/lan, pool lan)\n", owner.name, mac, lanVIP)
	time.Sleep(600 * time.Millisecond) // its announcements are over
	actx, cancel := context.WithTimeout(ctx, 10*time.Second)
	out, _ := d.lanClient.Exec(actx, "arping", "-i", "eth0", "-c", "3", "-W", "0.1", lanVIP)
	cancel()
	replies := 0
	for line := range strings.Lines(string(out)) {
		if strings.Contains(line, "bytes from") {
			replies++
			if !strings.Contains(line, mac) {
				return fmt.Errorf("arping %s: a reply not from %s: %s", lanVIP, owner.name, line)
			}
		}
	}
	fmt.Fprintf(d.out, "  lan-client: arping -c 3 %s: %d replies, every one from %s\n", lanVIP, replies, mac)
	if replies != 3 {
		return fmt.Errorf("arping %s: %d replies, want 3", lanVIP, replies)
	}

	client := traffic.NewClient(d.lanClient)
	client.Timeout = 500 * time.Millisecond
	probe := client.Probe("tcp", lanVIP+":80", 10*time.Millisecond)
	time.Sleep(time.Second)
	fmt.Fprintf(d.out, "  lan-client: a new connection to %s:80 every 10 ms; now %s loses its link, as if it died\n", lanVIP, owner.name)
	failed := time.Now()
	if _, err := owner.ns.Exec(ctx, "ip", "link", "set", "eth0", "down"); err != nil {
		probe.Stop()
		return err
	}
	err = wait(ctx, 10*time.Second, 20*time.Millisecond, func() error {
		st, err := localapi.NewClient(other.stateDir).L2(ctx)
		if err != nil {
			return err
		}
		i := slices.IndexFunc(st.Owners, func(o localapi.L2Owner) bool { return o.Address == lanVIP })
		if i < 0 || st.Owners[i].Owner != other.name || len(st.Owners[i].Interfaces) == 0 {
			return fmt.Errorf("%s has not taken %s over", other.name, lanVIP)
		}
		return nil
	})
	tookOver := time.Since(failed)
	time.Sleep(1500 * time.Millisecond)
	res := probe.Stop()
	if uerr := owner.linkUp(ctx); uerr != nil {
		err = errors.Join(err, uerr)
	}
	if err != nil {
		return err
	}
	byServer := map[string]int{}
	for _, a := range res.Answers {
		byServer[a.Server]++
	}
	d.lan = &lanResult{owner: owner.name, other: other.name, tookOver: tookOver, gap: res.MaxGap(), answered: len(res.Answers), sent: res.Sent}
	fmt.Fprintf(d.out, "  %s took %s over %v after the link went (heartbeats every 100 ms, dead after 350 ms), and announced it\n",
		other.name, lanVIP, tookOver.Round(time.Millisecond))
	fmt.Fprintf(d.out, "  lan-client: %d of %d connections answered (%s); the longest gap between answers: %v\n",
		len(res.Answers), res.Sent, tally(byServer), res.MaxGap().Round(time.Millisecond))
	healed := time.Now()
	err = wait(ctx, 10*time.Second, 20*time.Millisecond, func() error {
		var owners []string
		for _, n := range d.nodes {
			st, err := localapi.NewClient(n.stateDir).L2(ctx)
			if err != nil {
				return err
			}
			i := slices.IndexFunc(st.Owners, func(o localapi.L2Owner) bool { return o.Address == lanVIP })
			if len(st.Alive) != len(d.nodes) || i < 0 || st.Owners[i].Owner == "" {
				return fmt.Errorf("%s hears %v after the link came back", n.name, st.Alive)
			}
			owners = append(owners, st.Owners[i].Owner)
		}
		slices.Sort(owners)
		if len(slices.Compact(owners)) != 1 {
			return fmt.Errorf("the agents do not agree on the owner of %s: %v", lanVIP, owners)
		}
		return nil
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(d.out, "  %s's link is back up: the agents hear each other again and agree on one owner (after %v)\n",
		owner.name, time.Since(healed).Round(time.Millisecond))
	if res.MaxGap() > time.Second {
		return fmt.Errorf("lan-client: a gap of %v, want at most 1s", res.MaxGap())
	}
	return nil
}

// mac is the hardware address of a node's eth0.
func (d *demo) mac(ctx context.Context, n *node) (string, error) {
	out, err := n.ns.Exec(ctx, "cat", "/sys/class/net/eth0/address")
	return strings.TrimSpace(string(out)), err
}

// tally renders answers by server, sorted: "pod-1a 40, pod-1b 38".
func tally(by map[string]int) string {
	var parts []string
	for _, name := range slices.Sorted(maps.Keys(by)) {
		parts = append(parts, fmt.Sprintf("%s %d", name, by[name]))
	}
	return strings.Join(parts, ", ")
}

// linkUp brings n's eth0 back up with what going down took from it: its IPv6 address (the
// kernel drops IPv6 addresses of a link that goes down) and its default routes.
func (n *node) linkUp(ctx context.Context) error {
	for _, cmd := range [][]string{
		{"ip", "link", "set", "eth0", "up"},
		{"ip", "-6", "addr", "replace", n.addr6 + "/64", "dev", "eth0", "nodad"},
		{"ip", "-4", "route", "replace", "default", "via", routerLAN4},
		{"ip", "-6", "route", "replace", "default", "via", routerLAN6},
	} {
		if out, err := n.ns.Exec(ctx, cmd[0], cmd[1:]...); err != nil {
			return fmt.Errorf("%s: %s: %w: %s", n.name, strings.Join(cmd, " "), err, out)
		}
	}
	return nil
}
