package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/sluice-lb/sluice/internal/localapi"
	"github.com/sluice-lb/sluice/internal/model"
	"github.com/sluice-lb/sluice/internal/source"
	"github.com/sluice-lb/sluice/internal/version"
)

// Features lists the subsystems of the design and whether this build runs them, so that the
// agent, the status API and the demo say honestly what is not there yet.
var Features = map[string]string{
	"model":      "running",
	"ipam":       "not implemented yet: Services keep only addresses they already have",
	"datapath":   "not implemented yet: no eBPF load balancing",
	"bgp":        "not implemented yet: nothing is announced over BGP",
	"l2announce": "not implemented yet: no ARP/NDP answers",
}

// Agent is one node's Sluice.
type Agent struct {
	cfg     Config
	log     *slog.Logger
	src     source.Source
	store   *source.Store
	metrics *metrics
	api     *localapi.Server
	http    []*httpServer

	mu         sync.Mutex // guards the fields below
	status     localapi.Status
	understood map[string]bool // log lines of the last build, to log only changes
}

// New checks cfg and opens the agent's listeners. src yields the input objects.
func New(cfg Config, log *slog.Logger, src source.Source) (*Agent, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	a := &Agent{cfg: cfg, log: log, src: src, store: source.NewStore(), metrics: newMetrics(), understood: map[string]bool{}}
	a.status = localapi.Status{Version: version.Version, Node: cfg.NodeName, Mode: cfg.Mode(), Source: cfg.ConfigPath, Features: Features}
	var err error
	if a.http, err = a.listenHTTP(); err != nil {
		return nil, err
	}
	if a.api, err = localapi.Listen(cfg.StateDir, a.Status); err != nil {
		a.closeHTTP()
		return nil, err
	}
	return a, nil
}

// Addrs returns the bound addresses of the metrics and health endpoints (nil when disabled),
// useful when they were given as port 0.
func (a *Agent) Addrs() (metrics, health net.Addr) {
	for _, h := range a.http {
		if h.metrics {
			metrics = h.ln.Addr()
		}
		if h.health {
			health = h.ln.Addr()
		}
	}
	return metrics, health
}

// Status returns what the agent understood, for the local API.
func (a *Agent) Status() localapi.Status {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.status
}

// Run serves until ctx ends or the source fails. It returns after every goroutine it started
// has stopped.
func (a *Agent) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for name, state := range Features {
		if state != "running" {
			a.log.Info("not in this build yet", "subsystem", name, "state", state)
		}
	}
	a.checkDevices()

	var wg sync.WaitGroup
	errc := make(chan error, 3+len(a.http))
	run := func(name string, f func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(ctx); err != nil && ctx.Err() == nil {
				errc <- fmt.Errorf("%s: %w", name, err)
				cancel()
			}
		}()
	}
	events := make(chan source.Event, 256)
	trigger := make(chan struct{}, 1)
	run("source", func(ctx context.Context) error { return a.src.Run(ctx, events) })
	run("local api", a.api.Serve)
	for _, h := range a.http {
		run("http "+h.ln.Addr().String(), h.serve)
	}
	run("model", func(ctx context.Context) error {
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-trigger:
				a.rebuild()
			}
		}
	})

	for done := false; !done; {
		select {
		case <-ctx.Done():
			done = true
		case ev := <-events:
			if err := a.store.Apply(ev); err != nil {
				a.log.Error("source event dropped", "error", err)
				continue
			}
			if ev.Type == source.Synced {
				a.metrics.synced.Set(1)
				a.log.Info("source synced", "mode", a.cfg.Mode(), "source", a.cfg.ConfigPath)
			}
			if a.store.Synced() {
				select {
				case trigger <- struct{}{}:
				default: // a rebuild is already due; it will see this event too
				}
			}
		}
	}
	cancel()
	wg.Wait()
	close(errc)
	var errs []error
	for err := range errc {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// rebuild builds the model from the store and publishes it.
func (a *Agent) rebuild() {
	start := time.Now()
	objs, inputProblems := a.store.List()
	in, errs := model.Collect(objs)
	inputProblems = append(inputProblems, errs...)
	m, problems := model.Build(in, model.Options{Namespace: a.cfg.Namespace})
	elapsed := time.Since(start)
	a.metrics.builds.Inc()
	a.metrics.buildSeconds.Observe(elapsed.Seconds())

	st := localapi.StatusOf(m, in, problems, inputProblems)
	st.Version, st.Node, st.Mode, st.Source, st.Features = version.Version, a.cfg.NodeName, a.cfg.Mode(), a.cfg.ConfigPath, Features
	st.Synced, st.BuiltAt = true, time.Now()
	a.recordMetrics(in, problems, inputProblems)
	a.logChanges(st, elapsed)

	a.mu.Lock()
	a.status = st
	a.mu.Unlock()
}

func (a *Agent) recordMetrics(in model.Objects, problems []model.Problem, inputProblems []error) {
	for kind, n := range in.Count() {
		a.metrics.objects.WithLabelValues(kind).Set(float64(n))
	}
	a.metrics.problems.Reset()
	for _, p := range problems {
		verdict := "ignored"
		if p.Rejected {
			verdict = "rejected"
		}
		a.metrics.problems.WithLabelValues(p.Object.Kind, verdict).Inc()
	}
	a.metrics.inputProblems.Set(float64(len(inputProblems)))
}

// logChanges logs what the agent understood and what it rejected, only where it changed
// since the last build, so a large, steady input does not flood the log.
func (a *Agent) logChanges(st localapi.Status, elapsed time.Duration) {
	lines := map[string]slog.Level{}
	for _, p := range st.Pools {
		lines[fmt.Sprintf("IPPool %s: %v autoAssign=%v disabled=%v (%s addresses)", p.Name, p.Ranges, p.AutoAssign, p.Disabled, p.Size)] = slog.LevelInfo
	}
	for _, p := range st.Peers {
		lines[fmt.Sprintf("BGPPeer %s: %s AS%d (local AS%d)", p.Name, p.Address, p.ASN, p.LocalASN)] = slog.LevelInfo
	}
	for _, p := range st.InputProblems {
		lines["input: "+p] = slog.LevelWarn
	}
	for _, p := range st.Problems {
		lines[p.Error()] = slog.LevelWarn
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for line, level := range lines {
		if !a.understood[line] {
			if level == slog.LevelWarn {
				a.log.Warn("problem", "what", line)
			} else {
				a.log.Info("understood", "what", line)
			}
		}
	}
	for line := range a.understood {
		if _, ok := lines[line]; !ok {
			a.log.Info("gone", "what", line)
		}
	}
	a.understood = map[string]bool{}
	for line := range lines {
		a.understood[line] = true
	}
	a.log.Info("model built", "pools", len(st.Pools), "peers", len(st.Peers), "bgpAdvertisements", st.BGPAdverts,
		"l2Advertisements", st.L2Adverts, "services", st.Services, "loadBalancers", st.ServicesOurs,
		"problems", len(st.Problems), "inputProblems", len(st.InputProblems), "took", elapsed)
}

// checkDevices warns about --devices that do not exist (yet): the datapath will attach when
// they appear.
func (a *Agent) checkDevices() {
	for _, d := range a.cfg.Devices {
		if _, err := net.InterfaceByName(d); err != nil {
			a.log.Warn("device not found", "device", d, "error", err)
		}
	}
}
