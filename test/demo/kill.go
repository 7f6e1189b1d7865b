package main

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/sluice-lb/sluice/test/traffic"
)

// killResult is what the client saw while node-1's agent was killed and restarted.
type killResult struct {
	node                string
	withdrawn, rejoined time.Duration // until the router's route left the node, and came back
	answered, sent      int
	gap                 time.Duration
}

// killAgent kills node-1's agent (SIGKILL: no goodbye) while the client opens a connection
// to demo/web every 10 ms through the router. The datapath is pinned, so node-1 keeps
// serving what the router still sends it; the router drops node-1's path when the BGP
// session dies; the agent started again adopts the pinned state and announces again.
func (d *demo) killAgent(ctx context.Context) error {
	n, vip := d.entry(), targets[0]
	prefix := netip.MustParsePrefix("203.0.113.1/32")
	client := traffic.NewClient(d.client)
	client.Timeout = 500 * time.Millisecond
	probe := client.Probe("tcp", vip.addr, 10*time.Millisecond)
	time.Sleep(time.Second)
	fmt.Fprintf(d.out, "  client: a new connection to %s (%s) every 10 ms; now %s's agent (pid %d) gets SIGKILL\n", vip.addr, vip.service, n.name, n.agent.PID)
	killed := time.Now()
	if err := syscall.Kill(n.agent.PID, syscall.SIGKILL); err != nil {
		probe.Stop()
		return err
	}
	<-n.agent.Done()
	n.exited = true
	others := func(hops []netip.Addr) bool {
		return len(hops) > 0 && !slices.Contains(hops, netip.MustParseAddr(n.addr4))
	}
	both := func(hops []netip.Addr) bool { return len(hops) == len(d.nodes) }
	var hops []netip.Addr
	err := wait(ctx, 15*time.Second, 20*time.Millisecond, func() error {
		var err error
		if hops, err = d.frr.KernelNextHops(ctx, prefix); err != nil || !others(hops) {
			return fmt.Errorf("the router still routes %s via %v (%v)", prefix, hops, err)
		}
		return nil
	})
	if err != nil {
		probe.Stop()
		return err
	}
	withdrawn := time.Since(killed)
	fmt.Fprintf(d.out, "  router: %s via %v only, %v after the kill (the BGP session closed with the process)\n", prefix, hops, withdrawn.Round(time.Millisecond))
	time.Sleep(time.Second)
	restarted := time.Now()
	if err := d.startAgent(ctx, n, true); err != nil {
		probe.Stop()
		return err
	}
	err = wait(ctx, 15*time.Second, 20*time.Millisecond, func() error {
		var err error
		if hops, err = d.frr.KernelNextHops(ctx, prefix); err != nil || !both(hops) {
			return fmt.Errorf("the router routes %s via %v (%v)", prefix, hops, err)
		}
		return nil
	})
	rejoined := time.Since(restarted)
	time.Sleep(500 * time.Millisecond)
	res := probe.Stop()
	if err != nil {
		return err
	}
	fmt.Fprintf(d.out, "  %s: sluice-agent started again (pid %d); the router routes %s via %v again %v later\n",
		n.name, n.agent.PID, prefix, hops, rejoined.Round(time.Millisecond))
	if !strings.Contains(n.agent.Output(), "datapath programmed") {
		fmt.Fprintf(d.out, "  %s: it found its maps pinned as it left them, and had nothing to rewrite\n", n.name)
	}
	byServer := map[string]int{}
	for _, a := range res.Answers {
		byServer[a.Server]++
	}
	d.kill = &killResult{node: n.name, withdrawn: withdrawn, rejoined: rejoined, answered: len(res.Answers), sent: res.Sent, gap: res.MaxGap()}
	fmt.Fprintf(d.out, "  client: %d of %d connections answered (%s); the longest gap between answers: %v\n",
		len(res.Answers), res.Sent, tally(byServer), res.MaxGap().Round(time.Millisecond))
	if len(res.Answers) < res.Sent*95/100 {
		return fmt.Errorf("only %d of %d connections answered while %s's agent was down", len(res.Answers), res.Sent, n.name)
	}
	return nil
}
