package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/internal/testenv"
	"github.com/sluice-lb/sluice/test/peers"
)

// TestDemo runs the whole demo with freshly built binaries and checks what it shows — every
// pod answered connections to every Service address, none failed, the summary is honest —
// and that it leaves nothing behind: namespaces, processes, bpffs mounts, its work directory.
func TestDemo(t *testing.T) {
	testenv.RequirePrivileged(t)
	testenv.RequireCommands(t, "go", "ip", "ping", "arping", peers.FRRBgpd, peers.FRRZebra, "vtysh")
	root := t.TempDir()
	bin := filepath.Join(root, "bin")
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	build := exec.CommandContext(ctx, "go", "build", "-o", bin+"/",
		"github.com/sluice-lb/sluice/cmd/sluice-agent", "github.com/sluice-lb/sluice/cmd/sluicectl")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the binaries: %v\n%s", err, out)
	}

	var buf bytes.Buffer
	start := time.Now()
	err := run(ctx, options{
		Agent:     filepath.Join(bin, "sluice-agent"),
		Sluicectl: filepath.Join(bin, "sluicectl"),
		Config:    "../../examples/quickstart.yaml",
		TempDir:   root,
	}, io.MultiWriter(&buf, t.Output()))
	t.Logf("demo ran in %v", time.Since(start).Round(time.Millisecond))
	if err != nil {
		t.Fatalf("demo failed: %v", err)
	}

	out := buf.String()
	want := []string{`demo: cleaned up`}
	for _, n := range []string{"node-1", "node-2"} {
		want = append(want,
			n+` \| understood +IPPool quickstart: \[203\.0\.113\.0/28 2001:db8:100::1-2001:db8:100::ff\]`,
			n+` \| understood +BGPPeer router: 198\.51\.100\.1 AS64512 \(local AS64513\)`,
			n+` \| datapath +attached to eth0: xdp, tcx ingress, tcx egress`,
			n+`: sluice-agent stopped by SIGTERM, exit status 0`,
			n+`: bpffs .* unmounted`,
		)
	}
	for _, ping := range [][3]string{
		{"client", "node-1", "198.51.100.11"}, {"client", "node-1", "2001:db8:1::11"},
		{"client", "node-2", "198.51.100.12"}, {"client", "node-2", "2001:db8:1::12"},
		{"node-1", "pod-1a", "10.244.1.2"}, {"node-1", "pod-2b", "2001:db8:244:2::3"},
	} {
		want = append(want, regexp.QuoteMeta(ping[0]+" -> "+ping[1])+` +`+regexp.QuoteMeta(ping[2])+` +ok`)
	}
	want = append(want,
		`router: \$ ip -4 route show 203\.0\.113\.1/32 +\(installed by FRR from BGP`,
		`^ +nexthop via 198\.51\.100\.11 dev lan weight 1`,
		`^ +nexthop via 198\.51\.100\.12 dev lan weight 1`,
		`router: \$ ip -6 route show 2001:db8:100::1/128 +\(installed by FRR from BGP`,
		`^ +nexthop via 2001:db8:1::11 dev lan weight 1`,
		`router: \$ ip -4 route show 203\.0\.113\.10/32 +\(installed by FRR from BGP`,
		`^ +datapath +running: XDP and TCX on eth0$`,
		`^ +sluice_datapath_writes_total [1-9][0-9]*$`,
		`^ +running +eBPF load balancing +the agents say: running: XDP and TCX on eth0$`,
		`^ +running +address allocation +the agents say: running: addresses from the file's IPPools`,
		`^ +demo/web: 203\.0\.113\.1, 2001:db8:100::1 \(Allocated, pool quickstart\)$`,
		`^ +demo/legacy: 203\.0\.113\.10 \(Allocated, pool quickstart\)$`,
		`^ +demo/web +203\.0\.113\.1, 2001:db8:100::1 +quickstart, quickstart +Allocated$`,
		`^ +running +BGP announcements +the agents say: running: embedded GoBGP, advertise only$`,
		`^ +FRR on the router: 198\.51\.100\.11 \(AS 64513\) Established, 198\.51\.100\.12 \(AS 64513\) Established, 2001:db8:1::11 \(AS 64513\) Established, 2001:db8:1::12 \(AS 64513\) Established$`,
		`^ +FRR learned 2001:db8:100::1/128 via 2001:db8:1::11, 2001:db8:1::12 \(AS 64513\)$`,
		`^ +FRR learned 203\.0\.113\.1/32 via 198\.51\.100\.11, 198\.51\.100\.12 \(AS 64513\)$`,
		`^ +FRR learned 203\.0\.113\.10/32 via 198\.51\.100\.11, 198\.51\.100\.12 \(AS 64513\)$`,
		`^ +running +ARP/NDP answers +the agents say: running: ARP/NDP answers`,
		`^ +198\.51\.100\.100 \(demo/lan\): node-[12]$`,
		`lan-client: arping -c 3 198\.51\.100\.100: 3 replies, every one from `,
		`^ +lan-client -> 198\.51\.100\.100:80 while node-[12]'s link was down: node-[12] took over after [0-9.]+m?s, longest gap [0-9.]+m?s, `,
		`^ +client: [0-9]+ of [0-9]+ connections answered \(pod-`,
		`^ +node-1: sluice-agent started again \(pid [0-9]+\); the router routes 203\.0\.113\.1/32 via \[198\.51\.100\.1[12] 198\.51\.100\.1[12]\] again`,
		`^ +running +agent killed +client -> 203\.0\.113\.1:80 while node-1's agent was killed and restarted: `,
		`^Timeline$`,
		`^ +[0-9.]+m?s +1\. Build the lab$`,
		`^ +[0-9.]+m?s +5\. The router learns the Service addresses over BGP`,
		`^ +[0-9.]+m?s +in all$`,
	)
	for _, re := range want {
		if !regexp.MustCompile(`(?m)` + re).MatchString(out) {
			t.Errorf("output lacks a line matching %q", re)
		}
	}

	// Every Service address: every pod answered, nothing failed, every connection counted.
	for _, target := range []struct {
		addr  string
		count int
	}{{"203.0.113.1:80", 300}, {"[2001:db8:100::1]:80", 100}, {"203.0.113.10:8080", 200}} {
		counts, failed, ok := tallyOf(out, target.addr)
		if !ok {
			t.Errorf("no tally for %s in the output", target.addr)
			continue
		}
		total := failed
		for _, pod := range []string{"pod-1a", "pod-1b", "pod-2a", "pod-2b"} {
			if counts[pod] == 0 {
				t.Errorf("%s: %s answered no connection (tally %v)", target.addr, pod, counts)
			}
			total += counts[pod]
		}
		if failed != 0 || len(counts) != 4 || total != target.count {
			t.Errorf("%s: tally %v, %d failed; want %d connections, all answered by the four pods", target.addr, counts, failed, target.count)
		}
	}

	// Nothing may be left: no namespace of this process's labs (lab names them
	// sluicelab-<pid>-...), no sluice-agent or bgpd started from this test's directory.
	entries, err := os.ReadDir("/run/netns")
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	prefix := fmt.Sprintf("sluicelab-%d-", os.Getpid())
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), prefix) {
			t.Errorf("namespace %s left behind", e.Name())
		}
	}
	for _, p := range leftProcesses(t, root, "sluice-agent", "bgpd", "zebra") {
		t.Errorf("process left behind: %s", p)
	}
	for _, m := range mountsUnder(t, root) {
		t.Errorf("mount left behind: %s", m)
	}
	if _, err := os.Stat(filepath.Join(root, "bin")); err != nil {
		t.Errorf("the demo removed more than its own work directory: %v", err)
	}
	if matches, _ := filepath.Glob(filepath.Join(root, "sluice-demo-*")); len(matches) > 0 {
		t.Errorf("work directory left behind: %v", matches)
	}
}

// leftProcesses lists the processes with one of the command names whose command line
// mentions dir.
func leftProcesses(t *testing.T, dir string, names ...string) []string {
	t.Helper()
	procs, err := filepath.Glob("/proc/[0-9]*")
	if err != nil {
		t.Fatal(err)
	}
	var left []string
	for _, p := range procs {
		comm, err1 := os.ReadFile(filepath.Join(p, "comm"))
		cmdline, err2 := os.ReadFile(filepath.Join(p, "cmdline"))
		if err1 != nil || err2 != nil { // exited meanwhile
			continue
		}
		args := strings.ReplaceAll(string(bytes.TrimRight(cmdline, "\x00")), "\x00", " ")
		for _, name := range names {
			if strings.TrimSpace(string(comm)) == name && strings.Contains(args, dir) {
				left = append(left, filepath.Base(p)+" "+args)
			}
		}
	}
	return left
}

var tallyLine = regexp.MustCompile(`^ +(pod-[0-9a-z]+|failed)\b.*? ([0-9]+) +[0-9.]+ %`)

// tallyOf reads the demo's tally for a Service address: the connections each answerer
// took, and those that failed.
func tallyOf(out, addr string) (counts map[string]int, failed int, ok bool) {
	_, block, found := strings.Cut(out, "  client -> "+addr+"  Service ")
	if !found {
		return nil, 0, false
	}
	block, _, _ = strings.Cut(block, "\n\n")
	counts = map[string]int{}
	for line := range strings.Lines(block) {
		m := tallyLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		n, _ := strconv.Atoi(m[2])
		if m[1] == "failed" {
			failed, ok = n, true
		} else if n > 0 {
			counts[m[1]] = n
		}
	}
	return counts, failed, ok
}

// mountsUnder lists the mount points of this mount namespace under dir.
func mountsUnder(t *testing.T, dir string) []string {
	t.Helper()
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	var under []string
	for line := range strings.Lines(string(data)) {
		fields := strings.Fields(line)
		if len(fields) > 4 && strings.HasPrefix(fields[4], dir+"/") {
			under = append(under, fields[4])
		}
	}
	return under
}
