package lb

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"slices"
)

// ErrNoFreeID is returned when every backend ID is in use.
var ErrNoFreeID = errors.New("lb: no free backend ID")

// IDEntry is a backend ID and what it stands for, as kept in the backends map.
type IDEntry struct {
	ID  uint32
	Key BackendKey
}

// IDs gives each backend key a stable uint32 ID for the datapath's maps. An ID stays with its
// key for as long as the key is in use, and a freed ID is handed out again only after every
// other free ID has been (the cursor moves forward and wraps), so a conntrack entry that
// still names a removed backend's ID does not silently reach a new backend soon after.
//
// IDs is a plain data structure, not safe for concurrent use; the syncer owns it.
type IDs struct {
	limit uint32 // IDs are 1..limit; 0 means "no backend"
	next  uint32 // where the search for a free ID starts
	byKey map[BackendKey]uint32
	byID  map[uint32]BackendKey
}

// NewIDs returns an allocator of the IDs 1..limit (0 for every uint32 but 0), seeded with
// the entries read back from the pinned backends map so that IDs survive a restart. Entries
// that cannot be kept are left out: ID 0 or above limit, an ID listed twice (the first entry
// wins), and a key listed twice (the lowest ID wins). The syncer's diff removes them from
// the map. The cursor starts after the highest ID kept.
func NewIDs(limit uint32, restored []IDEntry) *IDs {
	if limit == 0 {
		limit = math.MaxUint32
	}
	a := &IDs{limit: limit, next: 1, byKey: map[BackendKey]uint32{}, byID: map[uint32]BackendKey{}}
	sorted := slices.Clone(restored)
	slices.SortStableFunc(sorted, func(x, y IDEntry) int { return cmp.Compare(x.ID, y.ID) })
	for _, e := range sorted {
		if e.ID == 0 || e.ID > limit {
			continue
		}
		if _, dup := a.byID[e.ID]; dup {
			continue
		}
		if _, dup := a.byKey[e.Key]; dup {
			continue
		}
		a.byKey[e.Key], a.byID[e.ID] = e.ID, e.Key
		a.next = a.after(e.ID)
	}
	return a
}

// Set makes the IDs in use exactly those of keys: a key that has an ID keeps it, a new key
// gets a free one, and the IDs of keys not listed are freed. With no free ID left it assigns
// what it can and returns ErrNoFreeID naming how many keys went without; the others are set.
//
// Call it with the complete desired set only: after a restart, not before the first full
// model, or it frees the IDs of backends that are merely not known yet.
func (a *IDs) Set(keys []BackendKey) error {
	want := make(map[BackendKey]bool, len(keys))
	for _, k := range keys {
		want[k] = true
	}
	for k, id := range a.byKey {
		if !want[k] {
			delete(a.byKey, k)
			delete(a.byID, id)
		}
	}
	// New keys get IDs in key order, so the same history gives the same IDs.
	var fresh []BackendKey
	for k := range want {
		if _, ok := a.byKey[k]; !ok {
			fresh = append(fresh, k)
		}
	}
	slices.SortFunc(fresh, compareBackendKeys)
	for i, k := range fresh {
		id, ok := a.free()
		if !ok {
			return fmt.Errorf("%w: %d of %d new backends left without one", ErrNoFreeID, len(fresh)-i, len(fresh))
		}
		a.byKey[k], a.byID[id] = id, k
		a.next = a.after(id)
	}
	return nil
}

// Assign sets the IDs in use to the backends of svcs (as Set) and writes each backend's ID
// into svcs in place. A backend left without an ID on ErrNoFreeID keeps ID 0.
func (a *IDs) Assign(svcs []Service) error {
	var keys []BackendKey
	for _, s := range svcs {
		for _, b := range s.Backends {
			keys = append(keys, b.Key())
		}
	}
	err := a.Set(keys)
	for _, s := range svcs {
		for i := range s.Backends {
			s.Backends[i].ID = a.byKey[s.Backends[i].Key()]
		}
	}
	return err
}

// ID returns the ID of a key in use.
func (a *IDs) ID(k BackendKey) (uint32, bool) {
	id, ok := a.byKey[k]
	return id, ok
}

// Key returns the key an ID in use stands for.
func (a *IDs) Key(id uint32) (BackendKey, bool) {
	k, ok := a.byID[id]
	return k, ok
}

// Len returns the number of IDs in use.
func (a *IDs) Len() int { return len(a.byID) }

// Entries returns the IDs in use, sorted by ID: what the backends map should hold.
func (a *IDs) Entries() []IDEntry {
	out := make([]IDEntry, 0, len(a.byID))
	for id, k := range a.byID {
		out = append(out, IDEntry{ID: id, Key: k})
	}
	slices.SortFunc(out, func(x, y IDEntry) int { return cmp.Compare(x.ID, y.ID) })
	return out
}

// free returns the first free ID from the cursor on, wrapping once.
func (a *IDs) free() (uint32, bool) {
	if uint64(len(a.byID)) >= uint64(a.limit) {
		return 0, false
	}
	for id := a.next; ; id = a.after(id) {
		if _, used := a.byID[id]; !used {
			return id, true
		}
	}
}

// after returns the ID following id, wrapping from limit to 1.
func (a *IDs) after(id uint32) uint32 {
	if id >= a.limit {
		return 1
	}
	return id + 1
}
