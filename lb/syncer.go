package lb

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"time"
)

// ErrNoSlots means the Maglev array has no free run large enough for a service's table: raise
// the agent's Maglev array size.
var ErrNoSlots = errors.New("maglev array full")

// SyncerOptions configure a Syncer.
type SyncerOptions struct {
	// MaglevMinimum is the smallest Maglev table of a service (see MaglevSize).
	MaglevMinimum uint32
	// MaxBackends bounds backend IDs (the backends map's size); 0: no bound.
	MaxBackends uint32
}

// SyncStats counts the writes one Set made; a Set with nothing to change writes nothing.
type SyncStats struct {
	BackendsUpdated, BackendsDeleted   int
	FrontendsUpdated, FrontendsDeleted int
	TablesWritten, SlotsWritten        int
}

// Writes is the total number of map operations.
func (s SyncStats) Writes() int {
	return s.BackendsUpdated + s.BackendsDeleted + s.FrontendsUpdated + s.FrontendsDeleted + s.SlotsWritten
}

// appliedTable is a service's Maglev table as written.
type appliedTable struct {
	base, size uint32
	slots      []uint32 // nil: not known (read back lazily)
}

// Syncer makes the datapath's maps hold a desired set of Services, writing only differences.
// It starts from what the pinned maps hold, keeps backend and service IDs and table ranges
// stable across restarts, and never flushes. Not safe for concurrent use: one owner calls Set.
type Syncer struct {
	table Table
	opts  SyncerOptions
	ids   *IDs
	slots *slotAllocator

	// What the maps are known to hold. An entry a failed write may have touched is dropped,
	// so the next Set writes it again.
	frontends map[Frontend]FrontendEntry
	backends  map[uint32]Backend
	tables    map[uint32]*appliedTable  // by service ID
	ranges    map[uint32][]netip.Prefix // source ranges by service ID, sorted

	serviceIDs map[ServiceKey]uint32
	idOwners   map[uint32]ServiceKey
	nextID     uint32
	// memo keeps each service's last Maglev table with what it was built from, so a Set
	// rebuilds only the tables whose active backends changed.
	memo map[ServiceKey]maglevMemo
	// released are replaced table ranges that frontends may still point at: free once the
	// frontends are written.
	released []slotRange
	// unsure are entries a failed write may or may not have left in the maps: deleted when
	// no longer wanted, and while any frontend is unsure no slot range is reused (it might
	// still point there).
	unsure         map[Frontend]bool
	unsureBackends map[uint32]bool
	// prune are the ClientIP affinity entries to delete: by service ID, the backends it may
	// still stick to (nil: the service is gone, all of its entries go). Kept until done.
	prune map[uint32]map[uint32]bool
}

// NewSyncer reads back the maps' contents and returns a Syncer that continues from them. No
// entry is removed until the first Set, which the caller makes only with a complete model.
func NewSyncer(t Table, opts SyncerOptions) (*Syncer, error) {
	frontends, backends, err := t.Load()
	if err != nil {
		return nil, fmt.Errorf("lb: reading back the datapath maps: %w", err)
	}
	ranges, err := sortedRanges(t)
	if err != nil {
		return nil, fmt.Errorf("lb: reading back the datapath maps: %w", err)
	}
	// IDs whose ranges are still in the map (their removal failed, or the agent stopped
	// first) are not handed out again before those are gone: a new service must not admit
	// the old one's clients.
	s := &Syncer{table: t, opts: opts, slots: newSlotAllocator(t.Slots()), frontends: frontends, backends: backends,
		tables: map[uint32]*appliedTable{}, ranges: ranges, serviceIDs: map[ServiceKey]uint32{}, idOwners: map[uint32]ServiceKey{}, memo: map[ServiceKey]maglevMemo{}, nextID: 1,
		unsure: map[Frontend]bool{}, unsureBackends: map[uint32]bool{}, prune: map[uint32]map[uint32]bool{}}
	var restored []IDEntry
	for id, b := range backends {
		restored = append(restored, IDEntry{ID: id, Key: b.Key()})
	}
	s.ids = NewIDs(opts.MaxBackends, restored)
	// Every distinct range a frontend points at is reserved: after a crash in the middle of
	// a Set, a service's frontends may point at two. The first becomes the service's table,
	// the others are freed once its frontends are rewritten.
	reserved := map[slotRange]bool{}
	for id := range ranges {
		if id >= s.nextID {
			s.nextID = id + 1
		}
	}
	for f, e := range frontends {
		if e.ServiceID >= s.nextID {
			s.nextID = e.ServiceID + 1
		}
		r := slotRange{e.MaglevBase, e.MaglevSize}
		if e.MaglevSize == 0 || reserved[r] {
			continue
		}
		if err := s.slots.reserve(r.base, r.size); err != nil {
			// Overlapping leftovers: Set rewrites or deletes the frontend.
			delete(s.frontends, f)
			s.unsure[f] = true
			continue
		}
		reserved[r] = true
		if s.tables[e.ServiceID] == nil {
			s.tables[e.ServiceID] = &appliedTable{base: r.base, size: r.size}
		} else {
			s.released = append(s.released, r)
		}
	}
	return s, nil
}

// desiredService is a service with its IDs and table settled.
type desiredService struct {
	svc   Service
	id    uint32
	slots []uint32
	entry FrontendEntry
}

// Set makes the maps hold exactly the desired services. On error some writes may be done;
// calling Set again (with the same or newer input) finishes the job.
func (s *Syncer) Set(desired []Service) (SyncStats, error) {
	var st SyncStats
	svcs := make([]Service, len(desired))
	for i, d := range desired {
		svcs[i] = d
		svcs[i].Backends = slices.Clone(d.Backends)
	}
	if err := s.ids.Assign(svcs); err != nil {
		return st, fmt.Errorf("lb: backend IDs: %w", err)
	}
	wantBackends := make(map[uint32]Backend, len(s.backends))
	for _, svc := range svcs {
		for _, b := range svc.Backends {
			wantBackends[b.ID] = b
		}
	}
	services := s.settleServices(svcs)

	// 1. Backends first, so no slot or conntrack entry points at a missing one.
	var put []Backend
	for id, b := range wantBackends {
		if old, ok := s.backends[id]; !ok || !sameStored(old, b) {
			put = append(put, b)
		}
	}
	slices.SortFunc(put, func(a, b Backend) int { return int(a.ID) - int(b.ID) })
	if len(put) > 0 {
		if err := s.table.UpdateBackends(put); err != nil {
			for _, b := range put {
				delete(s.backends, b.ID)
				s.unsureBackends[b.ID] = true
			}
			return st, fmt.Errorf("lb: writing %d backends: %w", len(put), err)
		}
		for _, b := range put {
			s.backends[b.ID] = b
			delete(s.unsureBackends, b.ID)
		}
		st.BackendsUpdated = len(put)
	}

	// 2. Frontends no desired service has, then the ranges of services nothing points at any
	// more: their slots are free for the tables below.
	wantKeys := make(map[Frontend]bool, len(s.frontends))
	live := make(map[uint32]bool, len(services))
	for _, d := range services {
		live[d.id] = true
		for _, f := range d.svc.Frontends {
			wantKeys[f] = true
		}
	}
	var stale []Frontend
	for f := range s.frontends {
		if !wantKeys[f] {
			stale = append(stale, f)
		}
	}
	for f := range s.unsure {
		if !wantKeys[f] {
			stale = append(stale, f)
		}
	}
	if len(stale) > 0 {
		slices.SortFunc(stale, compareFrontends)
		if err := s.table.DeleteFrontends(stale); err != nil {
			return st, fmt.Errorf("lb: deleting %d frontends: %w", len(stale), err)
		}
		for _, f := range stale {
			delete(s.frontends, f)
			delete(s.unsure, f)
		}
		st.FrontendsDeleted = len(stale)
	}
	s.releaseDead(live)

	// 3. Tables: rewritten in place when the size is unchanged (every slot holds a live
	// backend throughout), or written to a new range that the frontends switch to at once.
	// A service whose table cannot be written keeps what its frontends had; the others go on.
	var tableErrs []error
	failed := map[uint32]bool{}
	for i := range services {
		d := &services[i]
		n, err := s.writeTable(d)
		st.SlotsWritten += n
		if n > 0 {
			st.TablesWritten++
		}
		if err != nil {
			tableErrs = append(tableErrs, err)
			failed[d.id] = true
		}
	}

	// 3b. The source ranges the frontends below will check, before they do.
	wantRanges := make(map[uint32][]netip.Prefix, len(s.ranges))
	for _, d := range services {
		if failed[d.id] || len(d.svc.Restricted) == 0 {
			continue
		}
		want := slices.SortedFunc(slices.Values(d.svc.SourceRanges), comparePrefixes)
		want = slices.Compact(want)
		wantRanges[d.id] = want
		if add := prefixesMinus(want, s.ranges[d.id]); len(add) > 0 {
			if err := s.table.UpdateSourceRanges(d.id, add, nil); err != nil {
				// It may have written part of them: what the map holds is read back, so that
				// the next Set writes what is missing and removes what is not wanted.
				s.rereadRanges()
				return st, fmt.Errorf("lb: writing the source ranges of %s: %w", d.svc.Key, err)
			}
			s.ranges[d.id] = slices.Compact(slices.SortedFunc(slices.Values(append(slices.Clone(s.ranges[d.id]), add...)), comparePrefixes))
		}
	}

	// 4. Frontends, now pointing at complete tables.
	wantFrontends := make(map[Frontend]FrontendEntry, len(wantKeys))
	for _, d := range services {
		for _, f := range d.svc.Frontends {
			if !failed[d.id] {
				e := d.entry
				e.SourceRanges = d.svc.restricts(f)
				wantFrontends[f] = e
			} else if old, ok := s.frontends[f]; ok {
				wantFrontends[f] = old
			}
		}
	}
	changed := map[Frontend]FrontendEntry{}
	for f, e := range wantFrontends {
		if old, ok := s.frontends[f]; !ok || old != e {
			changed[f] = e
		}
	}
	if len(changed) > 0 {
		if err := s.table.UpdateFrontends(changed); err != nil {
			for f := range changed {
				delete(s.frontends, f)
				s.unsure[f] = true
			}
			return st, fmt.Errorf("lb: writing %d frontends: %w", len(changed), err)
		}
		for f, e := range changed {
			s.frontends[f] = e
			delete(s.unsure, f)
		}
		st.FrontendsUpdated = len(changed)
	}
	// 4b. Source ranges no frontend checks any more (while a write of frontends is unsure,
	// any of them might).
	if len(s.unsure) == 0 {
		checked := map[uint32]bool{}
		for _, e := range s.frontends {
			if e.SourceRanges {
				checked[e.ServiceID] = true
			}
		}
		for _, id := range slices.Sorted(maps.Keys(s.ranges)) {
			want, ok := wantRanges[id]
			if !ok && checked[id] { // kept by a frontend whose service's new table failed
				continue
			}
			if remove := prefixesMinus(s.ranges[id], want); len(remove) > 0 {
				if err := s.table.UpdateSourceRanges(id, nil, remove); err != nil {
					s.rereadRanges()
					return st, fmt.Errorf("lb: deleting source ranges of service %d: %w", id, err)
				}
				if len(want) == 0 {
					delete(s.ranges, id)
				} else {
					s.ranges[id] = want
				}
			}
		}
	}
	// 5. Only now that no frontend points at them: replaced ranges and gone backends.
	if len(s.unsure) == 0 {
		for _, r := range s.released {
			s.slots.release(r.base, r.size)
		}
		s.released = nil
	}
	s.releaseDead(live)
	// A frontend kept on an old table (its new one failed) keeps that table's backends. The
	// table of a desired service that was written is made of its wanted backends: not
	// scanned (10k tables of ~250 slots would be millions of lookups per Set).
	scanned := map[uint32]bool{}
	for _, e := range s.frontends {
		t := s.tables[e.ServiceID]
		if t == nil || e.MaglevSize == 0 || scanned[e.ServiceID] || (live[e.ServiceID] && !failed[e.ServiceID] && t.slots != nil) {
			continue
		}
		scanned[e.ServiceID] = true
		if t.slots == nil { // not known: keep every backend until the table is rewritten
			for b, v := range s.backends {
				wantBackends[b] = v
			}
			break
		}
		for _, b := range t.slots {
			if v, ok := s.backends[b]; ok {
				wantBackends[b] = v
			}
		}
	}
	var gone []uint32
	for id := range s.backends {
		if _, ok := wantBackends[id]; !ok {
			gone = append(gone, id)
		}
	}
	for id := range s.unsureBackends {
		if _, ok := wantBackends[id]; !ok {
			gone = append(gone, id)
		}
	}
	if len(gone) > 0 {
		slices.Sort(gone)
		gone = slices.Compact(gone)
		if err := s.table.DeleteBackends(gone); err != nil {
			return st, fmt.Errorf("lb: deleting %d backends: %w", len(gone), err)
		}
		for _, id := range gone {
			delete(s.backends, id)
			delete(s.unsureBackends, id)
		}
		st.BackendsDeleted = len(gone)
	}
	// 6. Affinity to backends a service no longer has, or of services that are gone.
	if len(s.prune) > 0 {
		if err := s.table.DeleteAffinity(func(svc, be uint32) bool {
			allowed, ok := s.prune[svc]
			return ok && !allowed[be]
		}); err != nil {
			return st, fmt.Errorf("lb: pruning session affinity: %w", err)
		}
		clear(s.prune)
	}
	return st, errors.Join(tableErrs...)
}

// rereadRanges replaces what the Syncer knows of the source ranges with what the map holds,
// after a write that may have done part of its work. If even that fails, what it knew is
// kept together with nothing removed: the next Set writes the wanted ranges again (writing
// one twice is harmless) and removes the ones it knows of.
func (s *Syncer) rereadRanges() {
	if ranges, err := sortedRanges(s.table); err == nil {
		s.ranges = ranges
	}
}

// sortedRanges reads the source ranges t holds, each service's sorted.
func sortedRanges(t Table) (map[uint32][]netip.Prefix, error) {
	ranges, err := t.SourceRanges()
	for _, ps := range ranges {
		slices.SortFunc(ps, comparePrefixes)
	}
	return ranges, err
}

// prefixesMinus returns the prefixes of a (sorted) that b (sorted) does not have.
func prefixesMinus(a, b []netip.Prefix) []netip.Prefix {
	var out []netip.Prefix
	for _, p := range a {
		if _, found := slices.BinarySearchFunc(b, p, comparePrefixes); !found {
			out = append(out, p)
		}
	}
	return out
}

func comparePrefixes(a, b netip.Prefix) int {
	return cmp.Or(a.Addr().Compare(b.Addr()), cmp.Compare(a.Bits(), b.Bits()))
}

// ServiceKeys returns which service each service ID stands for.
func (s *Syncer) ServiceKeys() map[uint32]ServiceKey {
	out := make(map[uint32]ServiceKey, len(s.idOwners))
	for id, k := range s.idOwners {
		out[id] = k
	}
	return out
}

// sameStored reports whether two backends are the same in the backends map, which holds the
// address, port, state and locality (the weight lives in the Maglev table).
func sameStored(a, b Backend) bool {
	return a.ID == b.ID && a.Addr == b.Addr && a.Port == b.Port && a.State == b.State && a.Remote == b.Remote && a.Node == b.Node
}

// sameSlice reports whether a and b are the same slice (a memoised table), which makes
// comparing their elements unnecessary.
func sameSlice(a, b []uint32) bool {
	return len(a) == len(b) && len(a) > 0 && &a[0] == &b[0]
}

// releaseDead frees the tables and IDs of services that are neither desired (live) nor still
// pointed at by a frontend (a service whose new table failed keeps its old one).
func (s *Syncer) releaseDead(live map[uint32]bool) {
	if len(s.unsure) > 0 {
		return // an unsure frontend may point at any range
	}
	used := make(map[uint32]bool, len(s.tables))
	for _, e := range s.frontends {
		used[e.ServiceID] = true
	}
	for id, t := range s.tables {
		if !live[id] && !used[id] {
			s.slots.release(t.base, t.size)
			delete(s.tables, id)
			s.prune[id] = nil // the ID may be reused: its affinity goes with it
		}
	}
	for k, id := range s.serviceIDs {
		if !live[id] && !used[id] {
			delete(s.serviceIDs, k)
			delete(s.idOwners, id)
			delete(s.memo, k)
			s.prune[id] = nil
		}
	}
}

// settleServices gives each service its ID (kept from before, or read back from its
// frontends after a restart) and builds its Maglev table.
func (s *Syncer) settleServices(svcs []Service) []desiredService {
	out := make([]desiredService, len(svcs))
	taken := make(map[uint32]bool, len(svcs))
	for i, svc := range svcs {
		out[i].svc = svc
		if id, ok := s.serviceIDs[svc.Key]; ok && !taken[id] {
			out[i].id, taken[id] = id, true
		}
	}
	for i := range out {
		if out[i].id != 0 {
			continue
		}
		for _, f := range out[i].svc.Frontends {
			if e, ok := s.frontends[f]; ok && e.ServiceID != 0 && !taken[e.ServiceID] && !s.claimed(e.ServiceID) {
				out[i].id = e.ServiceID
				break
			}
		}
		if out[i].id == 0 {
			for taken[s.nextID] || s.claimed(s.nextID) || s.tables[s.nextID] != nil || s.ranges[s.nextID] != nil {
				s.nextID++
			}
			out[i].id = s.nextID
			s.nextID++
		}
		taken[out[i].id] = true
	}
	for i := range out {
		d := &out[i]
		if old, ok := s.serviceIDs[d.svc.Key]; ok && old != d.id {
			delete(s.idOwners, old)
		}
		s.serviceIDs[d.svc.Key] = d.id
		s.idOwners[d.id] = d.svc.Key
		sig := maglevSignature(&d.svc, s.opts.MaglevMinimum)
		if m, ok := s.memo[d.svc.Key]; ok && m.sig == sig {
			d.slots = m.slots
		} else {
			d.slots = d.svc.Maglev(s.opts.MaglevMinimum)
			s.memo[d.svc.Key] = maglevMemo{sig: sig, slots: d.slots}
		}
		d.entry = FrontendEntry{ServiceID: d.id, MaglevSize: uint32(len(d.slots)),
			AffinityTimeout: d.svc.AffinityTimeout.Truncate(time.Second), Random: d.svc.Algorithm == AlgorithmRandom, DSR: d.svc.DSR}
		if d.svc.Affinity != AffinityClientIP {
			d.entry.AffinityTimeout = 0
		}
	}
	return out
}

// maglevMemo is a Maglev table and the signature of its input.
type maglevMemo struct {
	sig   string
	slots []uint32
}

// maglevSignature is everything a service's Maglev table depends on: the table's minimum
// size and each active backend's ID, address, port and weight (BuildMaglev sorts them).
func maglevSignature(svc *Service, minimum uint32) string {
	b := make([]byte, 0, 4+26*len(svc.Backends))
	b = binary.BigEndian.AppendUint32(b, minimum)
	for _, be := range svc.Backends {
		if be.State != BackendActive || be.Weight == 0 {
			continue
		}
		a := be.Addr.As16()
		b = append(b, a[:]...)
		b = binary.BigEndian.AppendUint16(b, be.Port)
		b = binary.BigEndian.AppendUint16(b, be.Weight)
		b = binary.BigEndian.AppendUint32(b, be.ID)
	}
	return string(b)
}

// claimed reports whether a service ID belongs to a service key in this Syncer's memory.
func (s *Syncer) claimed(id uint32) bool {
	_, ok := s.idOwners[id]
	return ok
}

// writeTable makes d's Maglev table present and sets d.entry.MaglevBase. It returns the
// number of slots written; a replaced range goes to s.released.
func (s *Syncer) writeTable(d *desiredService) (int, error) {
	size := uint32(len(d.slots))
	cur := s.tables[d.id]
	if cur != nil && cur.size == size && size > 0 {
		d.entry.MaglevBase = cur.base
		if cur.slots == nil {
			if got, err := s.table.ReadSlots(cur.base, cur.size); err == nil {
				cur.slots = got
			}
		}
		if sameSlice(cur.slots, d.slots) || slices.Equal(cur.slots, d.slots) {
			return 0, nil
		}
		if err := s.table.WriteSlots(cur.base, d.slots); err != nil {
			cur.slots = nil
			return 0, fmt.Errorf("lb: writing the Maglev table of %s: %w", d.svc.Key, err)
		}
		cur.slots = d.slots
		s.noteAffinity(d)
		return len(d.slots), nil
	}
	if size == 0 {
		if cur != nil {
			s.released = append(s.released, slotRange{cur.base, cur.size})
			delete(s.tables, d.id)
			s.noteAffinity(d)
		}
		return 0, nil
	}
	base, ok := s.slots.alloc(size)
	if !ok {
		return 0, fmt.Errorf("lb: %s needs %d slots, %d free: %w", d.svc.Key, size, s.slots.available(), ErrNoSlots)
	}
	if err := s.table.WriteSlots(base, d.slots); err != nil {
		s.slots.release(base, size)
		return 0, fmt.Errorf("lb: writing the Maglev table of %s: %w", d.svc.Key, err)
	}
	if cur != nil {
		s.released = append(s.released, slotRange{cur.base, cur.size})
	}
	s.tables[d.id] = &appliedTable{base: base, size: size, slots: d.slots}
	d.entry.MaglevBase = base
	s.noteAffinity(d)
	return len(d.slots), nil
}

// noteAffinity marks d's ClientIP affinity for pruning after its table changed: a client may
// stay only with a backend that is in the new table (active), as a terminating or removed
// backend takes no new sessions.
func (s *Syncer) noteAffinity(d *desiredService) {
	if d.svc.Affinity != AffinityClientIP {
		return
	}
	allowed := make(map[uint32]bool, 8)
	for _, id := range d.slots {
		allowed[id] = true
	}
	s.prune[d.id] = allowed
}
