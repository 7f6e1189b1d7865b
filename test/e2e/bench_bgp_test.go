package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/internal/modeltest"
	"github.com/sluice-lb/sluice/internal/testenv"
	"github.com/sluice-lb/sluice/test/lab"
	"github.com/sluice-lb/sluice/test/peers"
)

// benchPrefixes is how many prefixes BenchmarkBGP announces; benchAdds how many Services it
// then adds one by one, for the single-add latency's percentiles.
const (
	benchPrefixes = 10000
	benchAdds     = 100
)

// BenchmarkBGP measures, in the same run, how fast a real sluice-agent gets 10k Service
// addresses into FRR's BGP table, against FRR announcing the same number of prefixes to FRR:
// from the session's establishment to the receiver holding them all. Then, at that steady
// state, the latency of one more Service (a config change: reload, model build, allocation,
// one UPDATE) from the file's rename into place until FRR has it, 100 times over, and the
// agent's memory. FRR is polled every 2 ms over its vty socket. Numbers only.
func BenchmarkBGP(b *testing.B) {
	testenv.RequirePrivileged(b)
	testenv.RequireCommands(b, peers.FRRBgpd, "vtysh")
	for range b.N {
		agentTime, adds, rss := benchAgentToFRR(b)
		frrTime := benchFRRToFRR(b)
		slices.Sort(adds)
		b.ReportMetric(agentTime.Seconds(), "agent-s/10k")
		b.ReportMetric(frrTime.Seconds(), "frr-s/10k")
		b.ReportMetric(float64(adds[len(adds)/2].Milliseconds()), "add-p50-ms")
		b.ReportMetric(float64(adds[len(adds)*99/100-1].Milliseconds()), "add-p99-ms")
		b.ReportMetric(float64(adds[len(adds)-1].Milliseconds()), "add-max-ms")
		b.ReportMetric(float64(rss)/(1<<20), "agent-rss-MiB")
	}
}

// pair is two lab namespaces on one link: 10.77.0.1 (the receiving router) and 10.77.0.2.
func pair(b *testing.B) (*lab.Namespace, *lab.Namespace) {
	l := lab.ForTest(b)
	r, err := l.Namespace("r")
	if err != nil {
		b.Fatal(err)
	}
	n, err := l.Namespace("n")
	if err != nil {
		b.Fatal(err)
	}
	if err := l.Connect(lab.Endpoint{NS: r, Name: "eth0", Addrs: []string{"10.77.0.1/24"}}, lab.Endpoint{NS: n, Name: "eth0", Addrs: []string{"10.77.0.2/24"}}); err != nil {
		b.Fatal(err)
	}
	return r, n
}

// waitPrefixes polls FRR until its session with from is established and then until it has
// accepted want prefixes from it (returning when). established is when a poll last saw the
// session not established yet (FRR's own uptime counts whole seconds): the time from it to
// done is an upper bound of the time the prefixes took, by at most one poll. A session
// already up at the first poll falls back to FRR's uptime.
func waitPrefixes(b *testing.B, frr *peers.FRR, from netip.Addr, want int, timeout time.Duration) (established, done time.Time) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	up, first := false, true
	for {
		polled := time.Now()
		sessions, err := frr.Sessions(ctx)
		if err != nil {
			b.Fatal(err)
		}
		seen := false
		for _, s := range sessions {
			if s.Neighbor != from || s.State != peers.Established {
				continue
			}
			seen = true
			if first {
				established = polled.Add(-s.Up)
			}
			if s.PrefixesReceived >= want {
				return established, time.Now()
			}
		}
		if !seen && !up {
			established = polled
		}
		up, first = up || seen, false
		select {
		case <-ctx.Done():
			b.Fatalf("FRR has not accepted %d prefixes from %v: %+v", want, from, sessions)
		case <-time.After(2 * time.Millisecond):
		}
	}
}

func benchAgentToFRR(b *testing.B) (time.Duration, []time.Duration, int64) {
	r, n := pair(b)
	frr := peers.StartForTest(b, peers.StartFRR, r.Name, peers.Config{RouterID: netip.MustParseAddr("10.77.0.1"), ASN: 64512,
		Neighbors: []peers.Neighbor{{Address: netip.MustParseAddr("10.77.0.2"), ASN: 64513}}})
	dir := b.TempDir()
	path := filepath.Join(dir, "config.yaml")
	write := func(services int) {
		writeConfig(b, path, modeltest.BenchConfig("peerAddress: 10.77.0.1, peerASN: 64512, localASN: 64513, connectRetryTime: 1s", services))
	}
	write(benchPrefixes)
	agent, err := n.Start(agentBin, "--config", path, "--node-name", "node", "--state-dir", filepath.Join(dir, "state"),
		"--metrics-addr", "", "--health-addr", "")
	if err != nil {
		b.Fatal(err)
	}
	established, done := waitPrefixes(b, frr, netip.MustParseAddr("10.77.0.2"), benchPrefixes, 2*time.Minute)
	var adds []time.Duration
	for i := 1; i <= benchAdds; i++ {
		write(benchPrefixes + i) // the change happens when the new file is renamed into place
		start := time.Now()
		_, at := waitPrefixes(b, frr, netip.MustParseAddr("10.77.0.2"), benchPrefixes+i, time.Minute)
		adds = append(adds, at.Sub(start))
	}
	rss := rssOf(b, agent.PID)
	if err := agent.Stop(5 * time.Second); err != nil {
		b.Logf("agent stop: %v", err)
	}
	return done.Sub(established), adds, rss
}

func benchFRRToFRR(b *testing.B) time.Duration {
	r, n := pair(b)
	var networks []netip.Prefix
	base := netip.MustParseAddr("10.200.0.0")
	for range benchPrefixes {
		networks = append(networks, netip.PrefixFrom(base, 32))
		base = base.Next()
	}
	recv := peers.StartForTest(b, peers.StartFRR, r.Name, peers.Config{RouterID: netip.MustParseAddr("10.77.0.1"), ASN: 64512,
		Neighbors: []peers.Neighbor{{Address: netip.MustParseAddr("10.77.0.2"), ASN: 64513}}})
	peers.StartForTest(b, peers.StartFRR, n.Name, peers.Config{RouterID: netip.MustParseAddr("10.77.0.2"), ASN: 64513,
		Neighbors: []peers.Neighbor{{Address: netip.MustParseAddr("10.77.0.1"), ASN: 64512}}, Networks: networks})
	established, done := waitPrefixes(b, recv, netip.MustParseAddr("10.77.0.2"), benchPrefixes, 2*time.Minute)
	return done.Sub(established)
}

// rssOf reads a process's resident memory in bytes.
func rssOf(b *testing.B, pid int) int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for line := range strings.Lines(string(data)) {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			var kb int64
			fmt.Sscan(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), &kb)
			return kb << 10
		}
	}
	b.Fatalf("no VmRSS for pid %d", pid)
	return 0
}
