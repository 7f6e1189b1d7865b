package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/sluice-lb/sluice/test/traffic"
)

// target is a Service address of the quickstart the client sends requests to.
type target struct {
	service string // namespace/name
	addr    string // host:port
	how     string // where the address comes from
	count   int    // connections to make
}

// targets are the quickstart's Service addresses; every one has the four pods as backends.
var targets = []target{
	{"demo/web", "203.0.113.1:80", "given by LB-IPAM from pool quickstart", 300},
	{"demo/web", "[2001:db8:100::1]:80", "given by LB-IPAM from pool quickstart", 100},
	{"demo/legacy", "203.0.113.10:8080", "its MetalLB annotation, unchanged", 200},
}

// parallel is how many connections the client has open at a time.
const parallel = 8

// spread is what the client saw for one target.
type spread struct {
	target
	result traffic.Result
}

// sendTraffic opens many TCP connections from the client to each Service address, each
// sending a line that the pod answering echoes with its name, and shows the tally per pod.
func (d *demo) sendTraffic(ctx context.Context) error {
	client := traffic.NewClient(d.client)
	// The first answer also absorbs ARP/NDP on the way.
	first := targets[0]
	start := time.Now()
	var answeredBy string
	tries := 0
	err := wait(ctx, 10*time.Second, 100*time.Millisecond, func() error {
		var err error
		tries++
		answeredBy, err = client.Ask("tcp", first.addr)
		return err
	})
	if err != nil {
		return fmt.Errorf("client -> %s: no answer: %w", first.addr, err)
	}
	fmt.Fprintf(d.out, "  client -> %s: first answer from %s, after %v (%s)\n",
		first.addr, answeredBy, time.Since(start).Round(10*time.Microsecond), plural(tries, "attempt"))

	var problems []error
	for _, t := range targets {
		if err := ctx.Err(); err != nil {
			return err
		}
		start := time.Now()
		r, err := spreadUntil(ctx, client, t.addr, t.count)
		if err != nil {
			return err
		}
		took := time.Since(start)
		d.spreads = append(d.spreads, spread{t, r})
		fmt.Fprintf(d.out, "\n  client -> %s  Service %s (address from %s)\n", t.addr, t.service, t.how)
		fmt.Fprintf(d.out, "  %d TCP connections, %d at a time, in %v; each answered by:\n", t.count, parallel, took.Round(time.Millisecond))
		d.tally(t, r)
		if err := d.check(t, r); err != nil {
			problems = append(problems, err)
		}
	}
	return errors.Join(problems...)
}

// spreadUntil is client.Spread over TCP in rounds, so that an interruption does not wait for
// every connection (each may take the client's timeout when nothing answers).
func spreadUntil(ctx context.Context, client *traffic.Client, addr string, count int) (traffic.Result, error) {
	total := traffic.Result{ByServer: map[string]int{}}
	for done := 0; done < count; {
		if err := ctx.Err(); err != nil {
			return total, err
		}
		n := min(count-done, 5*parallel)
		r := client.Spread("tcp", addr, n, parallel)
		for name, k := range r.ByServer {
			total.ByServer[name] += k
		}
		total.Failed += r.Failed
		if total.FirstErr == nil {
			total.FirstErr = r.FirstErr
		}
		done += n
	}
	return total, nil
}

// tally prints one line per pod (and per unexpected answerer) with a bar of its share of
// the connections, showing the pod's address of the target's family.
func (d *demo) tally(t target, r traffic.Result) {
	total := r.OK() + r.Failed
	line := func(name, where string, n int) {
		share := 0.0
		if total > 0 {
			share = float64(n) / float64(total)
		}
		bar := strings.Repeat("#", int(math.Round(share*80)))
		fmt.Fprintln(d.out, strings.TrimRight(fmt.Sprintf("    %-7s %-35s %4d  %5.1f %%  %s", name, where, n, 100*share, bar), " "))
	}
	ipv6 := strings.HasPrefix(t.addr, "[")
	known := map[string]bool{}
	for _, p := range d.allPods() {
		known[p.name] = true
		addr := p.addr4
		if ipv6 {
			addr = "[" + p.addr6 + "]"
		}
		line(p.name, fmt.Sprintf("on %s  %s:%d", p.node.name, addr, podPort), r.ByServer[p.name])
	}
	var others []string
	for name := range r.ByServer {
		if !known[name] {
			others = append(others, name)
		}
	}
	slices.Sort(others)
	for _, name := range others {
		line(name, "(not a pod of this lab)", r.ByServer[name])
	}
	line("failed", "", r.Failed)
	if r.FirstErr != nil {
		fmt.Fprintf(d.out, "    first failure: %v\n", r.FirstErr)
	}
}

// check says what is wrong with a spread: failed requests, or a pod that answered none.
func (d *demo) check(t target, r traffic.Result) error {
	var missing []string
	for _, p := range d.allPods() {
		if r.ByServer[p.name] == 0 {
			missing = append(missing, p.name)
		}
	}
	switch {
	case r.Failed > 0:
		return fmt.Errorf("client -> %s: %d of %d connections failed (first: %v)", t.addr, r.Failed, t.count, r.FirstErr)
	case len(missing) > 0:
		return fmt.Errorf("client -> %s: %s answered none of %d connections", t.addr, strings.Join(missing, ", "), t.count)
	case r.OK() != t.count:
		return fmt.Errorf("client -> %s: %d answers to %d connections", t.addr, r.OK(), t.count)
	}
	return nil
}

// evidence sums up the spreads in a line each, for the summary.
func (d *demo) evidence() []string {
	var lines []string
	for _, s := range d.spreads {
		answered := 0
		for _, p := range d.allPods() {
			if s.result.ByServer[p.name] > 0 {
				answered++
			}
		}
		lines = append(lines, fmt.Sprintf("client -> %s: %d of %d connections answered by %d of %d pods, %d failed",
			s.addr, s.result.OK(), s.count, answered, len(d.allPods()), s.result.Failed))
	}
	return lines
}
