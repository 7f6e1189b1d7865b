//go:build !linux

package agent

import (
	"errors"
	"log/slog"

	"github.com/sluice-lb/sluice/internal/localapi"
	"github.com/sluice-lb/sluice/internal/model"
	"github.com/sluice-lb/sluice/lb"
)

type datapath struct{}

func openDatapath(Config, *slog.Logger) (*datapath, error) {
	return nil, errors.New("--devices: the eBPF datapath runs on Linux only")
}

func (*datapath) apply(*model.Model) (lb.SyncStats, []lb.Conflict, error) {
	return lb.SyncStats{}, nil, nil
}
func (*datapath) close() error { return nil }
