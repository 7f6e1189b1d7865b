package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/internal/localapi"
	"github.com/sluice-lb/sluice/internal/testenv"
	"github.com/sluice-lb/sluice/test/lab"
	"github.com/sluice-lb/sluice/test/traffic"
)

// The L2 topology: a LAN (bridge "br" in namespace lan) with a client and two nodes, each
// node with one backend of Service web (externalTrafficPolicy Local) behind it. The Service
// address is on the LAN: the client finds it by ARP.
//
//	client 198.18.6.2 ─┬─ 198.18.6.11 node-a ── be-a 198.51.100.11
//	   (bridge br)     └─ 198.18.6.12 node-b ── be-b 198.51.100.139
const l2VIP = "198.18.6.100"

type l2Lab struct {
	lab         *lab.Lab
	lan, client *lab.Namespace
	nodes       []*labNode
	config      string
}

// l2Config writes the config both agents read; ready says which nodes' endpoints are ready,
// interfaces are the advertisement's (none: the default).
func l2Config(t testing.TB, path string, ready map[string]bool, interfaces ...string) {
	l2ConfigWith(t, path, localServiceYAML("web", l2VIP, ready), interfaces...)
}

// l2ConfigWith is l2Config with other Services (YAML documents, each starting with ---).
func l2ConfigWith(t testing.TB, path, services string, interfaces ...string) {
	ifaces := ""
	if len(interfaces) > 0 {
		ifaces = ", interfaces: [" + strings.Join(interfaces, ", ") + "]"
	}
	writeConfig(t, path, fmt.Sprintf(`apiVersion: v1
kind: Node
metadata: {name: node-a}
status: {addresses: [{type: InternalIP, address: 198.18.6.11}]}
---
apiVersion: v1
kind: Node
metadata: {name: node-b}
status: {addresses: [{type: InternalIP, address: 198.18.6.12}]}
---
apiVersion: sluice.dev/v1alpha1
kind: IPPool
metadata: {name: lan}
spec: {blocks: [{start: 198.18.6.100, stop: 198.18.6.110}]}
---
apiVersion: sluice.dev/v1alpha1
kind: L2Advertisement
metadata: {name: lan}
spec: {pools: [lan]%s}
`, ifaces)+services)
}

func newL2Lab(t testing.TB) *l2Lab {
	x, dir := newL2Topology(t)
	x.config = filepath.Join(dir, "config.yaml")
	l2Config(t, x.config, map[string]bool{"node-a": true, "node-b": true})
	for _, n := range x.nodes {
		n.agent = startAgent(t, n.ns, n.name, n.dir, x.config)
	}
	return x
}

// newL2Topology builds the L2 topology, its nodes' directories under the returned one, with
// no agent running yet.
func newL2Topology(t testing.TB) (*l2Lab, string) {
	testenv.RequirePrivileged(t)
	testenv.RequireCommands(t, "arping")
	l := lab.ForTest(t)
	dir := t.TempDir()
	x := &l2Lab{lab: l}
	var err error
	x.lan, err = l.Namespace("lan")
	must(t, err)
	must(t, x.lan.AddBridge("br"))
	x.client, err = l.Namespace("client")
	must(t, err)
	must(t, l.Connect(lab.Endpoint{NS: x.lan, Name: "client", Bridge: "br"},
		lab.Endpoint{NS: x.client, Name: "eth0", Addrs: []string{"198.18.6.2/24"}}))
	x.nodes = twoNodes("198.18.6")
	for _, n := range x.nodes {
		n.build(t, l, dir, x.lan, "br", n.name)
	}
	return x, dir
}

// owner asks node-a's agent who owns the Service address, waiting until both agents hear
// each other and agree.
func (x *l2Lab) owner(t testing.TB) *labNode {
	t.Helper()
	var owner string
	waitFor(t, "both agents to agree on an owner", func() bool {
		owners := map[string]bool{}
		for _, n := range x.nodes {
			st := x.l2Status(t, n)
			if len(st.Alive) != 2 || len(st.Owners) != 1 {
				return false
			}
			owners[st.Owners[0].Owner] = true
			owner = st.Owners[0].Owner
		}
		return len(owners) == 1 && owner != ""
	})
	i := slices.IndexFunc(x.nodes, func(n *labNode) bool { return n.name == owner })
	return x.nodes[i]
}

func (x *l2Lab) l2Status(t testing.TB, n *labNode) localapi.L2Status {
	t.Helper()
	out, err := exec.Command(ctlBin, "l2", "owners", "-o", "json", "--state-dir", filepath.Join(n.dir, "state")).CombinedOutput()
	must(t, err)
	var st localapi.L2Status
	must(t, json.Unmarshal(out, &st))
	return st
}

var arpingFrom = regexp.MustCompile(`(?m)^\d+ bytes from ([0-9a-f:]{17}) \(` + regexp.QuoteMeta(l2VIP) + `\)`)

// arping sends count ARP requests for the Service address from the client and returns the
// hardware address of every reply.
func (x *l2Lab) arping(t testing.TB, count int) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, _ := x.client.Exec(ctx, "arping", "-i", "eth0", "-c", fmt.Sprint(count), "-W", "0.1", l2VIP)
	var macs []string
	for _, m := range arpingFrom.FindAllStringSubmatch(string(out), -1) {
		macs = append(macs, m[1])
	}
	return macs
}

// TestL2AnswerAndFailover: exactly one node answers ARP for the Service address — the owner
// both agents agree on — and serves the client through its datapath. Then, while the client
// opens a connection every 10 ms, the owner fails — its link goes down, or its agent is
// killed, or frozen — and the other node takes the address over; the longest gap between
// answered requests is measured against the 1 s target.
func TestL2AnswerAndFailover(t *testing.T) {
	x := newL2Lab(t)
	owner := x.owner(t)
	time.Sleep(600 * time.Millisecond) // the takeover's announcement burst is over
	macs := x.arping(t, 3)
	if len(macs) != 3 || macs[0] != owner.mac || macs[1] != owner.mac || macs[2] != owner.mac {
		t.Fatalf("arping %s: replies from %v, want 3, all from the owner %s (%s)", l2VIP, macs, owner.name, owner.mac)
	}
	// The owner's metrics say so.
	if v := nodeMetric(t, owner.ns, "sluice_l2_owned_addresses"); v != "1" {
		t.Errorf("%s: sluice_l2_owned_addresses = %s, want 1", owner.name, v)
	}
	if v := nodeMetric(t, owner.ns, `sluice_l2_answers_total{interface="eth0",protocol="arp"}`); atoi(t, v) < 3 {
		t.Errorf("%s: ARP answers = %s, want at least the 3 just seen", owner.name, v)
	}
	c := traffic.NewClient(x.client)
	c.Timeout = 500 * time.Millisecond
	addr := l2VIP + ":80"
	r := c.Spread("tcp", addr, 50, 4)
	backend := "be-" + owner.name[len("node-"):]
	if r.Failed != 0 || r.ByServer[backend] != 50 {
		t.Fatalf("50 connections to %s: %v; want all answered by the owner's own backend %s", addr, r, backend)
	}

	var gaps []time.Duration
	for _, how := range []string{"link down", "link down", "link down", "SIGKILL", "SIGSTOP"} {
		gap := x.failover(t, c, how)
		gaps = append(gaps, gap)
		if gap > time.Second {
			t.Errorf("%s: a gap of %v, want at most 1s", how, gap)
		}
	}
	slices.Sort(gaps)
	t.Logf("failover gaps: p50 %v, max %v", gaps[len(gaps)/2].Round(time.Millisecond), gaps[len(gaps)-1].Round(time.Millisecond))
}

// failover makes the current owner fail (how: "link down", "SIGKILL" or "SIGSTOP") while c
// opens a connection to the Service every 10 ms, waits for the other node to take the
// address over, restores the failed node, and returns the longest gap between answered
// requests.
func (x *l2Lab) failover(t testing.TB, c *traffic.Client, how string) time.Duration {
	t.Helper()
	addr := l2VIP + ":80"
	owner := x.owner(t)
	other := x.nodes[0]
	if other == owner {
		other = x.nodes[1]
	}
	time.Sleep(600 * time.Millisecond) // the last takeover's announcements are over
	probe := c.Probe("tcp", addr, 10*time.Millisecond)
	time.Sleep(300 * time.Millisecond)
	failed := time.Now()
	switch how {
	case "link down":
		must(t, owner.ns.Do(func() error { return exec.Command("ip", "link", "set", "eth0", "down").Run() }))
	case "SIGKILL":
		must(t, syscall.Kill(owner.agent.PID, syscall.SIGKILL))
	case "SIGSTOP":
		must(t, syscall.Kill(owner.agent.PID, syscall.SIGSTOP))
	}
	waitFor(t, other.name+" to own the address", func() bool {
		st := x.l2Status(t, other)
		return len(st.Owners) == 1 && st.Owners[0].Owner == other.name && len(st.Owners[0].Interfaces) > 0
	})
	tookOver := time.Since(failed)
	time.Sleep(1500 * time.Millisecond)
	res := probe.Stop()
	gap := res.MaxGap()
	t.Logf("%s of %s: %s owns the address after %v; longest gap between answered requests %v (%d of %d answered)",
		how, owner.name, other.name, tookOver.Round(time.Millisecond), gap.Round(time.Millisecond), len(res.Answers), res.Sent)
	// Restore the failed node for the next round.
	switch how {
	case "link down":
		must(t, owner.ns.Do(func() error { return exec.Command("ip", "link", "set", "eth0", "up").Run() }))
		// The partition heals: both answered meanwhile; within a detection interval of
		// hearing each other again only one does.
		x.owner(t)
		time.Sleep(350 * time.Millisecond)
		for range 3 {
			if macs := x.arping(t, 1); len(macs) != 1 {
				t.Errorf("after the link came back: ARP replies from %v, want exactly one", macs)
			}
		}
	case "SIGKILL":
		<-owner.agent.Done()
		owner.agent = startAgent(t, owner.ns, owner.name, owner.dir, x.config)
	case "SIGSTOP":
		// Resumed, it must not answer from its stale view: only one node answers.
		must(t, syscall.Kill(owner.agent.PID, syscall.SIGCONT))
		for range 5 {
			if macs := x.arping(t, 1); len(macs) > 1 {
				t.Errorf("after SIGCONT: ARP replies from %v", macs)
			}
		}
	}
	return gap
}

// TestL2ExternalTrafficPolicyLocal: with externalTrafficPolicy Local only a node with a ready
// endpoint answers: the address moves to the node that has one, and with none anywhere nobody
// answers ARP for it.
func TestL2ExternalTrafficPolicyLocal(t *testing.T) {
	x := newL2Lab(t)
	owner := x.owner(t)
	other := x.nodes[0]
	if other == owner {
		other = x.nodes[1]
	}
	// The owner's endpoint stops being ready: the other node takes the address.
	l2Config(t, x.config, map[string]bool{owner.name: false, other.name: true})
	waitFor(t, other.name+" to own the address", func() bool {
		for _, n := range x.nodes {
			st := x.l2Status(t, n)
			if len(st.Owners) != 1 || st.Owners[0].Owner != other.name || !slices.Equal(st.Owners[0].Candidates, []string{other.name}) {
				return false
			}
		}
		return true
	})
	time.Sleep(600 * time.Millisecond)
	if macs := x.arping(t, 2); len(macs) != 2 || macs[0] != other.mac || macs[1] != other.mac {
		t.Fatalf("arping after %s's endpoint went: replies from %v, want 2 from %s (%s)", owner.name, macs, other.name, other.mac)
	}
	c := traffic.NewClient(x.client)
	backend := "be-" + other.name[len("node-"):]
	if r := c.Spread("tcp", l2VIP+":80", 20, 4); r.Failed != 0 || r.ByServer[backend] != 20 {
		t.Fatalf("after the move: %v; want every connection answered by %s", r, backend)
	}
	// No ready endpoint anywhere: nobody answers.
	l2Config(t, x.config, map[string]bool{})
	waitFor(t, "no owner", func() bool {
		st := x.l2Status(t, other)
		return len(st.Owners) == 1 && st.Owners[0].Owner == "" && len(st.Owners[0].Interfaces) == 0
	})
	if macs := x.arping(t, 3); len(macs) != 0 {
		t.Fatalf("arping with no ready endpoint anywhere: replies from %v, want none", macs)
	}
}

// TestL2Interfaces: an advertisement naming an interface only node-b has makes node-b the
// owner, answering on that interface with its hardware address; node-a, without it, never
// owns the address however the hash ranks it.
func TestL2Interfaces(t *testing.T) {
	x := newL2Lab(t)
	b := x.nodes[1]
	must(t, x.lab.Connect(lab.Endpoint{NS: x.lan, Name: "node-b-2", Bridge: "br"},
		lab.Endpoint{NS: b.ns, Name: "lan2", Addrs: []string{"198.18.6.22/24"}}))
	out, err := b.ns.Exec(context.Background(), "cat", "/sys/class/net/lan2/address")
	must(t, err)
	lan2MAC := strings.TrimSpace(string(out))
	l2Config(t, x.config, map[string]bool{"node-a": true, "node-b": true}, "lan2")
	waitFor(t, "node-b to own the address on lan2", func() bool {
		st := x.l2Status(t, b)
		a := x.l2Status(t, x.nodes[0])
		return len(st.Owners) == 1 && st.Owners[0].Owner == "node-b" && slices.Equal(st.Owners[0].Interfaces, []string{"lan2"}) &&
			len(a.Owners) == 1 && a.Owners[0].Owner == "node-b"
	})
	time.Sleep(600 * time.Millisecond)
	if macs := x.arping(t, 2); len(macs) != 2 || macs[0] != lan2MAC || macs[1] != lan2MAC {
		t.Fatalf("arping: replies from %v, want 2 from node-b's lan2 %s", macs, lan2MAC)
	}
}
