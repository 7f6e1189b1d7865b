package agent

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/sluice-lb/sluice/bpf"
	"github.com/sluice-lb/sluice/internal/model"
	"github.com/sluice-lb/sluice/lb"
)

// datapath is the node's eBPF load balancer: programs loaded and attached to the devices,
// maps pinned under <bpffs>/sluice, and the Syncer that keeps them at the model's Services.
type datapath struct {
	cfg     Config
	log     *slog.Logger
	dp      *bpf.Datapath
	syncer  *lb.Syncer
	linkDir string
	// attached are the devices whose programs are attached.
	attached map[string]bool
}

// openDatapath loads the programs (reusing pinned maps), attaches them to the devices
// through pinned links (updating an earlier agent's links in place) and reads the maps back.
// Nothing is removed from the maps until the first apply.
func openDatapath(cfg Config, log *slog.Logger) (*datapath, error) {
	if err := os.MkdirAll(cfg.BPFFS, 0o700); err != nil {
		return nil, fmt.Errorf("--bpffs: %w", err)
	}
	ok, err := bpf.IsBPFFS(cfg.BPFFS)
	if err != nil {
		return nil, fmt.Errorf("--bpffs: %w", err)
	}
	if !ok {
		// Under `ip netns exec` /sys is remounted without bpffs: mount one where we pin.
		if _, err := bpf.MountBPFFS(cfg.BPFFS); err != nil {
			return nil, fmt.Errorf("--bpffs: %s is not a bpf filesystem and mounting one failed: %w", cfg.BPFFS, err)
		}
		log.Warn("mounted a bpf filesystem at --bpffs myself: if this process has a mount namespace of its own "+
			"(a container without the host's bpffs, `ip netns exec`), pinned maps and program links die with it and a "+
			"restart loses conntrack; mount the host's bpffs there", "path", cfg.BPFFS)
	}
	pin := filepath.Join(cfg.BPFFS, "sluice")
	sz := cfg.BPF.Sizes
	dp, err := bpf.Load(bpf.Options{PinPath: pin, Sizes: bpf.MapSizes{Frontends: sz.Frontends, Backends: sz.Backends,
		Maglev: sz.Maglev, Conntrack: sz.Conntrack, Affinity: sz.Affinity}})
	if err != nil {
		return nil, fmt.Errorf("loading the datapath (maps pinned in %s): %w", pin, err)
	}
	d := &datapath{cfg: cfg, log: log, dp: dp, linkDir: filepath.Join(pin, "links"), attached: map[string]bool{}}
	if err := bpf.DetachDevices(d.linkDir, cfg.Devices); err != nil {
		log.Warn("detaching devices no longer configured", "error", err)
	}
	d.attach()
	d.syncer, err = lb.NewSyncer(lb.BPFTable{DP: dp}, lb.SyncerOptions{MaglevMinimum: cfg.BPF.MaglevMinimum, MaxBackends: cfg.BPF.Sizes.Backends})
	if err != nil {
		dp.Close()
		return nil, err
	}
	return d, nil
}

// attach attaches the programs to every configured device not attached yet; a missing
// device is reported and tried again on the next apply.
func (d *datapath) attach() error {
	var errs []error
	for _, dev := range d.cfg.Devices {
		if d.attached[dev] {
			continue
		}
		if err := d.dp.AttachDevice(dev, d.linkDir); err != nil {
			errs = append(errs, err)
			continue
		}
		d.attached[dev] = true
		d.log.Info("datapath attached", "device", dev, "programs", "xdp, tcx ingress, tcx egress")
	}
	return errors.Join(errs...)
}

// apply programs the model's Services.
func (d *datapath) apply(m *model.Model) (lb.SyncStats, []lb.Conflict, error) {
	attachErr := d.attach()
	svcs, conflicts := lb.FromModel(m.Services, lb.Options{RequestedIPs: d.cfg.Mode() == "standalone", Algorithm: d.cfg.BPF.Algorithm})
	st, err := d.syncer.Set(svcs)
	return st, conflicts, errors.Join(attachErr, err)
}

// close releases the agent's handles; maps and links stay pinned, so traffic keeps flowing
// while no agent runs.
func (d *datapath) close() error { return d.dp.Close() }
