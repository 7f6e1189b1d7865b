package bpf

import (
	"errors"
	"fmt"
	"net/netip"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sys/unix"
)

// Typed access to the datapath's maps for the syncer, the garbage collector
// and sluicectl: thin, no policy. Writes are single syscalls per call (batch
// ones where the kernel has them); safe for concurrent use with each other
// and with the running programs.

func (k FrontendKey) raw() (datapathFrontendKey, error) {
	if !k.Addr.IsValid() {
		return datapathFrontendKey{}, fmt.Errorf("bpf: frontend address is not set")
	}
	return datapathFrontendKey{Addr: addr16(k.Addr), Port: htons(k.Port), Proto: k.Proto, Scope: uint8(k.Scope)}, nil
}

func (r datapathFrontendKey) key() FrontendKey {
	return FrontendKey{Addr: addrFrom16(r.Addr), Port: htons(r.Port), Proto: r.Proto, Scope: Scope(r.Scope)}
}

func (f Frontend) raw() datapathFrontend {
	return datapathFrontend{
		ServiceId:       f.ServiceID,
		MaglevBase:      f.MaglevBase,
		MaglevSize:      f.MaglevSize,
		AffinityTimeout: seconds(f.AffinityTimeout),
		Flags:           uint32(f.Flags),
	}
}

func (r datapathFrontend) value() Frontend {
	return Frontend{
		ServiceID:       r.ServiceId,
		MaglevBase:      r.MaglevBase,
		MaglevSize:      r.MaglevSize,
		AffinityTimeout: time.Duration(r.AffinityTimeout) * time.Second,
		Flags:           FrontendFlags(r.Flags),
	}
}

func (b Backend) raw() (datapathBackend, error) {
	if !b.Addr.IsValid() {
		return datapathBackend{}, fmt.Errorf("bpf: backend address is not set")
	}
	r := datapathBackend{Addr: addr16(b.Addr), Port: htons(b.Port), State: uint8(b.State)}
	if b.Remote {
		r.Flags = backendFlagRemote
	}
	return r, nil
}

func (r datapathBackend) value() Backend {
	return Backend{Addr: addrFrom16(r.Addr), Port: htons(r.Port), State: BackendState(r.State), Remote: r.Flags&backendFlagRemote != 0}
}

func (k ConntrackKey) raw() datapathCtKey {
	r := datapathCtKey{
		Saddr: addr16(k.Src.Addr()), Daddr: addr16(k.Dst.Addr()),
		Sport: htons(k.Src.Port()), Dport: htons(k.Dst.Port()),
		Proto: k.Proto,
	}
	if k.Reply {
		r.Dir = 1
	}
	return r
}

func (r datapathCtKey) key() ConntrackKey {
	return ConntrackKey{
		Src:   netip.AddrPortFrom(addrFrom16(r.Saddr), htons(r.Sport)),
		Dst:   netip.AddrPortFrom(addrFrom16(r.Daddr), htons(r.Dport)),
		Proto: r.Proto,
		Reply: r.Dir == 1,
	}
}

func (r datapathCtEntry) value() ConntrackEntry {
	e := ConntrackEntry{
		LastSeen:  time.Duration(r.LastSeen),
		Created:   time.Duration(r.Created),
		BackendID: r.BackendId,
		ServiceID: r.ServiceId,
		NAT:       netip.AddrPortFrom(addrFrom16(r.NatAddr), htons(r.NatPort)),
		State:     ConntrackState(r.State),
		Packets:   r.Packets,
		Bytes:     r.Bytes,
	}
	if r.Flags&ctFlagSNAT != 0 {
		e.SNATPort = htons(r.SnatPort)
	}
	return e
}

func (e ConntrackEntry) raw() datapathCtEntry {
	r := datapathCtEntry{
		LastSeen: uint64(e.LastSeen), Created: uint64(e.Created),
		BackendId: e.BackendID, ServiceId: e.ServiceID,
		NatAddr: addr16(e.NAT.Addr()), NatPort: htons(e.NAT.Port()),
		State: uint8(e.State), Packets: e.Packets, Bytes: e.Bytes,
	}
	if e.SNATPort != 0 {
		r.Flags, r.SnatPort = ctFlagSNAT, htons(e.SNATPort)
	}
	return r
}

// PutFrontend creates or replaces a frontend.
func (d *Datapath) PutFrontend(k FrontendKey, f Frontend) error {
	rk, err := k.raw()
	if err != nil {
		return err
	}
	rv := f.raw()
	if err := d.maps.Frontends.Put(&rk, &rv); err != nil {
		return fmt.Errorf("bpf: put frontend %v: %w", k, err)
	}
	return nil
}

// DeleteFrontend removes a frontend; one that is not there is no error.
func (d *Datapath) DeleteFrontend(k FrontendKey) error {
	rk, err := k.raw()
	if err != nil {
		return err
	}
	if err := d.maps.Frontends.Delete(&rk); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("bpf: delete frontend %v: %w", k, err)
	}
	return nil
}

// Frontends reads every frontend (for the read-back after a restart).
func (d *Datapath) Frontends() (map[FrontendKey]Frontend, error) {
	return readMap(d.maps.Frontends, "frontends", func(k datapathFrontendKey, v datapathFrontend) (FrontendKey, Frontend) {
		return k.key(), v.value()
	})
}

// readMap reads every entry of m (named what, for errors) into a Go map, through conv.
func readMap[K, V any, GK comparable, GV any](m *ebpf.Map, what string, conv func(K, V) (GK, GV)) (map[GK]GV, error) {
	out := map[GK]GV{}
	var (
		k K
		v V
	)
	it := m.Iterate()
	for it.Next(&k, &v) {
		gk, gv := conv(k, v)
		out[gk] = gv
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("bpf: read %s: %w", what, err)
	}
	return out, nil
}

// PutSourceRange admits new flows from clients in prefix to the frontends of service
// serviceID that have FrontendSourceRanges.
func (d *Datapath) PutSourceRange(serviceID uint32, prefix netip.Prefix) error {
	k := sourceRangeKey(serviceID, prefix)
	if err := d.maps.SourceRanges.Put(&k, uint8(1)); err != nil {
		return fmt.Errorf("bpf: put source range %v of service %d: %w", prefix, serviceID, err)
	}
	return nil
}

// DeleteSourceRange removes one; one that is not there is no error.
func (d *Datapath) DeleteSourceRange(serviceID uint32, prefix netip.Prefix) error {
	k := sourceRangeKey(serviceID, prefix)
	if err := d.maps.SourceRanges.Delete(&k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("bpf: delete source range %v of service %d: %w", prefix, serviceID, err)
	}
	return nil
}

// SourceRanges reads every service's source ranges (for the read-back after a restart).
func (d *Datapath) SourceRanges() (map[uint32][]netip.Prefix, error) {
	out := map[uint32][]netip.Prefix{}
	var k datapathSourceRangeKey
	var v uint8
	it := d.maps.SourceRanges.Iterate()
	for it.Next(&k, &v) {
		addr := netip.AddrFrom16(k.Addr)
		bits := int(k.Prefixlen) - 32
		if addr.Is4In6() {
			addr, bits = addr.Unmap(), bits-96
		}
		out[k.ServiceId] = append(out[k.ServiceId], netip.PrefixFrom(addr, bits))
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("bpf: read source ranges: %w", err)
	}
	return out, nil
}

// sourceRangeKey is the LPM key of prefix for serviceID: its bits after the service ID's 32,
// an IPv4 prefix as IPv4-mapped IPv6 like every address of the datapath.
func sourceRangeKey(serviceID uint32, prefix netip.Prefix) datapathSourceRangeKey {
	bits := prefix.Bits()
	if prefix.Addr().Is4() {
		bits += 96
	}
	return datapathSourceRangeKey{Prefixlen: uint32(32 + bits), ServiceId: serviceID, Addr: addr16(prefix.Masked().Addr())}
}

// PutBackend creates or replaces the backend id.
func (d *Datapath) PutBackend(id uint32, b Backend) error {
	rv, err := b.raw()
	if err != nil {
		return err
	}
	// The node first: a flow that sees the backend may tunnel to it at once.
	if b.Node.IsValid() {
		if err := d.maps.BackendNodes.Put(&id, &datapathBackendNode{Addr: addr16(b.Node)}); err != nil {
			return fmt.Errorf("bpf: put backend %d's node: %w", id, err)
		}
	} else if err := d.maps.BackendNodes.Delete(&id); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("bpf: delete backend %d's node: %w", id, err)
	}
	if err := d.maps.Backends.Put(&id, &rv); err != nil {
		return fmt.Errorf("bpf: put backend %d: %w", id, err)
	}
	return nil
}

// DeleteBackend removes the backend id; one that is not there is no error. TCP flows
// conntrack still holds keep going to its address; UDP flows are selected again.
func (d *Datapath) DeleteBackend(id uint32) error {
	if err := d.maps.Backends.Delete(&id); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("bpf: delete backend %d: %w", id, err)
	}
	if err := d.maps.BackendNodes.Delete(&id); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("bpf: delete backend %d's node: %w", id, err)
	}
	return nil
}

// Backends reads every backend by id.
func (d *Datapath) Backends() (map[uint32]Backend, error) {
	out, err := readMap(d.maps.Backends, "backends", func(id uint32, v datapathBackend) (uint32, Backend) { return id, v.value() })
	if err != nil {
		return nil, err
	}
	nodes, err := readMap(d.maps.BackendNodes, "backend nodes", func(id uint32, n datapathBackendNode) (uint32, netip.Addr) {
		return id, addrFrom16(n.Addr)
	})
	if err != nil {
		return nil, err
	}
	for id, n := range nodes {
		if b, ok := out[id]; ok {
			b.Node = n
			out[id] = b
		}
	}
	return out, nil
}

// PutMaglev writes backend ids into the Maglev slots [base, base+len(ids))
// through the map's memory mapping (one batch update where it cannot be mapped). A frontend
// pointing at the range sees each slot
// change atomically, not the range as a whole: write a new range and then
// repoint the frontend to switch a table atomically.
func (d *Datapath) PutMaglev(base uint32, ids []uint32) error {
	if len(ids) == 0 {
		return nil
	}
	if uint64(base)+uint64(len(ids)) > uint64(d.maps.Maglev.MaxEntries()) {
		return fmt.Errorf("bpf: maglev range [%d, %d) past the map's %d slots", base, uint64(base)+uint64(len(ids)), d.maps.Maglev.MaxEntries())
	}
	if d.maglevMem != nil {
		// One atomic store per slot: the programs never read a torn backend ID.
		for i, id := range ids {
			atomic.StoreUint32(d.maglevSlot(base+uint32(i)), id)
		}
		return nil
	}
	keys := make([]uint32, len(ids))
	for i := range keys {
		keys[i] = base + uint32(i)
	}
	if _, err := d.maps.Maglev.BatchUpdate(keys, ids, nil); err != nil {
		return fmt.Errorf("bpf: write maglev [%d, %d): %w", base, base+uint32(len(ids)), err)
	}
	return nil
}

// maglevSlot points at slot i of the mapped maglev array (bounds checked by the callers).
func (d *Datapath) maglevSlot(i uint32) *uint32 {
	return (*uint32)(unsafe.Pointer(&d.maglevMem[8*int(i)]))
}

// Maglev reads n slots of the maglev array from base.
func (d *Datapath) Maglev(base, n uint32) ([]uint32, error) {
	if uint64(base)+uint64(n) > uint64(d.maps.Maglev.MaxEntries()) {
		return nil, fmt.Errorf("bpf: maglev range [%d, %d) past the map's %d slots", base, uint64(base)+uint64(n), d.maps.Maglev.MaxEntries())
	}
	out := make([]uint32, n)
	if d.maglevMem != nil {
		for i := range out {
			out[i] = atomic.LoadUint32(d.maglevSlot(base + uint32(i)))
		}
		return out, nil
	}
	for i := range out {
		if err := d.maps.Maglev.Lookup(base+uint32(i), &out[i]); err != nil {
			return nil, fmt.Errorf("bpf: read maglev slot %d: %w", base+uint32(i), err)
		}
	}
	return out, nil
}

func (d *Datapath) MaglevSlots() uint32 { return d.maps.Maglev.MaxEntries() }

// ConntrackBatchSize is how many entries WalkConntrack reads per syscall.
const ConntrackBatchSize = 4096

// WalkConntrack calls fn with batches of conntrack entries (keys[i] goes with
// entries[i]; the slices are reused between calls) until the map is done or
// fn returns false. The map keeps changing while it is walked: an entry may
// be missed or seen twice, as with any iteration of a live hash map.
func (d *Datapath) WalkConntrack(fn func(keys []ConntrackKey, entries []ConntrackEntry) bool) error {
	var (
		cursor ebpf.MapBatchCursor
		rk     = make([]datapathCtKey, ConntrackBatchSize)
		rv     = make([]datapathCtEntry, ConntrackBatchSize)
		keys   = make([]ConntrackKey, 0, ConntrackBatchSize)
		vals   = make([]ConntrackEntry, 0, ConntrackBatchSize)
	)
	for {
		n, err := d.maps.Conntrack.BatchLookup(&cursor, rk, rv, nil)
		done := errors.Is(err, ebpf.ErrKeyNotExist)
		if err != nil && !done {
			return fmt.Errorf("bpf: read conntrack: %w", err)
		}
		keys, vals = keys[:0], vals[:0]
		for i := range n {
			keys = append(keys, rk[i].key())
			vals = append(vals, rv[i].value())
		}
		if n > 0 && !fn(keys, vals) {
			return nil
		}
		if done {
			return nil
		}
	}
}

// LookupConntrack reads one conntrack entry; ebpf.ErrKeyNotExist if absent.
func (d *Datapath) LookupConntrack(k ConntrackKey) (ConntrackEntry, error) {
	rk := k.raw()
	var rv datapathCtEntry
	if err := d.maps.Conntrack.Lookup(&rk, &rv); err != nil {
		return ConntrackEntry{}, fmt.Errorf("bpf: look up conntrack %v: %w", k, err)
	}
	return rv.value(), nil
}

// PutConntrack writes one conntrack entry (for tests and migrations).
func (d *Datapath) PutConntrack(k ConntrackKey, e ConntrackEntry) error {
	rk, rv := k.raw(), e.raw()
	if err := d.maps.Conntrack.Put(&rk, &rv); err != nil {
		return fmt.Errorf("bpf: put conntrack %v: %w", k, err)
	}
	return nil
}

// DeleteConntrack deletes the entries keys in one batch and returns how many
// it deleted. Keys already gone are skipped, not an error.
func (d *Datapath) DeleteConntrack(keys []ConntrackKey) (int, error) {
	deleted := 0
	rk := make([]datapathCtKey, len(keys))
	for i, k := range keys {
		rk[i] = k.raw()
	}
	for len(rk) > 0 {
		n, err := d.maps.Conntrack.BatchDelete(rk, nil)
		deleted += n
		switch {
		case err == nil:
			return deleted, nil
		case errors.Is(err, ebpf.ErrKeyNotExist):
			// The batch stops at the first missing key: skip it, go on.
			rk = rk[min(n+1, len(rk)):]
		default:
			return deleted, fmt.Errorf("bpf: delete conntrack: %w", err)
		}
	}
	return deleted, nil
}

// ConntrackTimeouts are the timeouts the programs were loaded with.
func (d *Datapath) ConntrackTimeouts() Timeouts { return d.timeouts }

// MonotonicNow is the current CLOCK_MONOTONIC time, the clock of conntrack
// and affinity timestamps. The programs read it coarse (bpf_ktime_get_coarse_ns: the
// value of the last tick, far cheaper in a VM), so a timestamp is at most a tick behind.
func MonotonicNow() time.Duration {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts) // cannot fail for CLOCK_MONOTONIC
	return time.Duration(ts.Nano())
}

// Affinity reads the ClientIP affinity of client for a service: the
// backend id and when it was last used; ebpf.ErrKeyNotExist if none.
func (d *Datapath) Affinity(serviceID uint32, client netip.Addr) (backendID uint32, lastUsed time.Duration, err error) {
	k := datapathAffinityKey{ServiceId: serviceID, Client: addr16(client)}
	var v datapathAffinity
	if err := d.maps.Affinity.Lookup(&k, &v); err != nil {
		return 0, 0, fmt.Errorf("bpf: look up affinity %d/%v: %w", serviceID, client, err)
	}
	return v.BackendId, time.Duration(v.LastUsed), nil
}

// EventReader reads the events ring buffer. One reader at a time; close it
// before closing the Datapath.
type EventReader struct{ r *ringbuf.Reader }

// Events opens a reader on the events ring buffer.
func (d *Datapath) Events() (*EventReader, error) {
	r, err := ringbuf.NewReader(d.maps.Events)
	if err != nil {
		return nil, fmt.Errorf("bpf: open events: %w", err)
	}
	return &EventReader{r: r}, nil
}

// SetDeadline makes Read return os.ErrDeadlineExceeded once t has passed
// without an event; the zero time removes the deadline.
func (e *EventReader) SetDeadline(t time.Time) { e.r.SetDeadline(t) }

// Read blocks until the next event (or the deadline, or Close).
func (e *EventReader) Read() (Event, error) {
	rec, err := e.r.Read()
	if err != nil {
		return Event{}, fmt.Errorf("bpf: read event: %w", err)
	}
	var raw datapathEvent
	if _, err := raw.decode(rec.RawSample); err != nil {
		return Event{}, err
	}
	return Event{
		Time:      time.Duration(raw.Timestamp),
		Type:      EventType(raw.Type),
		ServiceID: raw.ServiceId,
		Ifindex:   raw.Ifindex,
		Len:       raw.Len,
		Src:       netip.AddrPortFrom(addrFrom16(raw.Saddr), htons(raw.Sport)),
		Dst:       netip.AddrPortFrom(addrFrom16(raw.Daddr), htons(raw.Dport)),
		Proto:     raw.Proto,
		Counter:   Counter(raw.Counter),
	}, nil
}

// Close stops the reader; a blocked Read returns.
func (e *EventReader) Close() error { return e.r.Close() }

// PutAffinity sets the ClientIP affinity of client for a service (tests, restores).
func (d *Datapath) PutAffinity(serviceID uint32, client netip.Addr, backendID uint32, lastUsed time.Duration) error {
	k := datapathAffinityKey{ServiceId: serviceID, Client: addr16(client)}
	v := datapathAffinity{BackendId: backendID, LastUsed: uint64(lastUsed)}
	if err := d.maps.Affinity.Put(&k, &v); err != nil {
		return fmt.Errorf("bpf: put affinity %d/%v: %w", serviceID, client, err)
	}
	return nil
}

// DeleteAffinity deletes the affinity entries for which stale(serviceID, backendID) is true,
// and returns how many. The socket programs' entries (SockAffinityNetns) are judged by
// their service id too. It iterates the map while the programs run; an entry written
// meanwhile may be missed, and is judged on the next call.
func (d *Datapath) DeleteAffinity(stale func(serviceID, backendID uint32) bool) (int, error) {
	var (
		k    datapathAffinityKey
		v    datapathAffinity
		dead []datapathAffinityKey
	)
	it := d.maps.Affinity.Iterate()
	for it.Next(&k, &v) {
		if stale(k.ServiceId&^SockAffinityNetns, v.BackendId) {
			dead = append(dead, k)
		}
	}
	if err := it.Err(); err != nil {
		return 0, fmt.Errorf("bpf: iterate affinity: %w", err)
	}
	n := 0
	for i := range dead {
		if err := d.maps.Affinity.Delete(&dead[i]); err == nil {
			n++
		} else if !errors.Is(err, ebpf.ErrKeyNotExist) {
			return n, fmt.Errorf("bpf: delete affinity: %w", err)
		}
	}
	return n, nil
}

// Flags of struct backend and struct ct_entry (lib/structs.h).
const (
	backendFlagRemote = 1 << 0 // BACKEND_F_REMOTE
	ctFlagSNAT        = 1 << 0 // CT_F_SNAT
)

// SetSNATAddrs sets the node's source addresses for flows SNATed to remote backends, one per
// family; an invalid one means none (such flows of that family are only DNATed). They are
// also where other nodes' DSR tunnels to this one end. Flows SNATed before an address
// changes lose their replies: their snat entries hold the old one.
func (d *Datapath) SetSNATAddrs(v4, v6 netip.Addr) error {
	for i, a := range []netip.Addr{v4, v6} {
		var v datapathSnatAddr
		if a.IsValid() {
			if a.Unmap().Is4() != (i == 0) {
				return fmt.Errorf("bpf: SNAT address %s is not of the family of slot %d", a, i)
			}
			v.Addr = addr16(a)
		}
		if err := d.maps.SnatAddrs.Put(uint32(i), &v); err != nil {
			return fmt.Errorf("bpf: set SNAT address %d: %w", i, err)
		}
	}
	return nil
}

// SNATEntry is a SNATed flow, keyed by its replies' tuple (backend → node address and
// SNAT port): what they are translated back to.
type SNATEntry struct {
	Client, Frontend netip.AddrPort
	BackendID        uint32
}

// SNATFlows reads every SNATed flow by its reply key.
func (d *Datapath) SNATFlows() (map[ConntrackKey]SNATEntry, error) {
	return readMap(d.maps.Snat, "SNAT flows", func(k datapathCtKey, v datapathSnatEntry) (ConntrackKey, SNATEntry) {
		return k.key(), SNATEntry{
			Client:    netip.AddrPortFrom(addrFrom16(v.Client), htons(v.ClientPort)),
			Frontend:  netip.AddrPortFrom(addrFrom16(v.Frontend), htons(v.FrontendPort)),
			BackendID: v.BackendId,
		}
	})
}
