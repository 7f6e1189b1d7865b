package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/types"

	"github.com/sluice-lb/sluice/bpf"
	"github.com/sluice-lb/sluice/internal/localapi"
	"github.com/sluice-lb/sluice/internal/model"
	"github.com/sluice-lb/sluice/lb"
)

// datapath is the node's eBPF load balancer: programs loaded and attached to the devices,
// maps pinned under <bpffs>/sluice, and the Syncer that keeps them at the model's Services.
type datapath struct {
	mu      sync.Mutex // serialises the syncer: model loop, API queries
	cfg     Config
	log     *slog.Logger
	dp      *bpf.Datapath
	syncer  *lb.Syncer
	linkDir string
	// attached are the devices whose programs are attached; pods the pod devices'.
	attached map[string]bool
	pods     map[string]int // pod device name -> the ifindex its programs are attached to
	// snat4 and snat6 are the SNAT source addresses the maps hold (set).
	snat4, snat6 netip.Addr
	snatSet      bool
	// nodePortsReported is the last list of nodePorts outside the range that was logged.
	nodePortsReported string
	// nodes are the addresses of nodesFrom by name (nodeAddrs).
	nodes     map[string][]netip.Addr
	nodesFrom []*model.Node
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
		Maglev: sz.Maglev, Conntrack: sz.Conntrack, Affinity: sz.Affinity}, SNATPorts: cfg.BPF.SNATPorts})
	if err != nil {
		return nil, fmt.Errorf("loading the datapath (maps pinned in %s): %w", pin, err)
	}
	for _, m := range dp.Migrations() {
		log.Warn("pinned map replaced: its definition changed (a size flag or a new version); entries carried over where they fit",
			"map", m.Map, "change", m.Reason, "copied", m.Copied, "dropped", m.Dropped, "note", m.Note)
	}
	if clock, err := dp.Clock(); err != nil {
		log.Warn("the datapath reads the clock through a kernel helper on every packet (slower): measuring the jiffies clock failed", "error", err)
	} else {
		log.Debug("datapath clock from jiffies", "tick", clock.Tick)
	}
	d := &datapath{cfg: cfg, log: log, dp: dp, linkDir: filepath.Join(pin, "links"), attached: map[string]bool{}, pods: map[string]int{}}
	if err := bpf.DetachDevices(d.linkDir, append(slices.Clone(cfg.Devices), slices.Collect(maps.Keys(d.podDevices()))...)); err != nil {
		log.Warn("detaching devices no longer configured", "error", err)
	}
	d.attach()
	if err := d.attachPods(); err != nil {
		log.Warn("attaching to pod devices", "error", err)
	}
	if err := d.attachCgroup(); err != nil {
		log.Error("socket load balancing is off: cluster IPs are not served on this node", "error", err)
	}
	for what, r := range map[string]bpf.PortRange{"SNAT": cfg.BPF.SNATPorts, "node": cfg.BPF.NodePorts} {
		if r == (bpf.PortRange{}) {
			continue
		}
		if err := reservePorts(r); err != nil {
			log.Warn("could not reserve ports: a connection of this host may take one and collide with the datapath's",
				"ports", what, "range", r.String(), "error", err)
		}
	}
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

// podDevices are the interfaces that match --pod-devices (and are not --devices), by name,
// with their ifindex.
func (d *datapath) podDevices() map[string]int {
	if len(d.cfg.PodDevices) == 0 {
		return nil
	}
	ifaces, err := net.Interfaces()
	if err != nil {
		return nil
	}
	out := map[string]int{}
	for _, iface := range ifaces {
		if slices.Contains(d.cfg.Devices, iface.Name) {
			continue
		}
		for _, p := range d.cfg.PodDevices {
			if ok, _ := filepath.Match(p, iface.Name); ok {
				out[iface.Name] = iface.Index
				break
			}
		}
	}
	return out
}

// attachPods attaches the pod fallback to the pod devices that appeared and removes the
// pinned links of those that are gone.
func (d *datapath) attachPods() error {
	if len(d.cfg.PodDevices) == 0 {
		return nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	present := d.podDevices()
	var errs []error
	for dev, index := range present {
		if d.pods[dev] == index { // a device recreated under its name has another index
			continue
		}
		if err := d.dp.AttachPodDevice(dev, d.linkDir); err != nil {
			errs = append(errs, err)
			continue
		}
		d.pods[dev] = index
		d.log.Info("pod fallback attached", "device", dev, "programs", "tcx ingress (pod), tcx egress")
	}
	gone := false
	for dev := range d.pods {
		if _, ok := present[dev]; !ok {
			delete(d.pods, dev)
			gone = true
		}
	}
	if gone {
		errs = append(errs, bpf.DetachDevices(d.linkDir, append(slices.Clone(d.cfg.Devices), slices.Collect(maps.Keys(present))...)))
	}
	return errors.Join(errs...)
}

// watchPods attaches to new pod devices every second.
func (d *datapath) watchPods(ctx context.Context) error {
	if len(d.cfg.PodDevices) == 0 {
		return nil
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		if err := d.attachPods(); err != nil {
			d.log.Warn("attaching to pod devices", "error", err)
		}
	}
}

// attachCgroup attaches the socket programs to --cgroup-root (mounting the cgroup v2
// hierarchy there if needed), or detaches them with --socket-lb=false.
func (d *datapath) attachCgroup() error {
	if !d.cfg.BPF.SocketLB {
		if err := bpf.DetachCgroup(d.linkDir); err != nil {
			d.log.Warn("detaching the socket programs (--socket-lb=false)", "error", err)
		}
		return nil
	}
	root := d.cfg.BPF.CgroupRoot
	mounted, err := bpf.MountCgroup2(root)
	if err != nil {
		return fmt.Errorf("--cgroup-root: %s is not a cgroup v2 directory and mounting the hierarchy there failed: %w", root, err)
	}
	if mounted {
		d.log.Info("mounted the cgroup v2 hierarchy at --cgroup-root", "path", root)
	}
	if err := d.dp.AttachCgroup(root, d.linkDir); err != nil {
		return fmt.Errorf("--cgroup-root: %w", err)
	}
	d.log.Info("socket load balancing attached", "cgroup", root, "programs", "connect, sendmsg, recvmsg, getpeername (IPv4, IPv6)")
	return nil
}

// nodeAddrs are the model's nodes' addresses by name, kept while the nodes are the same
// objects.
func (d *datapath) nodeAddrs(m *model.Model) map[string][]netip.Addr {
	if len(m.Nodes) == len(d.nodesFrom) && slices.EqualFunc(m.Nodes, d.nodesFrom, func(a, b *model.Node) bool { return a == b }) {
		return d.nodes
	}
	d.nodes = make(map[string][]netip.Addr, len(m.Nodes))
	for _, n := range m.Nodes {
		d.nodes[n.Name] = n.Addresses
	}
	d.nodesFrom = slices.Clone(m.Nodes)
	return d.nodes
}

// reportNodePorts logs the Service ports whose nodePort is outside --node-port-range, when
// that list changes.
func (d *datapath) reportNodePorts(m *model.Model) {
	r := d.cfg.BPF.NodePorts
	if r.Last == 0 {
		return
	}
	var out []string
	for _, s := range m.Services {
		for _, p := range s.Ports {
			if p.NodePort != 0 && (p.NodePort < r.First || p.NodePort > r.Last) {
				out = append(out, fmt.Sprintf("%s port %s: nodePort %d", s.Key, p.Name, p.NodePort))
			}
		}
	}
	if list := strings.Join(out, "; "); list != d.nodePortsReported {
		d.nodePortsReported = list
		if list != "" {
			d.log.Warn("nodePorts outside --node-port-range are not served", "range", r.String(), "ports", list)
		}
	}
}

// setSNATAddrs sets the node's own addresses in the datapath: the source of flows SNATed to
// endpoints on other nodes, and where other nodes' DSR tunnels end. They are, per family, its
// Node object's first address, else the first device's. Flows SNATed before an address
// changes lose their replies (their snat entries hold the old one).
func (d *datapath) setSNATAddrs(nodeAddrs []netip.Addr) error {
	var v4, v6 netip.Addr
	pick := func(addrs []netip.Addr) {
		for _, a := range addrs {
			if a = a.Unmap(); a.Is4() && !v4.IsValid() {
				v4 = a
			} else if a.Is6() && !v6.IsValid() {
				v6 = a
			}
		}
	}
	pick(nodeAddrs)
	if (!v4.IsValid() || !v6.IsValid()) && len(d.cfg.Devices) > 0 {
		pick(deviceAddresses(d.cfg.Devices[0])) // per family: a Node with an IPv4 address only
	}
	if d.snatSet && v4 == d.snat4 && v6 == d.snat6 {
		return nil
	}
	if err := d.dp.SetSNATAddrs(v4, v6); err != nil {
		return err
	}
	d.snat4, d.snat6, d.snatSet = v4, v6, true
	d.log.Info("the node's addresses for SNAT and DSR", "ipv4", v4, "ipv6", v6, "snatPorts", d.cfg.BPF.SNATPorts.String())
	return nil
}

// deviceAddresses are the global unicast addresses of the interface named dev.
func deviceAddresses(dev string) []netip.Addr {
	iface, err := net.InterfaceByName(dev)
	if err != nil {
		return nil
	}
	as, err := iface.Addrs()
	if err != nil {
		return nil
	}
	var out []netip.Addr
	for _, a := range as {
		if p, err := netip.ParsePrefix(a.String()); err == nil && p.Addr().IsGlobalUnicast() {
			out = append(out, p.Addr())
		}
	}
	return out
}

// reservePorts adds r to net.ipv4.ip_local_reserved_ports (which covers IPv6 too) of this
// network namespace, so that the host never picks one of its ports for a connection of its
// own.
func reservePorts(r bpf.PortRange) error {
	const path = "/proc/sys/net/ipv4/ip_local_reserved_ports"
	cur, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	list := strings.TrimSpace(string(cur))
	for _, part := range strings.Split(list, ",") {
		if part == r.String() {
			return nil
		}
	}
	if list != "" {
		list += ","
	}
	return os.WriteFile(path, []byte(list+r.String()), 0o644)
}

// apply programs the model's Services.
func (d *datapath) apply(m *model.Model, lbIPs map[types.NamespacedName][]netip.Addr) (lb.SyncStats, []lb.Conflict, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	attachErr := d.attach()
	addrs := nodeAddresses(m, d.cfg.NodeName)
	np := d.cfg.BPF.NodePorts
	svcs, conflicts := lb.FromModel(m.Services, lb.Options{LoadBalancerIPs: lbIPs, Algorithm: d.cfg.BPF.Algorithm, Node: d.cfg.NodeName,
		NodeAddresses: addrs, Zone: nodeZone(m, d.cfg.NodeName), NodePortFirst: np.First, NodePortLast: np.Last,
		DSR: d.cfg.BPF.DSR, Nodes: d.nodeAddrs(m)})
	d.reportNodePorts(m)
	snatErr := d.setSNATAddrs(addrs)
	st, err := d.syncer.Set(svcs)
	return st, conflicts, errors.Join(attachErr, snatErr, err)
}

// services reads back what the maps hold: every frontend with its backends and their share
// of its Maglev table.
func (d *datapath) services() ([]localapi.ServiceStatus, error) {
	d.mu.Lock()
	keys := d.syncer.ServiceKeys()
	d.mu.Unlock()
	frontends, err := d.dp.Frontends()
	if err != nil {
		return nil, err
	}
	backends, err := d.dp.Backends()
	if err != nil {
		return nil, err
	}
	var out []localapi.ServiceStatus
	for k, f := range frontends {
		st := localapi.ServiceStatus{Frontend: fmt.Sprintf("%s/%s", netip.AddrPortFrom(k.Addr, k.Port), lb.Protocol(k.Proto)),
			ServiceID: f.ServiceID, Slots: f.MaglevSize, Algorithm: "maglev", Backends: []localapi.BackendStatus{}}
		if key, ok := keys[f.ServiceID]; ok {
			st.Service = key.String()
		}
		if f.Flags&bpf.FrontendRandom != 0 {
			st.Algorithm = "random"
		}
		if f.AffinityTimeout > 0 {
			st.Affinity = "ClientIP " + f.AffinityTimeout.String()
		}
		slots, err := d.dp.Maglev(f.MaglevBase, f.MaglevSize)
		if err != nil {
			return nil, err
		}
		share := map[uint32]int{}
		for _, id := range slots {
			share[id]++
		}
		for id, n := range share {
			b := backends[id]
			st.Backends = append(st.Backends, localapi.BackendStatus{ID: id, Address: netip.AddrPortFrom(b.Addr, b.Port).String(),
				State: lb.BackendState(b.State).String(), Slots: n})
		}
		sort.Slice(st.Backends, func(i, j int) bool { return st.Backends[i].Address < st.Backends[j].Address })
		out = append(out, st)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Service != out[j].Service {
			return out[i].Service < out[j].Service
		}
		return out[i].Frontend < out[j].Frontend
	})
	return out, nil
}

// conntrack reads up to limit conntrack entries.
func (d *datapath) conntrack(limit int) ([]localapi.ConntrackEntry, error) {
	now := bpf.MonotonicNow()
	var out []localapi.ConntrackEntry
	err := d.dp.WalkConntrack(func(keys []bpf.ConntrackKey, entries []bpf.ConntrackEntry) bool {
		for i, k := range keys {
			if len(out) >= limit {
				return false
			}
			e := entries[i]
			dir := "original"
			if k.Reply {
				dir = "reply"
			}
			out = append(out, localapi.ConntrackEntry{Proto: lb.Protocol(k.Proto).String(), Direction: dir,
				Src: k.Src.String(), Dst: k.Dst.String(), NAT: e.NAT.String(), State: e.State.String(),
				BackendID: e.BackendID, ServiceID: e.ServiceID, Age: (now - e.Created).Truncate(time.Second).String(),
				Idle: (now - e.LastSeen).Truncate(time.Second).String(), Packets: e.Packets, Bytes: e.Bytes})
		}
		return true
	})
	return out, err
}

// collectConntrack deletes expired flows.
func (d *datapath) collectConntrack() (seen, deleted int, err error) {
	st, err := d.dp.CollectConntrack(bpf.MonotonicNow())
	return st.Entries, st.Deleted, err
}

// collector exports the datapath's counters.
func (d *datapath) collector() prometheus.Collector { return newCountersCollector(d.dp) }

// close releases the agent's handles; maps and links stay pinned, so traffic keeps flowing
// while no agent runs.
func (d *datapath) close() error { return d.dp.Close() }
