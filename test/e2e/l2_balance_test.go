package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/internal/localapi"
	"github.com/sluice-lb/sluice/internal/testenv"
	"github.com/sluice-lb/sluice/test/lab"
)

var ndiscAnswer = regexp.MustCompile(`(?m)^Target link-layer address: ([0-9A-Fa-f:]{17})`)

// TestL2BalanceAndNDP: three agents on one LAN share 100 IPv4 and one IPv6 Service address
// evenly (33 or 34 each), agree on every owner, and only the owner answers ARP for an address; an
// IPv6 address is answered over NDP (ndisc6) by its owner alone.
func TestL2BalanceAndNDP(t *testing.T) {
	testenv.RequirePrivileged(t)
	testenv.RequireCommands(t, "arping", "ndisc6")
	l := lab.ForTest(t)
	dir := t.TempDir()
	lan, err := l.Namespace("lan")
	must(t, err)
	must(t, lan.AddBridge("br"))
	client, err := l.Namespace("client")
	must(t, err)
	must(t, l.Connect(lab.Endpoint{NS: lan, Name: "client", Bridge: "br"},
		lab.Endpoint{NS: client, Name: "eth0", Addrs: []string{"198.18.7.2/24", "2001:db8:7::2/64"}}))

	var config strings.Builder
	names := []string{"node-a", "node-b", "node-c"}
	for i, name := range names {
		fmt.Fprintf(&config, "---\napiVersion: v1\nkind: Node\nmetadata: {name: %s}\nstatus: {addresses: [{type: InternalIP, address: 198.18.7.%d}]}\n", name, 11+i)
	}
	config.WriteString(`---
apiVersion: sluice.dev/v1alpha1
kind: IPPool
metadata: {name: lan}
spec: {blocks: [{start: 198.18.7.100, stop: 198.18.7.199}, {cidr: "2001:db8:7::100/128"}]}
---
apiVersion: sluice.dev/v1alpha1
kind: L2Advertisement
metadata: {name: lan}
spec: {pools: [lan]}
`)
	for i := range 100 {
		fmt.Fprintf(&config, "---\napiVersion: v1\nkind: Service\nmetadata: {name: s%03d, namespace: demo}\nspec: {type: LoadBalancer, ports: [{port: 80}]}\nstatus: {loadBalancer: {ingress: [{ip: 198.18.7.%d}]}}\n", i, 100+i)
	}
	config.WriteString("---\napiVersion: v1\nkind: Service\nmetadata: {name: v6, namespace: demo}\nspec: {type: LoadBalancer, ipFamilies: [IPv6], ports: [{port: 80}]}\nstatus: {loadBalancer: {ingress: [{ip: \"2001:db8:7::100\"}]}}\n")
	path := filepath.Join(dir, "config.yaml")
	must(t, os.WriteFile(path, []byte(config.String()), 0o644))

	macs := map[string]string{}
	stateDirs := map[string]string{}
	for i, name := range names {
		ns, err := l.Namespace(name)
		must(t, err)
		nodeDir := filepath.Join(dir, name)
		mountBPFFS(t, nodeDir)
		must(t, l.Connect(lab.Endpoint{NS: lan, Name: name, Bridge: "br"},
			lab.Endpoint{NS: ns, Name: "eth0", Addrs: []string{fmt.Sprintf("198.18.7.%d/24", 11+i), fmt.Sprintf("2001:db8:7::%d/64", 11+i)}}))
		must(t, lan.ReceiveXDPFrames(name))
		out, err := ns.Exec(context.Background(), "cat", "/sys/class/net/eth0/address")
		must(t, err)
		macs[name] = strings.TrimSpace(string(out))
		stateDirs[name] = filepath.Join(nodeDir, "state")
		startAgent(t, ns, name, nodeDir, path)
	}

	status := func(name string) localapi.L2Status {
		out, err := exec.Command(ctlBin, "l2", "owners", "-o", "json", "--state-dir", stateDirs[name]).CombinedOutput()
		must(t, err)
		var st localapi.L2Status
		must(t, json.Unmarshal(out, &st))
		return st
	}
	var owners map[string]string // address -> node
	waitFor(t, "the three agents to agree on 101 owners", func() bool {
		var first map[string]string
		for _, name := range names {
			st := status(name)
			if len(st.Alive) != 3 || len(st.Owners) != 101 {
				return false
			}
			m := map[string]string{}
			for _, o := range st.Owners {
				m[o.Address] = o.Owner
			}
			if first != nil && fmt.Sprint(first) != fmt.Sprint(m) {
				return false
			}
			first = m
		}
		owners = first
		return true
	})
	count, count4 := map[string]int{}, map[string]int{}
	for a, n := range owners {
		count[n]++
		if strings.Contains(a, ".") {
			count4[n]++
		}
	}
	t.Logf("101 addresses over 3 nodes: %v; the 100 IPv4 ones: %v", count, count4)
	for _, name := range names {
		if count[name] < 33 || count[name] > 34 || count4[name] < 31 || count4[name] > 35 {
			t.Errorf("%s owns %d of 101 addresses (%d of the 100 IPv4), want 33 or 34 (33 ± 2)", name, count[name], count4[name])
		}
	}

	time.Sleep(600 * time.Millisecond) // the takeovers' announcements are over
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, addr := range []string{"198.18.7.100", "198.18.7.133", "198.18.7.166", "198.18.7.199"} {
		out, _ := client.Exec(ctx, "arping", "-i", "eth0", "-c", "2", "-W", "0.1", addr)
		replies := regexp.MustCompile(`(?m)^\d+ bytes from ([0-9a-f:]{17}) \(`+regexp.QuoteMeta(addr)+`\)`).FindAllStringSubmatch(string(out), -1)
		want := macs[owners[addr]]
		if len(replies) != 2 || replies[0][1] != want || replies[1][1] != want {
			t.Errorf("arping %s: %v, want 2 replies from its owner %s (%s)", addr, replies, owners[addr], want)
		}
	}
	out, _ := client.Exec(ctx, "ndisc6", "-m", "-n", "-r", "1", "-w", "500", "2001:db8:7::100", "eth0")
	answers := ndiscAnswer.FindAllStringSubmatch(string(out), -1)
	want := macs[owners["2001:db8:7::100"]]
	if len(answers) != 1 || strings.ToLower(answers[0][1]) != want {
		t.Errorf("ndisc6 2001:db8:7::100: %v, want one answer from its owner %s (%s)\n%s", answers, owners["2001:db8:7::100"], want, out)
	}
}
