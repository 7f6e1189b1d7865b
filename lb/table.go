package lb

import (
	"net/netip"
	"time"
)

// FrontendEntry is what the datapath holds for one frontend: the service it belongs to and
// where that service's Maglev table lies in the shared slot array.
type FrontendEntry struct {
	ServiceID uint32
	// MaglevBase and MaglevSize locate the service's table; size 0 means no usable backend
	// (the datapath refuses the connection).
	MaglevBase      uint32
	MaglevSize      uint32
	AffinityTimeout time.Duration // 0: no session affinity
	Random          bool          // pick a random slot instead of hashing the flow
	// SourceRanges admits new flows only from the service's source ranges.
	SourceRanges bool
	// DSR reaches remote backends by direct server return.
	DSR bool
}

// Table is the datapath's maps as the Syncer sees them. The BPF implementation writes pinned
// maps; lbtest.Table is an in-memory fake with failure injection. A method that fails may
// have applied part of its batch.
type Table interface {
	// Load reads back the frontends and backends the maps hold, after a restart.
	Load() (map[Frontend]FrontendEntry, map[uint32]Backend, error)
	// Slots returns the number of slots in the shared Maglev array.
	Slots() uint32
	ReadSlots(base, size uint32) ([]uint32, error)
	WriteSlots(base uint32, ids []uint32) error
	// UpdateBackends stores each backend's ID, address, port and state.
	UpdateBackends(backends []Backend) error
	DeleteBackends(ids []uint32) error
	UpdateFrontends(entries map[Frontend]FrontendEntry) error
	DeleteFrontends(frontends []Frontend) error
	// DeleteAffinity deletes the ClientIP affinity entries for which stale is true.
	DeleteAffinity(stale func(serviceID, backendID uint32) bool) error
	// SourceRanges reads back every service's source ranges, after a restart.
	SourceRanges() (map[uint32][]netip.Prefix, error)
	// UpdateSourceRanges adds and removes client prefixes of a service.
	UpdateSourceRanges(serviceID uint32, add, remove []netip.Prefix) error
}
