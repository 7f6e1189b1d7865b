// Command demo is `make demo`: it builds a lab of network namespaces on this kernel — a
// router running FRR (zebra and bgpd), a client behind it, two Kubernetes "nodes" on a LAN
// and two backend "pods" on each node — starts sluice-agent in standalone mode on both nodes
// with examples/quickstart.yaml and its eBPF datapath on the nodes' eth0, waits for the
// router to learn the Services' addresses over BGP as ECMP routes via both nodes, sends the
// client's connections to them and shows which pod answered them, says honestly
// what runs today and what does not yet, and removes everything again (also on Ctrl-C or
// failure).
//
//	go run ./test/demo -agent bin/sluice-agent -sluicectl bin/sluicectl -config examples/quickstart.yaml
//
// It needs root (in group frrvty, for zebra), iproute2, ping, FRR (/usr/lib/frr/bgpd and
// zebra, vtysh) and a kernel with XDP and TCX
// (6.6 or later).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sluice-lb/sluice/test/lab"
	"github.com/sluice-lb/sluice/test/peers"
)

// options are the demo's inputs.
type options struct {
	Agent     string // sluice-agent binary
	Sluicectl string // sluicectl binary
	Config    string // the standalone configuration the agents read (copied)
	TempDir   string // where the demo makes its work directory; "" for the system default
}

func main() {
	var opts options
	flag.StringVar(&opts.Agent, "agent", "bin/sluice-agent", "the sluice-agent binary")
	flag.StringVar(&opts.Sluicectl, "sluicectl", "bin/sluicectl", "the sluicectl binary")
	flag.StringVar(&opts.Config, "config", "examples/quickstart.yaml", "the configuration both agents read")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "demo: unexpected arguments %q\n", flag.Args())
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, opts, os.Stdout)
	interrupted := ctx.Err() != nil
	stop()
	switch {
	case err == nil:
	case interrupted:
		fmt.Fprintf(os.Stderr, "demo: interrupted: %s\n", strings.TrimRight(err.Error(), "\n"))
		os.Exit(130)
	default:
		fmt.Fprintf(os.Stderr, "\ndemo: FAILED: %s\n", strings.TrimRight(err.Error(), "\n"))
		os.Exit(1)
	}
}

// demo is one run: its output, its work directory and what it started, for teardown.
type demo struct {
	opts   options
	out    io.Writer
	dir    string // work directory: config copy, FRR and per-node directories
	config string // the copy of opts.Config the agents read

	lab            *lab.Lab
	router, client *lab.Namespace
	nodes          []*node
	frr            *peers.FRR
	spreads        []spread // what the client saw, per Service address
	lanClient      *lab.Namespace
	lan            *lanResult  // what the LAN client saw through the failover
	kill           *killResult // what the client saw while an agent was killed
}

// run runs the demo's steps in order, stopping at the first failure or when ctx ends, and
// always tears down what it started.
func run(ctx context.Context, opts options, out io.Writer) (err error) {
	d := &demo{opts: opts, out: out, nodes: newNodes()}
	fmt.Fprintln(out, "Sluice demo: two node agents with their pods, a BGP router and a client, in network namespaces")
	fmt.Fprintln(out, strings.Repeat("=", 79))
	fmt.Fprint(out, topology)
	if err := d.prepare(); err != nil {
		return fmt.Errorf("preparing: %w", err)
	}
	defer func() { err = errors.Join(err, d.teardown()) }()

	steps := []struct {
		title string
		fn    func(context.Context) error
	}{
		{"Build the lab", d.buildLab},
		{"Prove the lab: the client pings both nodes, node-1 pings every pod", d.pingLab},
		{"Start the router: FRR zebra and bgpd, AS 64512", d.startFRR},
		{"Start sluice-agent on both nodes, in standalone mode, datapath on eth0", d.startAgents},
		{"The router learns the Service addresses over BGP: ECMP routes via both nodes", d.learnRoutes},
		{"The client connects to the Services; which pod answered?", d.sendTraffic},
		{"A client on the nodes' LAN finds demo/lan by ARP; its owner's link goes down", d.l2Failover},
		{"Ask node-1's agent: sluicectl status, datapath metrics", d.showStatus},
		{"node-1's agent is killed and started again; the client keeps connecting", d.killAgent},
		{"What runs today, and what is not there yet", d.summary},
	}
	began := time.Now()
	var took []time.Duration
	defer func() {
		if err == nil {
			d.timeline(steps[:len(took)], took, time.Since(began))
		}
	}()
	for i, s := range steps {
		fmt.Fprintf(out, "\nStep %d/%d: %s\n", i+1, len(steps), s.title)
		start := time.Now()
		err := s.fn(ctx)
		took = append(took, time.Since(start))
		if ctx.Err() != nil {
			// The step's error, if any, is only the interruption.
			fmt.Fprintln(out, "\ndemo: interrupted, cleaning up")
			return fmt.Errorf("during step %d/%d (%s)", i+1, len(steps), s.title)
		}
		if err != nil {
			return fmt.Errorf("step %d/%d (%s): %w", i+1, len(steps), s.title, err)
		}
	}
	return nil
}

// timeline prints how long each step took.
func (d *demo) timeline(steps []struct {
	title string
	fn    func(context.Context) error
}, took []time.Duration, total time.Duration) {
	fmt.Fprintf(d.out, "\nTimeline\n")
	for i, s := range steps {
		fmt.Fprintf(d.out, "  %8s  %d. %s\n", took[i].Round(time.Millisecond), i+1, s.title)
	}
	fmt.Fprintf(d.out, "  %8s  in all\n", total.Round(time.Millisecond))
}

const topology = `
                  client     198.18.0.2, 2001:db8:2::2
                     |       198.18.0.0/24, 2001:db8:2::/64
                  router     198.51.100.1, 2001:db8:1::1      AS 64512, FRR zebra + bgpd
                     |       node LAN 198.51.100.0/24, 2001:db8:1::/64 (a bridge)
                     +------ lan-client 198.51.100.50              finds demo/lan by ARP
           +---------+---------+
        node-1              node-2                            AS 64513, sluice-agent:
     198.51.100.11       198.51.100.12                        XDP and TCX on eth0
     2001:db8:1::11      2001:db8:1::12
           |                   |                              pod bridges
     10.244.1.0/24       10.244.2.0/24
   2001:db8:244:1::/64 2001:db8:244:2::/64
       |       |           |       |
    pod-1a  pod-1b      pod-2a  pod-2b                        each answers with its name on :8080
     .1.2    .1.3        .2.2    .2.3

  Services (examples/quickstart.yaml), each with the four pods as backends and
  externalTrafficPolicy Local (a node sends what it receives to its own pods):
    demo/web     203.0.113.1:80, [2001:db8:100::1]:80   from pool quickstart (the agents' LB-IPAM)
    demo/legacy  203.0.113.10:8080                      MetalLB annotation, as MetalLB users write it
    demo/lan     198.51.100.100:80                      pool lan, on the nodes' LAN: answered by ARP
`

// prepare checks the inputs and makes the work directory with a copy of the configuration.
func (d *demo) prepare() error {
	for _, p := range []*string{&d.opts.Agent, &d.opts.Sluicectl, &d.opts.Config} {
		abs, err := filepath.Abs(*p)
		if err != nil {
			return err
		}
		*p = abs
	}
	for _, bin := range []string{d.opts.Agent, d.opts.Sluicectl} {
		if fi, err := os.Stat(bin); err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
			return fmt.Errorf("%s is not an executable (build it first: go build -o bin/ ./cmd/...)", bin)
		}
	}
	for _, cmd := range []string{"ip", "ping", "arping", peers.FRRBgpd, peers.FRRZebra, "vtysh"} {
		if _, err := exec.LookPath(cmd); err != nil {
			return fmt.Errorf("%s is needed (apt-get install iproute2 iputils-ping frr): %w", cmd, err)
		}
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("the demo needs root for network namespaces (euid is %d)", os.Geteuid())
	}
	config, err := os.ReadFile(d.opts.Config)
	if err != nil {
		return err
	}
	if d.dir, err = os.MkdirTemp(d.opts.TempDir, "sluice-demo-"); err != nil {
		return err
	}
	d.config = filepath.Join(d.dir, filepath.Base(d.opts.Config))
	if err := os.WriteFile(d.config, config, 0o644); err != nil {
		return errors.Join(err, os.RemoveAll(d.dir))
	}
	return nil
}

// teardown stops the agents (each must exit 0 on SIGTERM), FRR and the lab, and removes
// the work directory. It reports every failure.
func (d *demo) teardown() error {
	fmt.Fprintln(d.out, "\nTeardown")
	var errs []error
	for _, n := range d.nodes {
		if err := n.stop(); err != nil {
			errs = append(errs, err)
			fmt.Fprintf(d.out, "  %s\n", firstLine(err))
		} else if n.exited {
			fmt.Fprintf(d.out, "  %s: sluice-agent had already exited (%v)\n", n.name, n.agent.Err())
		} else if n.agent != nil {
			fmt.Fprintf(d.out, "  %s: sluice-agent stopped by SIGTERM, exit status 0\n", n.name)
		}
	}
	if d.frr != nil {
		if err := d.frr.Stop(); err != nil {
			errs = append(errs, err)
			fmt.Fprintf(d.out, "  router: %v\n", err)
		} else {
			fmt.Fprintln(d.out, "  router: FRR bgpd and zebra stopped")
		}
	}
	servers := 0
	for _, p := range d.allPods() {
		if p.server == nil {
			continue
		}
		if err := p.server.Close(); err != nil {
			errs = append(errs, fmt.Errorf("%s: closing its server: %w", p.name, err))
			fmt.Fprintf(d.out, "  %s: closing its server: %v\n", p.name, err)
		} else {
			servers++
		}
	}
	if servers > 0 {
		fmt.Fprintf(d.out, "  pods: %d servers closed\n", servers)
	}
	if d.lab != nil {
		if err := d.lab.Close(); err != nil {
			errs = append(errs, fmt.Errorf("closing the lab: %w", err))
			fmt.Fprintf(d.out, "  lab: closing: %v\n", err)
		} else {
			fmt.Fprintf(d.out, "  lab: namespaces %s* and their links removed\n", d.lab.Prefix())
		}
	}
	// After the lab: the pinned program links and maps go with the bpffs, once the
	// devices they were attached to are gone.
	for _, n := range d.nodes {
		if !n.bpffsMounted {
			continue
		}
		if err := unix.Unmount(n.bpffs, unix.MNT_DETACH); err != nil {
			errs = append(errs, fmt.Errorf("%s: unmounting the bpffs %s: %w", n.name, n.bpffs, err))
			fmt.Fprintf(d.out, "  %s: unmounting the bpffs %s: %v\n", n.name, n.bpffs, err)
		} else {
			n.bpffsMounted = false
			fmt.Fprintf(d.out, "  %s: bpffs %s unmounted, with the maps and links pinned in it\n", n.name, n.bpffs)
		}
	}
	// RemoveAll would descend into a bpffs still mounted: the work directory stays then.
	mounted := slices.ContainsFunc(d.nodes, func(n *node) bool { return n.bpffsMounted })
	if mounted {
		fmt.Fprintf(d.out, "  work directory %s kept: a bpffs is still mounted in it\n", d.dir)
	} else if err := os.RemoveAll(d.dir); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("cleanup incomplete: %w", err)
	}
	fmt.Fprintln(d.out, "demo: cleaned up")
	return nil
}

// giveUp marks an error of a wait check that no retry can fix.
type giveUp struct{ error }

func (g giveUp) Unwrap() error { return g.error }

// wait polls check every interval until it succeeds, returns a giveUp error, ctx ends or
// timeout passes; the error carries check's last error.
func wait(ctx context.Context, timeout, interval time.Duration, check func() error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		err := check()
		if err == nil {
			return nil
		}
		if g, ok := err.(giveUp); ok {
			return g.error
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %v)", ctx.Err(), err)
		case <-time.After(interval):
		}
	}
}

// firstLine keeps the first line of an error, for one-line messages.
func firstLine(err error) string {
	s, _, _ := strings.Cut(err.Error(), "\n")
	return s
}

// indent prefixes every line of s.
func indent(s, prefix string) string {
	if strings.TrimSpace(s) == "" {
		return prefix + "(no output)\n"
	}
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return prefix + strings.Join(lines, "\n"+prefix) + "\n"
}
