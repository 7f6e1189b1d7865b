package bpf

import (
	"errors"
	"fmt"
	"time"

	"github.com/cilium/ebpf"
)

// GCStats is the outcome of one conntrack collection.
type GCStats struct {
	Entries int // entries seen
	Deleted int // entries deleted
	// SNATDeleted are the SNAT flows deleted: their original conntrack entry was gone
	// (expired, collected, evicted) or belongs to another flow now.
	SNATDeleted int
}

// CollectConntrack deletes expired flows: an original entry (client → frontend) past its
// state's timeout, together with its reply entry, and reply entries whose original is gone.
// now is MonotonicNow(). It walks the map in batches while the programs keep running; an
// entry is looked up again just before it is deleted, so a flow refreshed meanwhile stays.
// Between runs the LRU map evicts the oldest flows itself when full.
func (d *Datapath) CollectConntrack(now time.Duration) (GCStats, error) {
	var st GCStats
	var originals, replies []ConntrackKey // candidates
	liveReplies := map[ConntrackKey]bool{}
	err := d.WalkConntrack(func(keys []ConntrackKey, entries []ConntrackEntry) bool {
		for i, k := range keys {
			st.Entries++
			if k.Reply {
				replies = append(replies, k)
				continue
			}
			if d.timeouts.Expired(k.Proto, entries[i], now) {
				originals = append(originals, k)
				continue
			}
			liveReplies[replyKey(k, entries[i])] = true
		}
		return true
	})
	if err != nil {
		return st, fmt.Errorf("bpf: conntrack gc: %w", err)
	}
	if d.gcAfterWalk != nil {
		d.gcAfterWalk()
	}
	// Look again, entry by entry: the walk is not a snapshot, and packets refresh or create
	// flows meanwhile. An original goes if it is still expired; a reply goes only if its
	// original is now gone or expired — never because the walk missed the original.
	var victims []ConntrackKey
	for _, k := range originals {
		e, err := d.LookupConntrack(k)
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			continue
		} else if err != nil {
			return st, fmt.Errorf("bpf: conntrack gc: %w", err)
		}
		if d.timeouts.Expired(k.Proto, e, now) {
			victims = append(victims, k)
		}
	}
	for _, r := range replies {
		if liveReplies[r] {
			continue
		}
		e, err := d.LookupConntrack(r)
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			continue
		} else if err != nil {
			return st, fmt.Errorf("bpf: conntrack gc: %w", err)
		}
		// The reply entry's NAT is the frontend: its original is client → frontend.
		o, err := d.LookupConntrack(ConntrackKey{Src: r.Dst, Dst: e.NAT, Proto: r.Proto})
		if err == nil && o.NAT == r.Src && !d.timeouts.Expired(r.Proto, o, now) {
			continue // the flow lives
		} else if err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return st, fmt.Errorf("bpf: conntrack gc: %w", err)
		}
		victims = append(victims, r)
	}
	n, err := d.DeleteConntrack(victims)
	st.Deleted = n
	if err != nil {
		return st, fmt.Errorf("bpf: conntrack gc: %w", err)
	}
	st.SNATDeleted, err = d.collectSNAT(now)
	return st, err
}

// collectSNAT deletes the SNAT flows whose original conntrack entry is gone or expired, or
// no longer leaves with their port to their backend: their port is free again. The datapath
// claims a flow's port just before it writes its conntrack entry, so a flow is deleted only
// when the previous collection found it dead too.
func (d *Datapath) collectSNAT(now time.Duration) (int, error) {
	flows, err := d.SNATFlows()
	if err != nil {
		return 0, fmt.Errorf("bpf: snat gc: %w", err)
	}
	suspects := d.snatSuspects
	d.snatSuspects = map[ConntrackKey]bool{}
	n := 0
	for rk, f := range flows {
		o, err := d.LookupConntrack(ConntrackKey{Src: f.Client, Dst: f.Frontend, Proto: rk.Proto})
		if err == nil && o.SNATPort == rk.Dst.Port() && o.BackendID == f.BackendID && !d.timeouts.Expired(rk.Proto, o, now) {
			continue
		} else if err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return n, fmt.Errorf("bpf: snat gc: %w", err)
		}
		if !suspects[rk] {
			d.snatSuspects[rk] = true
			continue
		}
		raw := rk.raw()
		if err := d.maps.Snat.Delete(&raw); err == nil {
			n++
		} else if !errors.Is(err, ebpf.ErrKeyNotExist) {
			return n, fmt.Errorf("bpf: snat gc: %w", err)
		}
	}
	return n, nil
}

// replyKey is the reply-direction key of an original-direction flow: backend → client.
func replyKey(k ConntrackKey, e ConntrackEntry) ConntrackKey {
	return ConntrackKey{Src: e.NAT, Dst: k.Src, Proto: k.Proto, Reply: true}
}
