package lb

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/sluice-lb/sluice/bpf"
)

// BPFTable is the Table of the real datapath: its pinned maps.
type BPFTable struct {
	DP *bpf.Datapath
}

var _ Table = BPFTable{}

func frontendKey(f Frontend) bpf.FrontendKey {
	return bpf.FrontendKey{Addr: f.Addr, Port: f.Port, Proto: uint8(f.Protocol), Scope: bpf.Scope(f.Scope)}
}

// Load implements Table.
func (t BPFTable) Load() (map[Frontend]FrontendEntry, map[uint32]Backend, error) {
	fr, err := t.DP.Frontends()
	if err != nil {
		return nil, nil, err
	}
	frontends := make(map[Frontend]FrontendEntry, len(fr))
	for k, v := range fr {
		f := Frontend{Addr: k.Addr, Port: k.Port, Protocol: Protocol(k.Proto), Scope: Scope(k.Scope)}
		frontends[f] = FrontendEntry{ServiceID: v.ServiceID, MaglevBase: v.MaglevBase, MaglevSize: v.MaglevSize,
			AffinityTimeout: v.AffinityTimeout, Random: v.Flags&bpf.FrontendRandom != 0,
			SourceRanges: v.Flags&bpf.FrontendSourceRanges != 0, DSR: v.Flags&bpf.FrontendDSR != 0}
	}
	bs, err := t.DP.Backends()
	if err != nil {
		return nil, nil, err
	}
	backends := make(map[uint32]Backend, len(bs))
	for id, b := range bs {
		backends[id] = Backend{ID: id, Addr: b.Addr, Port: b.Port, State: BackendState(b.State), Remote: b.Remote, Node: b.Node}
	}
	return frontends, backends, nil
}

// Slots implements Table.
func (t BPFTable) Slots() uint32 { return t.DP.MaglevSlots() }

// ReadSlots implements Table.
func (t BPFTable) ReadSlots(base, size uint32) ([]uint32, error) { return t.DP.Maglev(base, size) }

// WriteSlots implements Table.
func (t BPFTable) WriteSlots(base uint32, ids []uint32) error { return t.DP.PutMaglev(base, ids) }

// UpdateBackends implements Table.
func (t BPFTable) UpdateBackends(backends []Backend) error {
	for _, b := range backends {
		if err := t.DP.PutBackend(b.ID, bpf.Backend{Addr: b.Addr, Port: b.Port, State: bpf.BackendState(b.State), Remote: b.Remote, Node: b.Node}); err != nil {
			return fmt.Errorf("backend %s: %w", b, err)
		}
	}
	return nil
}

// DeleteBackends implements Table.
func (t BPFTable) DeleteBackends(ids []uint32) error {
	for _, id := range ids {
		if err := t.DP.DeleteBackend(id); err != nil {
			return fmt.Errorf("backend %d: %w", id, err)
		}
	}
	return nil
}

// UpdateFrontends implements Table.
func (t BPFTable) UpdateFrontends(entries map[Frontend]FrontendEntry) error {
	for f, e := range entries {
		v := bpf.Frontend{ServiceID: e.ServiceID, MaglevBase: e.MaglevBase, MaglevSize: e.MaglevSize,
			AffinityTimeout: e.AffinityTimeout.Truncate(time.Second)}
		if e.Random {
			v.Flags |= bpf.FrontendRandom
		}
		if e.DSR {
			v.Flags |= bpf.FrontendDSR
		}
		if e.SourceRanges {
			v.Flags |= bpf.FrontendSourceRanges
		}
		if err := t.DP.PutFrontend(frontendKey(f), v); err != nil {
			return fmt.Errorf("frontend %s: %w", f, err)
		}
	}
	return nil
}

// DeleteFrontends implements Table.
func (t BPFTable) DeleteFrontends(frontends []Frontend) error {
	for _, f := range frontends {
		if err := t.DP.DeleteFrontend(frontendKey(f)); err != nil {
			return fmt.Errorf("frontend %s: %w", f, err)
		}
	}
	return nil
}

// DeleteAffinity implements Table.
func (t BPFTable) DeleteAffinity(stale func(serviceID, backendID uint32) bool) error {
	_, err := t.DP.DeleteAffinity(stale)
	return err
}

// SourceRanges implements Table.
func (t BPFTable) SourceRanges() (map[uint32][]netip.Prefix, error) { return t.DP.SourceRanges() }

// UpdateSourceRanges implements Table.
func (t BPFTable) UpdateSourceRanges(serviceID uint32, add, remove []netip.Prefix) error {
	for _, p := range add {
		if err := t.DP.PutSourceRange(serviceID, p); err != nil {
			return err
		}
	}
	for _, p := range remove {
		if err := t.DP.DeleteSourceRange(serviceID, p); err != nil {
			return err
		}
	}
	return nil
}
