// Command sluicectl inspects and checks Sluice: validate configuration files exactly as the
// agent reads them, and show what a running agent understood.
package main

import (
	"cmp"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sluice-lb/sluice/internal/localapi"
	"github.com/sluice-lb/sluice/internal/model"
	"github.com/sluice-lb/sluice/internal/source"
	"github.com/sluice-lb/sluice/internal/version"
	"github.com/sluice-lb/sluice/ipam"
)

const usage = `sluicectl: inspect and check Sluice.

Usage:
  sluicectl validate -f FILE_OR_DIR [-f ...] [-o text|json]   check configuration as the agent reads it
  sluicectl status [--state-dir DIR] [-o text|json]           what the running agent understood
  sluicectl services [--state-dir DIR] [-o text|json]         load balancer addresses and what the datapath has programmed
  sluicectl ipam [--state-dir DIR] [-o text|json]             the addresses the agent gave LoadBalancer Services (standalone)
  sluicectl bgp peers [--state-dir DIR] [-o text|json]        the agent's BGP sessions
  sluicectl bgp routes [--state-dir DIR] [-o text|json]       what the agent announces to each peer
  sluicectl l2 owners [--state-dir DIR] [-o text|json]        which node answers ARP/NDP for each address
  sluicectl bpf conntrack [--state-dir DIR] [-n N] [-o text|json]  the datapath's tracked flows
  sluicectl migrate metallb (-f FILE_OR_DIR | --from-cluster) [--apply]  convert MetalLB configuration (see sluicectl migrate -h)
  sluicectl version                                           print the version

validate exits 1 when anything is rejected or ignored, 2 on usage errors.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "validate":
		return validate(args[1:], stdout, stderr)
	case "status":
		return status(args[1:], stdout, stderr)
	case "services":
		return services(args[1:], stdout, stderr)
	case "ipam":
		return allocations(args[1:], stdout, stderr)
	case "bgp":
		if len(args) > 1 && (args[1] == "peers" || args[1] == "routes") {
			return bgpPeers(args[1], args[2:], stdout, stderr)
		}
		fmt.Fprintf(stderr, "usage: sluicectl bgp peers|routes [--state-dir DIR] [-o text|json]\n")
		return 2
	case "l2":
		if len(args) > 1 && args[1] == "owners" {
			return l2Owners(args[2:], stdout, stderr)
		}
		fmt.Fprintf(stderr, "usage: sluicectl l2 owners [--state-dir DIR] [-o text|json]\n")
		return 2
	case "bpf":
		if len(args) > 1 && args[1] == "conntrack" {
			return conntrack(args[2:], stdout, stderr)
		}
		fmt.Fprintf(stderr, "usage: sluicectl bpf conntrack [--state-dir DIR] [-n N] [-o text|json]\n")
		return 2
	case "migrate":
		return migrateCmd(args[1:], stdout, stderr)
	case "version", "--version":
		fmt.Fprintln(stdout, "sluicectl", version.String())
		return 0
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "sluicectl: unknown command %q\n\n%s", args[0], usage)
	return 2
}

// multiFlag collects a repeated flag.
type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

func validate(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("sluicectl validate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var files multiFlag
	fs.Var(&files, "f", "a YAML file or directory (repeatable)")
	output := fs.String("o", "text", "output: text or json")
	namespace := fs.String("namespace", "sluice-system", "the agent's namespace, for BGP password Secrets")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if len(files) == 0 || fs.NArg() > 0 || (*output != "text" && *output != "json") {
		fmt.Fprint(stderr, "usage: sluicectl validate -f FILE_OR_DIR [-f ...] [-o text|json]\n")
		return 2
	}
	var objs []source.Key
	var in model.Objects
	var inputProblems []string
	for _, f := range files {
		read, errs := source.NewFile(f).ReadOnce()
		for _, e := range errs {
			inputProblems = append(inputProblems, e.Error())
		}
		for _, o := range read {
			objs = append(objs, source.KeyOf(o))
			if err := in.Add(o); err != nil {
				inputProblems = append(inputProblems, err.Error())
			}
		}
	}
	m, problems := model.Build(in, model.Options{Namespace: *namespace})
	st := summary(m, in, problems, inputProblems)
	if *output == "json" {
		writeJSON(stdout, st)
	} else {
		printStatus(stdout, st)
		if allocs := localapi.AllocationsOf(ipam.Allocate(m, ipam.Options{})); len(allocs) > 0 {
			fmt.Fprintln(stdout, "Addresses a standalone agent starting afresh gives out:")
			printAllocations(stdout, allocs)
		}
	}
	if len(problems) > 0 || len(inputProblems) > 0 {
		fmt.Fprintf(stderr, "sluicectl: %d problem(s) in %d object(s) read\n", len(problems)+len(inputProblems), len(objs))
		return 1
	}
	return 0
}

// summary is the validate report: the same shape the agent serves as its status.
func summary(m *model.Model, in model.Objects, problems []model.Problem, inputProblems []string) localapi.Status {
	var errs []error
	for _, p := range inputProblems {
		errs = append(errs, fmt.Errorf("%s", p))
	}
	return localapi.StatusOf(m, in, problems, errs)
}

func status(args []string, stdout, stderr io.Writer) int {
	fs, stateDir, output := agentFlags("status", stderr)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := localapi.NewClient(*stateDir).Status(ctx)
	if err != nil {
		fmt.Fprintln(stderr, "sluicectl:", err)
		return 1
	}
	if *output == "json" {
		writeJSON(stdout, st)
		return 0
	}
	fmt.Fprintf(stdout, "Agent %s on node %s, %s mode", st.Version, st.Node, st.Mode)
	if st.Source != "" {
		fmt.Fprintf(stdout, " (%s)", st.Source)
	}
	fmt.Fprintf(stdout, ", synced=%v, model built %s\n", st.Synced, st.BuiltAt.Format(time.RFC3339))
	printStatus(stdout, *st)
	fmt.Fprintln(stdout, "Subsystems:")
	for _, name := range []string{"model", "ipam", "datapath", "bgp", "l2announce"} {
		fmt.Fprintf(stdout, "  %-11s %s\n", name, st.Features[name])
	}
	return 0
}

func printStatus(w io.Writer, st localapi.Status) {
	fmt.Fprintf(w, "Pools: %d\n", len(st.Pools))
	for _, p := range st.Pools {
		flags := ""
		if !p.AutoAssign {
			flags += " autoAssign=false"
		}
		if p.Disabled {
			flags += " disabled"
		}
		fmt.Fprintf(w, "  %-20s %s (%s addresses)%s\n", p.Name, strings.Join(p.Ranges, ", "), p.Size, flags)
	}
	fmt.Fprintf(w, "BGP peers: %d\n", len(st.Peers))
	for _, p := range st.Peers {
		fmt.Fprintf(w, "  %-20s %s AS%d (local AS%d)\n", p.Name, p.Address, p.ASN, p.LocalASN)
	}
	fmt.Fprintf(w, "BGP advertisements: %d, L2 advertisements: %d\n", st.BGPAdverts, st.L2Adverts)
	fmt.Fprintf(w, "Services: %d (%d LoadBalancer served by Sluice)\n", st.Services, st.ServicesOurs)
	if n := len(st.Problems) + len(st.InputProblems); n > 0 {
		fmt.Fprintf(w, "Problems: %d\n", n)
		for _, p := range st.InputProblems {
			fmt.Fprintf(w, "  %s\n", p)
		}
		for _, p := range st.Problems {
			fmt.Fprintf(w, "  %s\n", p.Error())
		}
	} else {
		fmt.Fprintln(w, "Problems: none")
	}
}

// agentFlags are the flags of the commands that ask a running agent.
func agentFlags(name string, stderr io.Writer) (*flag.FlagSet, *string, *string) {
	fs := flag.NewFlagSet("sluicectl "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	stateDir := fs.String("state-dir", "/var/run/sluice", "the agent's --state-dir")
	output := fs.String("o", "text", "output: text or json")
	return fs, stateDir, output
}

// ask is a command that asks the running agent one thing: it parses the agent flags (and
// any the command adds with more), fetches with get, and prints the answer as JSON with
// -o json, else with text.
func ask[T any](name string, args []string, stdout, stderr io.Writer, more func(*flag.FlagSet),
	get func(*localapi.Client, context.Context) (T, error), text func(io.Writer, T)) int {
	fs, stateDir, output := agentFlags(name, stderr)
	if more != nil {
		more(fs)
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	v, err := get(localapi.NewClient(*stateDir), ctx)
	if err != nil {
		fmt.Fprintln(stderr, "sluicectl:", err)
		return 1
	}
	if *output == "json" {
		writeJSON(stdout, v)
		return 0
	}
	text(stdout, v)
	return 0
}

func writeJSON(w io.Writer, v any) {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// services prints what the datapath has programmed; in text, after the load balancer
// addresses the agent's allocator gave out (standalone mode).
func services(args []string, stdout, stderr io.Writer) int {
	fs, stateDir, output := agentFlags("services", stderr)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	client := localapi.NewClient(*stateDir)
	svcs, err := client.Services(ctx)
	noDatapath := err != nil && strings.Contains(err.Error(), localapi.ErrNoDatapath)
	if err != nil && (*output == "json" || !noDatapath) {
		fmt.Fprintln(stderr, "sluicectl:", err)
		return 1
	}
	if *output == "json" {
		writeJSON(stdout, svcs)
		return 0
	}
	if allocs, err := client.Allocations(ctx); err == nil {
		printAllocations(stdout, allocs)
		fmt.Fprintln(stdout)
	}
	if noDatapath {
		fmt.Fprintln(stdout, "no datapath: the agent runs without --devices")
		return 0
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SERVICE\tFRONTEND\tSLOTS\tBACKENDS")
	for _, s := range svcs {
		var bs []string
		for _, b := range s.Backends {
			bs = append(bs, fmt.Sprintf("%s (%s, %d slots)", b.Address, b.State, b.Slots))
		}
		backends := strings.Join(bs, ", ")
		if s.Slots == 0 {
			backends = "none: connections are refused"
		}
		extra := s.Algorithm
		if s.Affinity != "" {
			extra += ", affinity " + s.Affinity
		}
		fmt.Fprintf(tw, "%s\t%s\t%d %s\t%s\n", s.Service, s.Frontend, s.Slots, extra, backends)
	}
	tw.Flush()
	return 0
}

// bgpPeers prints the agent's BGP sessions (what "peers") or the paths announced on each
// (what "routes").
func bgpPeers(what string, args []string, stdout, stderr io.Writer) int {
	return ask("bgp "+what, args, stdout, stderr, nil, (*localapi.Client).BGPPeers, func(w io.Writer, list []localapi.BGPPeer) {
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		if what == "peers" {
			fmt.Fprintln(tw, "PEER\tADDRESS\tASN\tROUTER ID\tSTATE\tUPTIME\tSENT\tLAST ERROR")
			for _, p := range list {
				fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%d\t%s\n", p.Name, p.Address, p.ASN, p.RouterID, p.State, p.Uptime, p.Sent, p.LastError)
			}
		} else {
			fmt.Fprintln(tw, "PEER\tPREFIX AND ATTRIBUTES")
			for _, p := range list {
				for _, r := range p.Routes {
					fmt.Fprintf(tw, "%s\t%s\n", p.Name, r)
				}
			}
		}
		tw.Flush()
	})
}

// l2Owners prints which node answers ARP/NDP for each Service address, as the agent sees it.
func l2Owners(args []string, stdout, stderr io.Writer) int {
	return ask("l2 owners", args, stdout, stderr, nil, (*localapi.Client).L2, func(w io.Writer, st *localapi.L2Status) {
		alive := strings.Join(st.Alive, ", ")
		if alive == "" {
			alive = "none yet (the agent has just started or was stalled: it answers for nothing until it hears its peers)"
		}
		fmt.Fprintf(w, "Node %s hears: %s\n", st.Node, alive)
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ADDRESS\tSERVICE\tOWNER\tCANDIDATES\tINTERFACES HERE")
		for _, o := range st.Owners {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", o.Address, o.Service, cmp.Or(o.Owner, "none"), strings.Join(o.Candidates, ","), strings.Join(o.Interfaces, ","))
		}
		tw.Flush()
	})
}

// allocations prints the addresses the agent's allocator gave LoadBalancer Services.
func allocations(args []string, stdout, stderr io.Writer) int {
	return ask("ipam", args, stdout, stderr, nil, (*localapi.Client).Allocations, printAllocations)
}

func printAllocations(w io.Writer, allocs []localapi.Allocation) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "LOADBALANCER\tADDRESSES\tPOOLS\tSTATE")
	for _, a := range allocs {
		ips, pools := strings.Join(a.IPs, ", "), strings.Join(a.Pools, ", ")
		if ips == "" {
			ips, pools = "none", "-"
		}
		state := a.Reason
		if a.Reason != "Allocated" {
			state += ": " + a.Message
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", a.Service, ips, pools, state)
	}
	tw.Flush()
}

func conntrack(args []string, stdout, stderr io.Writer) int {
	var limit *int
	return ask("bpf conntrack", args, stdout, stderr, func(fs *flag.FlagSet) { limit = fs.Int("n", 1000, "at most this many entries") },
		func(c *localapi.Client, ctx context.Context) ([]localapi.ConntrackEntry, error) {
			return c.Conntrack(ctx, *limit)
		},
		func(w io.Writer, entries []localapi.ConntrackEntry) {
			tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "PROTO\tDIR\tSOURCE\tDESTINATION\tNAT\tSTATE\tAGE\tIDLE\tPACKETS\tBYTES")
			for _, e := range entries {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\n", e.Proto, e.Direction, e.Src, e.Dst, e.NAT, e.State, e.Age, e.Idle, e.Packets, e.Bytes)
			}
			tw.Flush()
		})
}
