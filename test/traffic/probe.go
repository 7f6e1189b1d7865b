package traffic

import (
	"slices"
	"sync"
	"time"
)

// Probe opens a new connection with one request every interval, without waiting for the
// previous one, and records which were answered: what a client of a Service sees during a
// failover.
type Probe struct {
	stop    chan struct{}
	wg      sync.WaitGroup
	mu      sync.Mutex
	answers []Answer
	sent    int
}

// Answer is an answered request: when it was sent and who answered.
type Answer struct {
	Sent   time.Time
	Server string
}

// Probe starts probing addr over network every interval; each request waits up to the
// client's Timeout.
func (c *Client) Probe(network, addr string, every time.Duration) *Probe {
	p := &Probe{stop: make(chan struct{})}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			select {
			case <-p.stop:
				return
			case <-tick.C:
			}
			sent := time.Now()
			p.mu.Lock()
			p.sent++
			p.mu.Unlock()
			p.wg.Add(1)
			go func() {
				defer p.wg.Done()
				if server, err := c.Ask(network, addr); err == nil {
					p.mu.Lock()
					p.answers = append(p.answers, Answer{Sent: sent, Server: server})
					p.mu.Unlock()
				}
			}()
		}
	}()
	return p
}

// Stop ends the probe, waits for the requests in flight and returns what was answered.
func (p *Probe) Stop() ProbeResult {
	close(p.stop)
	p.wg.Wait()
	p.mu.Lock()
	defer p.mu.Unlock()
	answers := slices.Clone(p.answers)
	slices.SortFunc(answers, func(a, b Answer) int { return a.Sent.Compare(b.Sent) })
	return ProbeResult{Sent: p.sent, Answers: answers}
}

// ProbeResult is what a Probe saw, answers in the order they were sent.
type ProbeResult struct {
	Sent    int
	Answers []Answer
}

// MaxGap is the longest time between two answered requests, by when they were sent: the
// outage a client saw (plus up to one interval).
func (r ProbeResult) MaxGap() time.Duration {
	var gap time.Duration
	for i := 1; i < len(r.Answers); i++ {
		gap = max(gap, r.Answers[i].Sent.Sub(r.Answers[i-1].Sent))
	}
	return gap
}
