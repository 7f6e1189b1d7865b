//go:build !linux

package agent

import (
	"context"
	"net/netip"

	"errors"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/types"

	"github.com/sluice-lb/sluice/internal/localapi"
	"github.com/sluice-lb/sluice/internal/model"
	"github.com/sluice-lb/sluice/lb"
)

type datapath struct{}

func openDatapath(Config, *slog.Logger) (*datapath, error) {
	return nil, errors.New("--devices: the eBPF datapath runs on Linux only")
}

func (*datapath) apply(*model.Model, map[types.NamespacedName][]netip.Addr) (lb.SyncStats, []lb.Conflict, error) {
	return lb.SyncStats{}, nil, nil
}
func (*datapath) close() error { return nil }

func (*datapath) collector() prometheus.Collector { return prometheus.NewRegistry() }

func (*datapath) watchEvents(context.Context, *prometheus.CounterVec) error { return nil }

func (*datapath) watchPods(context.Context) error { return nil }

func (*datapath) services() ([]localapi.ServiceStatus, error) { return nil, nil }

func (*datapath) conntrack(int) ([]localapi.ConntrackEntry, error) { return nil, nil }

func (*datapath) collectConntrack() (seen, deleted int, err error) { return 0, 0, nil }
