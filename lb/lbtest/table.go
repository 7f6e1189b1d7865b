// Package lbtest has an in-memory lb.Table for tests: it injects write failures and checks,
// after every write, that no frontend points at a slot whose backend is missing — the
// invariant the datapath relies on while the Syncer works.
package lbtest

import (
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"sync"

	"github.com/sluice-lb/sluice/lb"
)

// ErrInjected is the error of an injected failure.
var ErrInjected = errors.New("injected write failure")

// Table is an in-memory lb.Table.
type Table struct {
	mu        sync.Mutex
	frontends map[lb.Frontend]lb.FrontendEntry
	backends  map[uint32]lb.Backend
	slots     []uint32
	affinity  map[AffinityKey]uint32 // ClientIP affinity: backend ID
	ranges    map[uint32]map[netip.Prefix]bool

	// Fail, when set, is asked before every write ("backends", "slots", "frontends",
	// "delete-frontends", "delete-backends"); true fails it. A failed batch write may have
	// applied its first half, as a real batch can.
	Fail func(op string) bool
	// Writes counts writes by op.
	Writes map[string]int
	// Violations lists every moment the invariant did not hold.
	Violations []string
	// NoChecks skips the invariant check (benchmarks of the Syncer's own cost).
	NoChecks bool
}

// NewTable returns an empty table with slots Maglev slots.
func NewTable(slots uint32) *Table {
	return &Table{frontends: map[lb.Frontend]lb.FrontendEntry{}, backends: map[uint32]lb.Backend{},
		slots: make([]uint32, slots), Writes: map[string]int{}, affinity: map[AffinityKey]uint32{},
		ranges: map[uint32]map[netip.Prefix]bool{}}
}

func (t *Table) fail(op string) bool {
	t.Writes[op]++
	return t.Fail != nil && t.Fail(op)
}

// check records a violation when a frontend's range is out of bounds or holds a slot whose
// backend is missing.
func (t *Table) check(after string) {
	if t.NoChecks {
		return
	}
	for f, e := range t.frontends {
		if e.MaglevBase+e.MaglevSize > uint32(len(t.slots)) {
			t.Violations = append(t.Violations, fmt.Sprintf("after %s: %s range %d+%d out of bounds", after, f, e.MaglevBase, e.MaglevSize))
			continue
		}
		for _, id := range t.slots[e.MaglevBase : e.MaglevBase+e.MaglevSize] {
			if _, ok := t.backends[id]; !ok {
				t.Violations = append(t.Violations, fmt.Sprintf("after %s: %s slot holds missing backend %d", after, f, id))
				break
			}
		}
	}
}

// Load implements lb.Table.
func (t *Table) Load() (map[lb.Frontend]lb.FrontendEntry, map[uint32]lb.Backend, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return maps.Clone(t.frontends), maps.Clone(t.backends), nil
}

// Slots implements lb.Table.
func (t *Table) Slots() uint32 { return uint32(len(t.slots)) }

// ReadSlots implements lb.Table.
func (t *Table) ReadSlots(base, size uint32) ([]uint32, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if base+size > uint32(len(t.slots)) {
		return nil, fmt.Errorf("slots %d+%d out of bounds", base, size)
	}
	return slices.Clone(t.slots[base : base+size]), nil
}

// WriteSlots implements lb.Table.
func (t *Table) WriteSlots(base uint32, ids []uint32) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	defer t.check("slots")
	if base+uint32(len(ids)) > uint32(len(t.slots)) {
		return fmt.Errorf("slots %d+%d out of bounds", base, len(ids))
	}
	if t.fail("slots") {
		copy(t.slots[base:], ids[:len(ids)/2])
		return ErrInjected
	}
	copy(t.slots[base:], ids)
	return nil
}

// batch applies a batch write under the lock, checking the invariant afterwards. An
// injected failure applies the first half of the batch, as a real batch can.
func batch[T any](t *Table, op string, items []T, apply func(T)) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	defer t.check(op)
	n := len(items)
	if t.fail(op) {
		n /= 2
	}
	for _, it := range items[:n] {
		apply(it)
	}
	if n < len(items) {
		return ErrInjected
	}
	return nil
}

// UpdateBackends implements lb.Table.
func (t *Table) UpdateBackends(bs []lb.Backend) error {
	return batch(t, "backends", bs, func(b lb.Backend) {
		// Only what the BPF map holds: no weight.
		t.backends[b.ID] = lb.Backend{ID: b.ID, Addr: b.Addr, Port: b.Port, State: b.State, Remote: b.Remote, Node: b.Node}
	})
}

// DeleteBackends implements lb.Table.
func (t *Table) DeleteBackends(ids []uint32) error {
	return batch(t, "delete-backends", ids, func(id uint32) { delete(t.backends, id) })
}

// UpdateFrontends implements lb.Table.
func (t *Table) UpdateFrontends(entries map[lb.Frontend]lb.FrontendEntry) error {
	keys := slices.SortedFunc(maps.Keys(entries), func(a, b lb.Frontend) int { return strings.Compare(a.String(), b.String()) })
	return batch(t, "frontends", keys, func(f lb.Frontend) { t.frontends[f] = entries[f] })
}

// SourceRanges implements lb.Table.
func (t *Table) SourceRanges() (map[uint32][]netip.Prefix, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := map[uint32][]netip.Prefix{}
	for id, ps := range t.ranges {
		out[id] = slices.SortedFunc(maps.Keys(ps), func(a, b netip.Prefix) int { return strings.Compare(a.String(), b.String()) })
	}
	return out, nil
}

// UpdateSourceRanges implements lb.Table ("source-ranges").
func (t *Table) UpdateSourceRanges(id uint32, add, remove []netip.Prefix) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.fail("source-ranges") {
		return fmt.Errorf("source ranges of %d: %w", id, ErrInjected)
	}
	if t.ranges[id] == nil {
		t.ranges[id] = map[netip.Prefix]bool{}
	}
	for _, p := range add {
		t.ranges[id][p] = true
	}
	for _, p := range remove {
		delete(t.ranges[id], p)
	}
	if len(t.ranges[id]) == 0 {
		delete(t.ranges, id)
	}
	return nil
}

// Admits reports whether the datapath would admit a new flow from client to frontend f, as
// the BPF program decides: a frontend with SourceRanges admits only clients in its service's
// ranges.
func (t *Table) Admits(f lb.Frontend, client netip.Addr) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.frontends[f]
	if !ok || !e.SourceRanges {
		return ok
	}
	for p := range t.ranges[e.ServiceID] {
		if p.Contains(client) {
			return true
		}
	}
	return false
}

// DeleteFrontends implements lb.Table.
func (t *Table) DeleteFrontends(fs []lb.Frontend) error {
	return batch(t, "delete-frontends", fs, func(f lb.Frontend) { delete(t.frontends, f) })
}

// Lookup returns the backend the datapath would pick for a frontend and a flow hash, as the
// BPF program does: slot base + hash % size.
func (t *Table) Lookup(f lb.Frontend, hash uint32) (lb.Backend, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.frontends[f]
	if !ok || e.MaglevSize == 0 {
		return lb.Backend{}, false
	}
	b, ok := t.backends[t.slots[e.MaglevBase+hash%e.MaglevSize]]
	return b, ok
}

// Frontends returns a copy of the frontends.
func (t *Table) Frontends() map[lb.Frontend]lb.FrontendEntry {
	t.mu.Lock()
	defer t.mu.Unlock()
	return maps.Clone(t.frontends)
}

// Backends returns a copy of the backends.
func (t *Table) Backends() map[uint32]lb.Backend {
	t.mu.Lock()
	defer t.mu.Unlock()
	return maps.Clone(t.backends)
}

// AffinityKey is a client of a service.
type AffinityKey struct {
	ServiceID uint32
	Client    netip.Addr
}

// PutAffinity makes a client stick to a backend, as the datapath does on a new flow.
func (t *Table) PutAffinity(k AffinityKey, backendID uint32) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.affinity[k] = backendID
}

// Affinity returns the affinity entries.
func (t *Table) Affinity() map[AffinityKey]uint32 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return maps.Clone(t.affinity)
}

// DeleteAffinity implements lb.Table.
func (t *Table) DeleteAffinity(stale func(serviceID, backendID uint32) bool) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.fail("delete-affinity") {
		return ErrInjected
	}
	for k, be := range t.affinity {
		if stale(k.ServiceID, be) {
			delete(t.affinity, k)
		}
	}
	return nil
}

var _ lb.Table = (*Table)(nil)
