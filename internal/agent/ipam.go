package agent

import (
	"errors"
	"log/slog"
	"net/netip"
	"path/filepath"
	"slices"

	"k8s.io/apimachinery/pkg/types"

	"github.com/sluice-lb/sluice/internal/localapi"
	"github.com/sluice-lb/sluice/internal/model"
	"github.com/sluice-lb/sluice/ipam"
)

// allocate runs the allocator over the model (standalone mode, where no controller writes
// the Services' status): the addresses remembered in the state directory count as each
// Service's status, the result is remembered in turn, and what changed is logged. It returns
// every Service's addresses for the datapath.
func (a *Agent) allocate(m *model.Model) map[types.NamespacedName][]netip.Addr {
	r, changed, remembered := a.allocator.Allocate(m)
	// Remembered before anyone is shown the result: a crash right after must not lose it.
	if remembered {
		path := filepath.Join(a.cfg.StateDir, ipam.StateFile)
		if err := a.allocator.WriteState(path); err != nil {
			// Kept in memory all the same: only a restart would lose it.
			a.log.Error("remembering the addresses given out", "file", path, "error", err)
		}
	}
	scope := "all"
	if a.allocator.Partial() {
		scope = "changed"
	}
	a.metrics.allocationRuns.WithLabelValues(scope).Inc()
	a.mu.Lock()
	prev := a.allocations
	a.allocations = r
	a.mu.Unlock()
	a.logAllocations(prev, r, changed)
	a.recordAllocations(r)
	return a.allocator.Addresses() // read before the next rebuild changes it
}

// logAllocations logs each of the changed Services whose addresses or reason differ from
// prev.
func (a *Agent) logAllocations(prev, r *ipam.Result, changed []types.NamespacedName) {
	for _, k := range changed {
		var was *ipam.Allocation
		if prev != nil {
			was = prev.Of(k)
		}
		al := r.Of(k)
		switch {
		case al == nil:
			if was != nil && len(was.IPs) > 0 {
				a.log.Info("load balancer addresses released", "service", k.String(), "ips", was.IPs)
			}
			continue
		case was != nil && slices.Equal(was.IPs, al.IPs) && was.Reason == al.Reason && was.Message == al.Message:
			continue
		}
		attrs := []any{"service", k.String(), "ips", al.IPs, "pools", al.Pools, "reason", al.Reason, "detail", al.Message}
		if al.Ready {
			a.log.Info("load balancer addresses", attrs...)
		} else {
			a.log.Warn("load balancer addresses incomplete", attrs...)
		}
	}
}

// recordAllocations sets the IPAM metrics.
func (a *Agent) recordAllocations(r *ipam.Result) {
	reasons := map[ipam.Reason]int{}
	for _, al := range r.Allocations {
		reasons[al.Reason]++
	}
	a.metrics.allocations.Reset()
	for reason, n := range reasons {
		a.metrics.allocations.WithLabelValues(string(reason)).Set(float64(n))
	}
	a.metrics.poolAddresses.Reset()
	for name, u := range r.Pools {
		for fam, used := range u.Used {
			a.metrics.poolAddresses.WithLabelValues(name, fam, "used").Set(float64(used))
			free, _ := u.Free[fam].Float64()
			a.metrics.poolAddresses.WithLabelValues(name, fam, "free").Set(free)
		}
	}
}

// Allocations returns the last allocation, for the local API.
func (a *Agent) Allocations() []localapi.Allocation {
	a.mu.Lock()
	defer a.mu.Unlock()
	return localapi.AllocationsOf(a.allocations)
}

// NewIPAMController returns the leader-elected LB-IPAM controller of cfg: Lease
// sluice-ipam in the agent's namespace, so that of all the agents (and any instance run
// with --ipam-only) one allocates at a time. Run on its own (serve), it serves metrics and
// health probes on cfg's addresses.
func NewIPAMController(cfg Config, log *slog.Logger, serve bool) (*ipam.Controller, error) {
	if cfg.Rest == nil {
		return nil, errors.New("the IPAM controller needs the Kubernetes API (no configuration given)")
	}
	opts := ipam.ControllerOptions{
		Config: cfg.Rest, LeaderElection: true, LeaseNamespace: cfg.Namespace, LeaseName: ipamLease,
		Allocate: ipam.Options{RequireClass: cfg.RequireLBClass}, Log: log.With("component", "ipam"),
		LoadBalancerClass: cfg.LBClass,
	}
	if serve {
		opts.MetricsAddr, opts.HealthAddr = cfg.MetricsAddr, cfg.HealthAddr
	}
	return ipam.NewController(opts)
}
