package bpf

import (
	"errors"
	"fmt"
	"os"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// DefaultPinPath is where the agent pins its maps on a node's bpffs.
const DefaultPinPath = "/sys/fs/bpf/sluice"

// Options configures [Load]. The zero value loads with every feature on and
// without pinning (what tests want); the agent sets PinPath.
type Options struct {
	// PinPath is a directory on a bpf filesystem (usually [DefaultPinPath],
	// or "<bpffs>/sluice" for a lab node) where the maps are pinned by name
	// and found again on the next Load. It is created if missing. Empty: no
	// pinning, the maps live as long as this process holds them.
	PinPath string

	// DisableCounters stops the programs from updating the counters map.
	DisableCounters bool
	// DisableVLAN makes the parser treat VLAN-tagged frames as non-IP
	// instead of looking through one 802.1Q / 802.1ad tag.
	DisableVLAN bool
	// DisableEvents stops the programs from writing to the events ring
	// buffer.
	DisableEvents bool

	// Sizes are the maps' capacities; zero fields keep the defaults of
	// lib/maps.h. A pinned map created with another size (or another
	// layout) is replaced, its entries carried over where they fit (see
	// [Datapath.Migrations]).
	Sizes MapSizes

	// Timeouts are the conntrack timeouts; zero fields keep the kernel's
	// defaults ([DefaultTimeouts]).
	Timeouts Timeouts

	// SNATPorts is the range of source ports of flows SNATed to remote backends, inclusive;
	// the zero range turns SNAT off (such flows are only DNATed, and their replies must
	// find their own way back). Keep it out of the node's ephemeral port range
	// (net.ipv4.ip_local_port_range) and reserve it (ip_local_reserved_ports) so that the
	// host's own connections never take one of its ports.
	SNATPorts PortRange

	// Clock is how the programs read the time. Nil: from jiffies, measured
	// once per process by [MeasureClock] (falling back to the kernel's
	// clock helper if that fails: see [Datapath.Clock]). A zero Clock makes
	// them call the helper.
	Clock *Clock
}

// MapSizes are the max_entries of the sized maps (0: the default).
type MapSizes struct {
	Frontends uint32 // default 65536
	Backends  uint32 // default 65536
	Maglev    uint32 // slots over all services; default 1<<20
	Conntrack uint32 // flows x 2 (both directions); default 262144
	Affinity  uint32 // default 65536
}

// nodeConfig returns the per-node constants (struct config) for opts.
func (o Options) nodeConfig(clock Clock) datapathConfig {
	t := o.Timeouts.withDefaults()
	return datapathConfig{
		ClockTickNs:      uint64(clock.Tick),
		ClockOffset:      clock.Offset,
		Counters:         boolByte(!o.DisableCounters),
		Vlan:             boolByte(!o.DisableVLAN),
		Events:           boolByte(!o.DisableEvents),
		CtTcpSynSent:     seconds(t.TCPSynSent),
		CtTcpEstablished: seconds(t.TCPEstablished),
		CtTcpFinWait:     seconds(t.TCPFinWait),
		CtTcpClose:       seconds(t.TCPClose),
		CtUdpUnreplied:   seconds(t.UDPUnreplied),
		CtUdpReplied:     seconds(t.UDPReplied),
		SnatPortMin:      o.SNATPorts.First,
		SnatPortMax:      o.SNATPorts.Last,
	}
}

// setSizes applies the non-zero sizes to the map specs.
func (s MapSizes) apply(spec *ebpf.CollectionSpec) error {
	for name, n := range map[string]uint32{
		datapathMapFrontends: s.Frontends,
		datapathMapBackends:  s.Backends,
		datapathMapMaglev:    s.Maglev,
		datapathMapConntrack: s.Conntrack,
		datapathMapAffinity:  s.Affinity,
	} {
		if n == 0 {
			continue
		}
		m, ok := spec.Maps[name]
		if !ok {
			return fmt.Errorf("bpf: object has no map %q", name)
		}
		m.MaxEntries = n
	}
	return nil
}

func boolByte(b bool) uint8 {
	if b {
		return 1
	}
	return 0
}

// Datapath is the loaded set of BPF programs and maps.
type Datapath struct {
	programs datapathPrograms
	maps     datapathMaps
	pinPath  string
	timeouts Timeouts
	// maglevMem is the maglev array mapped into this process (nil: write with syscalls).
	// Elements are 8-byte aligned: slot i is the uint32 at byte 8i.
	maglevMem []byte
	clock     Clock
	clockErr  error // why clock is the helper's, if MeasureClock failed
	// migrations are the pinned maps Load replaced because their definition changed.
	migrations []MapMigration
	// gcAfterWalk, in tests, runs between CollectConntrack's walk and its second look.
	gcAfterWalk func()
	// snatSuspects are the SNAT flows the last collection found dead (see collectSNAT).
	snatSuspects map[ConntrackKey]bool
}

// Load loads the embedded BPF objects into the kernel with the per-node
// constants from opts, reusing maps pinned under opts.PinPath.
func Load(opts Options) (*Datapath, error) {
	spec, err := loadDatapath()
	if err != nil {
		return nil, fmt.Errorf("bpf: read embedded objects: %w", err)
	}

	if r := opts.SNATPorts; r != (PortRange{}) && (r.First == 0 || r.Last < r.First) {
		return nil, fmt.Errorf("bpf: SNAT port range %s is not a range of ports", r)
	}
	cfg, ok := spec.Variables[datapathVarNodeConfig]
	if !ok {
		return nil, fmt.Errorf("bpf: object has no %q variable", datapathVarNodeConfig)
	}
	clock, clockErr := opts.clock()
	if err := cfg.Set(opts.nodeConfig(clock)); err != nil {
		return nil, fmt.Errorf("bpf: set %s: %w", datapathVarNodeConfig, err)
	}
	if err := opts.Sizes.apply(spec); err != nil {
		return nil, err
	}

	var collOpts ebpf.CollectionOptions
	var migrations []MapMigration
	if opts.PinPath != "" {
		if err := os.MkdirAll(opts.PinPath, 0o700); err != nil {
			return nil, fmt.Errorf("bpf: create pin directory: %w", err)
		}
		onBPFFS, err := IsBPFFS(opts.PinPath)
		if err != nil {
			return nil, err
		}
		if !onBPFFS {
			return nil, fmt.Errorf("bpf: pin directory %s: %w", opts.PinPath, ErrNotBPFFS)
		}
		collOpts.Maps.PinPath = opts.PinPath
		if migrations, err = migratePinned(spec, opts.PinPath); err != nil {
			return nil, err
		}
	} else {
		// The C side pins by name; without a directory, pin nothing.
		for _, m := range spec.Maps {
			m.Pinning = ebpf.PinNone
		}
	}

	// Programs and maps only: the .rodata map holding node_config (and the
	// BTF anchors of lib/structs.h) is created as the program's dependency,
	// and the Variables are not needed after Set above.
	var objs struct {
		datapathPrograms
		datapathMaps
	}
	if err := spec.LoadAndAssign(&objs, &collOpts); err != nil {
		return nil, fmt.Errorf("bpf: load objects: %w", err)
	}
	d := &Datapath{
		programs:   objs.datapathPrograms,
		maps:       objs.datapathMaps,
		pinPath:    opts.PinPath,
		timeouts:   opts.Timeouts.withDefaults(),
		clock:      clock,
		clockErr:   clockErr,
		migrations: migrations,
	}
	size := int(d.maps.Maglev.MaxEntries()) * 8
	if mem, err := unix.Mmap(d.maps.Maglev.FD(), 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED); err == nil {
		d.maglevMem = mem
	}
	return d, nil
}

// XDPProgram returns the XDP program, for attaching it elsewhere or running
// it with BPF_PROG_RUN in tests. It stays owned by the Datapath.
func (d *Datapath) XDPProgram() *ebpf.Program { return d.programs.SluiceXdp }

// TCIngressProgram returns the TCX ingress program (the forward path for
// what XDP did not handle). It stays owned by the Datapath.
func (d *Datapath) TCIngressProgram() *ebpf.Program { return d.programs.SluiceTcIngress }

// TCPodIngressProgram returns the TCX ingress program of pods' interfaces (the fallback for
// pod traffic the socket programs did not translate). It stays owned by the Datapath.
func (d *Datapath) TCPodIngressProgram() *ebpf.Program { return d.programs.SluiceTcPodIngress }

// TCEgressProgram returns the TCX egress program (the reply path). It stays
// owned by the Datapath.
func (d *Datapath) TCEgressProgram() *ebpf.Program { return d.programs.SluiceTcEgress }

// AttachTCX attaches the TCX ingress and egress programs to the interface
// with index ifindex (in the calling thread's network namespace), after any
// programs already there. Closing the returned links detaches them; on error
// nothing stays attached.
func (d *Datapath) AttachTCX(ifindex int) (ingress, egress link.Link, err error) {
	ingress, err = link.AttachTCX(link.TCXOptions{
		Interface: ifindex,
		Program:   d.programs.SluiceTcIngress,
		Attach:    ebpf.AttachTCXIngress,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("bpf: attach TCX ingress to ifindex %d: %w", ifindex, err)
	}
	egress, err = link.AttachTCX(link.TCXOptions{
		Interface: ifindex,
		Program:   d.programs.SluiceTcEgress,
		Attach:    ebpf.AttachTCXEgress,
	})
	if err != nil {
		ingress.Close()
		return nil, nil, fmt.Errorf("bpf: attach TCX egress to ifindex %d: %w", ifindex, err)
	}
	return ingress, egress, nil
}

// AttachXDP attaches the XDP program to the interface with index ifindex (in
// the calling thread's network namespace). flags picks the mode; 0 lets the
// kernel use native mode where the driver supports it. Closing the returned
// link detaches the program.
func (d *Datapath) AttachXDP(ifindex int, flags link.XDPAttachFlags) (link.Link, error) {
	l, err := link.AttachXDP(link.XDPOptions{
		Program:   d.programs.SluiceXdp,
		Interface: ifindex,
		Flags:     flags,
	})
	if err != nil {
		return nil, fmt.Errorf("bpf: attach XDP to ifindex %d: %w", ifindex, err)
	}
	return l, nil
}

// Counters reads every counter, summed over all CPUs.
func (d *Datapath) Counters() (Counters, error) {
	var (
		out    Counters
		perCPU []datapathCounter
	)
	for i := range out {
		if err := d.maps.Counters.Lookup(uint32(i), &perCPU); err != nil {
			return Counters{}, fmt.Errorf("bpf: read counter %s: %w", Counter(i), err)
		}
		for _, v := range perCPU {
			out[i].Packets += v.Packets
			out[i].Bytes += v.Bytes
		}
	}
	return out, nil
}

// Unpin removes the pins of the maps this Datapath pinned, so that they are
// freed once no program or process holds them. The pin directory stays.
// Without a PinPath it does nothing.
func (d *Datapath) Unpin() error {
	if d.pinPath == "" {
		return nil
	}
	var errs []error
	for _, m := range d.pinnedMaps() {
		if err := m.Unpin(); err != nil {
			errs = append(errs, fmt.Errorf("bpf: unpin map %s: %w", m, err))
		}
	}
	return errors.Join(errs...)
}

// pinnedMaps are the maps pinned by name (all but the events ring buffer).
func (d *Datapath) pinnedMaps() []*ebpf.Map {
	return []*ebpf.Map{d.maps.Counters, d.maps.Frontends, d.maps.Backends, d.maps.Maglev, d.maps.Conntrack, d.maps.Affinity, d.maps.SourceRanges, d.maps.SockRev, d.maps.Snat, d.maps.SnatAddrs, d.maps.BackendNodes}
}

// Close releases the programs and maps held by this Datapath. Attached links
// keep their program alive until they are closed; pinned maps stay pinned.
func (d *Datapath) Close() error {
	if d.maglevMem != nil {
		_ = unix.Munmap(d.maglevMem)
		d.maglevMem = nil
	}
	var errs []error
	if err := d.programs.Close(); err != nil {
		errs = append(errs, fmt.Errorf("bpf: close programs: %w", err))
	}
	if err := d.maps.Close(); err != nil {
		errs = append(errs, fmt.Errorf("bpf: close maps: %w", err))
	}
	return errors.Join(errs...)
}
