package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"

	"github.com/sluice-lb/sluice/bgp"
	"github.com/sluice-lb/sluice/internal/localapi"
	"github.com/sluice-lb/sluice/internal/model"
	"github.com/sluice-lb/sluice/internal/source"
	"github.com/sluice-lb/sluice/internal/version"
	"github.com/sluice-lb/sluice/ipam"
)

// features says which subsystems of the design this agent runs and which are not there
// yet, so that the agent, the status API and the demo say honestly what is missing.
func features(cfg Config) map[string]string {
	f := map[string]string{
		"model":      "running",
		"ipam":       "not implemented yet in Kubernetes mode: Services keep only addresses they already have",
		"datapath":   "off: no --devices given",
		"bgp":        "running: embedded GoBGP, advertise only",
		"l2announce": "running: ARP/NDP answers for the addresses this node owns, heartbeats between agents",
	}
	if len(cfg.Devices) > 0 {
		f["datapath"] = "running: XDP and TCX on " + strings.Join(cfg.Devices, ", ")
	}
	if cfg.Mode() == "standalone" {
		f["ipam"] = "running: addresses from the file's IPPools, kept in " + filepath.Join(cfg.StateDir, ipam.StateFile)
	} else if cfg.IPAMController {
		f["ipam"] = "running: the leader-elected controller (Lease " + cfg.Namespace + "/" + ipamLease + ") writes Services' status"
	} else {
		f["ipam"] = "off here (--ipam-controller=false): another instance writes Services' status"
	}
	return f
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
	dp      *datapath // nil without --devices
	// trigger asks the model loop for a rebuild; buffered, so requests coalesce.
	trigger  chan struct{}
	features map[string]string
	retry    time.Duration // current datapath retry backoff; owned by the model loop

	mu         sync.Mutex // guards the fields below
	status     localapi.Status
	understood map[string]bool // log lines of the last build, to log only changes
	dpApplied  bool            // the datapath holds a complete model
	// builder builds the models, reusing what did not change.
	builder model.Builder
	// allocator is standalone mode's allocator, which remembers the addresses it gave out;
	// allocations the last allocation (nil before the first, and in Kubernetes mode).
	allocator   *ipam.Allocator
	allocations *ipam.Result
	// ipamCtl is the LB-IPAM controller (Kubernetes mode with IPAMController).
	ipamCtl *ipam.Controller
	// speaker announces the node's paths over BGP; bgpWarnings are the last ones logged.
	speaker     *bgp.Speaker
	planner     *bgp.Planner
	bgpWarnings string
	nodeSeen    bool // this node's Node object was in a model: its disappearance means it left
	// l2 answers ARP/NDP for the addresses this node owns.
	l2 *l2
	// health serves the healthCheckNodePorts of externalTrafficPolicy Local Services.
	health *healthChecks
}

// ipamLease names the Lease the agents' IPAM controllers elect their leader with.
const ipamLease = "sluice-ipam"

// New checks cfg and opens the agent's listeners. src yields the input objects.
func New(cfg Config, log *slog.Logger, src source.Source) (*Agent, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	a := &Agent{cfg: cfg, log: log, src: src, store: source.NewStore(), metrics: newMetrics(), understood: map[string]bool{},
		trigger: make(chan struct{}, 1), features: features(cfg), speaker: bgp.NewSpeaker(log.With("component", "bgp")),
		planner: bgp.NewPlanner(cfg.NodeName),
		l2:      newL2(cfg, log.With("component", "l2")), health: newHealthChecks(cfg.NodeName, log.With("component", "healthcheck"))}
	a.status = localapi.Status{Version: version.Version, Node: cfg.NodeName, Mode: cfg.Mode(), Source: cfg.ConfigPath, Features: a.features}
	a.metrics.registry.MustRegister(newBGPCollector(a), l2Collector{a.l2})
	var err error
	if a.http, err = a.listenHTTP(); err != nil {
		return nil, err
	}
	if len(cfg.Devices) > 0 {
		if a.dp, err = openDatapath(cfg, log.With("component", "datapath")); err != nil {
			a.closeHTTP()
			return nil, err
		}
		a.metrics.registry.MustRegister(a.dp.collector())
	}
	h := localapi.Handlers{Status: a.Status, BGPPeers: a.BGPPeers, L2: a.l2.status}
	if a.dp != nil {
		h.Services, h.Conntrack = a.dp.services, a.dp.conntrack
	}
	if cfg.Mode() == "kubernetes" && cfg.IPAMController {
		if a.ipamCtl, err = NewIPAMController(cfg, log, false); err != nil {
			a.closeHTTP()
			if a.dp != nil {
				a.dp.close()
			}
			return nil, err
		}
	}
	if cfg.Mode() == "standalone" {
		h.Allocations = a.Allocations
		path := filepath.Join(cfg.StateDir, ipam.StateFile)
		st, err := ipam.ReadState(path)
		if err != nil {
			log.Warn("the addresses given out before could not be read: allocating afresh (Services whose status has an address keep it)", "error", err)
		}
		a.allocator = ipam.NewAllocator(ipam.Options{RequireClass: cfg.RequireLBClass}, st)
	}
	if a.api, err = localapi.Listen(cfg.StateDir, h); err != nil {
		a.closeHTTP()
		if a.dp != nil {
			a.dp.close()
		}
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
	for name, state := range a.features {
		if state != "running" && !strings.HasPrefix(state, "running:") {
			a.log.Info("not in this build yet", "subsystem", name, "state", state)
		}
	}
	a.checkDevices()
	var event func(types.NamespacedName, types.UID, string)
	if a.cfg.Mode() == "kubernetes" {
		event = a.startEvents(ctx)
	}
	a.l2.start(ctx, event)
	a.health.start(ctx)

	var wg sync.WaitGroup
	errc := make(chan error, 6+len(a.http))
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
	run("source", func(ctx context.Context) error { return a.src.Run(ctx, events) })
	run("local api", a.api.Serve)
	for _, h := range a.http {
		run("http "+h.ln.Addr().String(), h.serve)
	}
	if a.ipamCtl != nil {
		run("ipam controller", a.ipamCtl.Start)
	}
	if a.cfg.Mode() == "kubernetes" && a.cfg.Rest != nil {
		run("bgp status", a.writeBGPStatus)
	}
	if a.dp != nil {
		run("conntrack gc", a.collectConntrack)
		run("datapath events", func(ctx context.Context) error { return a.dp.watchEvents(ctx, a.metrics.datapathEvents) })
		run("pod devices", a.dp.watchPods)
	}
	run("model", func(ctx context.Context) error {
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-a.trigger:
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
			if a.store.Synced() && !ev.More { // the rest of a batch is on its way: one rebuild for all
				a.poke()
			}
		}
	}
	cancel()
	wg.Wait()
	closeCtx, closeCancel := context.WithTimeout(context.Background(), 5*time.Second)
	a.speaker.Close(closeCtx, false)
	closeCancel()
	if a.dp != nil {
		if err := a.dp.close(); err != nil {
			a.log.Warn("closing the datapath", "error", err)
		}
	}
	close(errc)
	var errs []error
	for err := range errc {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// collectConntrack deletes expired flows every BPF.GCInterval. The datapath keeps running
// meanwhile; between runs its LRU map evicts the oldest flows when full.
func (a *Agent) collectConntrack(ctx context.Context) error {
	every := a.cfg.BPF.GCInterval
	if every <= 0 {
		every = 30 * time.Second
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		start := time.Now()
		seen, deleted, err := a.dp.collectConntrack()
		a.metrics.conntrackEntries.Set(float64(seen - deleted))
		a.metrics.conntrackCollected.Add(float64(deleted))
		if err != nil {
			a.log.Warn("conntrack gc", "error", err)
			continue
		}
		a.log.Debug("conntrack gc", "entries", seen, "deleted", deleted, "took", time.Since(start))
	}
}

// poke asks for a rebuild; a rebuild already due absorbs it.
func (a *Agent) poke() {
	select {
	case a.trigger <- struct{}{}:
	default:
	}
}

// rebuild builds the model from the store and publishes it.
func (a *Agent) rebuild() {
	start := time.Now()
	objs, inputProblems := a.store.List()
	in, errs := model.Collect(objs)
	inputProblems = append(inputProblems, errs...)
	m, problems := a.builder.Build(in, model.Options{Namespace: a.cfg.Namespace, ExternalIPCIDRs: a.cfg.ExternalIPCIDRs, LoadBalancerClass: a.cfg.LBClass})
	elapsed := time.Since(start)
	a.metrics.builds.Inc()
	a.metrics.buildSeconds.Observe(elapsed.Seconds())

	st := localapi.StatusOf(m, in, problems, inputProblems)
	st.Version, st.Node, st.Mode, st.Source, st.Features = version.Version, a.cfg.NodeName, a.cfg.Mode(), a.cfg.ConfigPath, a.features
	st.Synced, st.BuiltAt = true, time.Now()
	a.recordMetrics(in, problems, inputProblems)
	a.logChanges(st, elapsed)

	phase := time.Now()
	var lbIPs map[types.NamespacedName][]netip.Addr
	if a.cfg.Mode() == "standalone" {
		lbIPs = a.allocate(m)
	}
	allocated := time.Since(phase)
	a.mu.Lock()
	a.status = st
	a.mu.Unlock()
	phase = time.Now()
	if a.dp != nil {
		a.applyDatapath(m, lbIPs)
	}
	programmed := time.Since(phase)
	phase = time.Now()
	a.announce(m, lbIPs)
	announced := time.Since(phase)
	phase = time.Now()
	a.l2.update(m, lbIPs)
	if a.dp != nil { // the datapath replaces kube-proxy, which would serve them otherwise
		a.health.update(m)
	}
	a.log.Debug("rebuild", "model", elapsed, "allocation", allocated, "datapath", programmed, "bgp", announced, "l2", time.Since(phase), "total", time.Since(start))
}

// applyDatapath programs the model into the datapath; on failure it retries with backoff
// (up to 30s) until a rebuild succeeds.
func (a *Agent) applyDatapath(m *model.Model, lbIPs map[types.NamespacedName][]netip.Addr) {
	start := time.Now()
	st, conflicts, err := a.dp.apply(m, lbIPs)
	a.metrics.datapathSeconds.Observe(time.Since(start).Seconds())
	a.metrics.datapathWrites.Add(float64(st.Writes()))
	for _, c := range conflicts {
		a.log.Warn("frontend claimed twice", "frontend", c.Frontend.String(), "kept", c.Kept.String(), "dropped", c.Dropped.String())
	}
	if st.Writes() > 0 {
		a.log.Info("datapath programmed", "backends", st.BackendsUpdated, "backendsDeleted", st.BackendsDeleted,
			"frontends", st.FrontendsUpdated, "frontendsDeleted", st.FrontendsDeleted, "tables", st.TablesWritten,
			"slots", st.SlotsWritten, "took", time.Since(start))
	}
	if err != nil {
		a.metrics.datapathErrors.Inc()
		a.retry = min(max(2*a.retry, 100*time.Millisecond), 30*time.Second)
		a.log.Error("datapath not fully programmed; retrying", "error", err, "in", a.retry)
		time.AfterFunc(a.retry, a.poke)
		return
	}
	a.retry = 0
	a.mu.Lock()
	a.dpApplied = true
	a.mu.Unlock()
}

// ready reports whether the agent serves what its input says: the source synced, a model
// built and, with a datapath, programmed.
func (a *Agent) isReady() (bool, string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.status.Synced {
		return false, "waiting for the source's initial objects"
	}
	if a.dp != nil && !a.dpApplied {
		return false, "waiting for the datapath to be programmed"
	}
	return true, ""
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
