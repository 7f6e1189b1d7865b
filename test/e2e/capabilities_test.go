package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/sluice-lb/sluice/test/kubeapi"
	"github.com/sluice-lb/sluice/test/peers"
	"github.com/sluice-lb/sluice/test/traffic"
)

// capBits are the capabilities' numbers (linux/capability.h) the tests name.
var capBits = map[string]uint{"net_bind_service": 10, "net_admin": 12, "net_raw": 13, "sys_admin": 21, "perfmon": 38, "bpf": 39}

// chartCapabilities are the capabilities manifests/sluice.yaml's DaemonSet grants the agent.
func chartCapabilities(t *testing.T) []string {
	t.Helper()
	root, err := kubeapi.RepoRoot()
	must(t, err)
	objs, err := kubeapi.ReadObjects(filepath.Join(root, "manifests", "sluice.yaml"))
	must(t, err)
	for _, o := range objs {
		if o.GetKind() != "DaemonSet" {
			continue
		}
		var ds appsv1.DaemonSet
		must(t, runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, &ds))
		var caps []string
		for _, c := range ds.Spec.Template.Spec.Containers[0].SecurityContext.Capabilities.Add {
			caps = append(caps, strings.ToLower(string(c)))
		}
		return caps
	}
	t.Fatal("no DaemonSet in manifests/sluice.yaml")
	return nil
}

// withCaps is the wrapper that runs a program with caps only: setpriv empties the bounding
// set but for them, and a root process gets no more than its bounding set.
func withCaps(caps []string) []string {
	set := "-all"
	for _, c := range caps {
		set += ",+" + c
	}
	return []string{"setpriv", "--bounding-set", set, "--"}
}

// effectiveCaps reads a process's effective capabilities.
func effectiveCaps(t *testing.T, pid int) uint64 {
	t.Helper()
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	must(t, err)
	for line := range strings.Lines(string(status)) {
		if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			must(t, err)
			return n
		}
	}
	t.Fatalf("no CapEff in /proc/%d/status", pid)
	return 0
}

// TestAgentCapabilities: the agent does all its node work with exactly the capabilities the
// chart grants it: XDP/TCX and socket programs attached and pinned, Services served, BGP to a
// router, ARP/NDP answers, and a restart over its pinned state (SYS_ADMIN is not among them:
// the host's bpffs and cgroup2 are mounted for it, as the DaemonSet's volumes do). With NET_ADMIN and SYS_ADMIN also taken away,
// the datapath cannot attach: the capabilities are really all it has.
func TestAgentCapabilities(t *testing.T) {
	caps := chartCapabilities(t)
	var want uint64
	for _, c := range caps {
		bit, ok := capBits[c]
		if !ok {
			t.Fatalf("the chart grants %s, which this test does not know", c)
		}
		want |= 1 << bit
	}
	s := newSingleNode(t, 2)
	frr := peers.StartForTest(t, peers.StartFRR, s.client.Name, peers.Config{
		RouterID: netip.MustParseAddr("198.18.0.2"), ASN: 64512, HoldTime: 9 * time.Second,
		Neighbors: []peers.Neighbor{{Address: netip.MustParseAddr("198.18.0.1"), ASN: 64513}},
	})
	s.extra = bgpObjects + `---
apiVersion: sluice.dev/v1alpha1
kind: L2Advertisement
metadata: {name: lab}
spec: {pools: [lab]}
`
	config := s.config(t, "1", "2")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for run := range 2 { // the second starts over the first's pinned maps and links
		s.agent = startAgentUnder(t, withCaps(caps), s.node, "node", s.dir, config)
		if got := effectiveCaps(t, s.agent.PID); got != want {
			t.Fatalf("run %d: the agent's capabilities are %#x, want the chart's %v (%#x)", run, got, caps, want)
		}
		if _, err := frr.WaitRoute(ctx, netip.MustParsePrefix(vip4+"/32")); err != nil {
			t.Fatalf("run %d: %v\n%s", run, err, s.agent.Output())
		}
		if r := traffic.NewClient(s.client).Spread("tcp", tcp4, 200, 4); r.Failed != 0 || len(r.ByServer) != 2 {
			t.Errorf("run %d: 200 connections to %s: %v", run, tcp4, r)
		}
		out := s.agent.Output()
		logged := []string{`msg="datapath attached"`, `msg="socket load balancing attached"`, `msg="l2: answering for an address"`}
		if run == 0 {
			logged = append(logged, `msg="datapath programmed"`)
		}
		for _, l := range logged {
			if !strings.Contains(out, l) {
				t.Errorf("run %d: the agent's log lacks %s:\n%s", run, l, out)
			}
		}
		if strings.Contains(out, "not permitted") {
			t.Errorf("run %d: something was not permitted:\n%s", run, out)
		}
		must(t, s.agent.Stop(5*time.Second))
	}

	t.Run("without NET_ADMIN and SYS_ADMIN", func(t *testing.T) {
		fewer := slices.DeleteFunc(slices.Clone(caps), func(c string) bool { return c == "net_admin" || c == "sys_admin" })
		s := newSingleNode(t, 1)
		agent, err := s.node.Start(withCaps(fewer)[0], append(withCaps(fewer)[1:], append([]string{agentBin}, agentArgs(t, s.node, "node", s.dir, s.config(t, "1"))...)...)...)
		must(t, err)
		waitUpTo(t, 20*time.Second, "the agent to report that it cannot attach", func() bool {
			return strings.Contains(agent.Output(), "not permitted")
		})
		if strings.Contains(agent.Output(), `msg="datapath attached"`) {
			t.Errorf("the datapath attached without NET_ADMIN or SYS_ADMIN:\n%s", agent.Output())
		}
		must(t, agent.Stop(5*time.Second))
	})
}
