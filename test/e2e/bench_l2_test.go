package e2e

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/test/traffic"
)

// l2Runs is how many failovers BenchmarkL2Failover measures of each kind.
const l2Runs = 10

// BenchmarkL2Failover measures what a client on the LAN sees when the owner of a Service
// address fails, l2Runs times each: its link goes down, its agent is killed (SIGKILL), its
// agent is frozen (SIGSTOP, then SIGCONT). The client opens a connection every 10 ms; the
// metric is the longest time between two answered requests. Targets: p50 ≤ 0.5 s, max ≤ 1 s.
func BenchmarkL2Failover(b *testing.B) {
	for range b.N {
		x := newL2Lab(b)
		c := traffic.NewClient(x.client)
		c.Timeout = 500 * time.Millisecond
		for _, how := range []string{"link down", "SIGKILL", "SIGSTOP"} {
			var gaps []time.Duration
			for range l2Runs {
				gaps = append(gaps, x.failover(b, c, how))
			}
			slices.Sort(gaps)
			name := strings.ReplaceAll(strings.ToLower(how), " ", "")
			b.ReportMetric(float64(gaps[len(gaps)/2].Milliseconds()), name+"-p50-ms")
			b.ReportMetric(float64(gaps[len(gaps)-1].Milliseconds()), name+"-max-ms")
		}
	}
}
