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
}

// CollectConntrack deletes expired flows: an original entry (client → frontend) past its
// state's timeout, together with its reply entry, and reply entries whose original is gone.
// now is MonotonicNow(). It walks the map in batches while the programs keep running; an
// entry is looked up again just before it is deleted, so a flow refreshed meanwhile stays.
// Between runs the LRU map evicts the oldest flows itself when full.
func (d *Datapath) CollectConntrack(now time.Duration) (GCStats, error) {
	var st GCStats
	var expired []ConntrackKey
	liveReplies := map[ConntrackKey]bool{}
	var replies []ConntrackKey
	err := d.WalkConntrack(func(keys []ConntrackKey, entries []ConntrackEntry) bool {
		for i, k := range keys {
			st.Entries++
			if k.Reply {
				replies = append(replies, k)
				continue
			}
			rk := replyKey(k, entries[i])
			if d.timeouts.Expired(k.Proto, entries[i], now) {
				expired = append(expired, k, rk)
				continue
			}
			liveReplies[rk] = true
		}
		return true
	})
	if err != nil {
		return st, fmt.Errorf("bpf: conntrack gc: %w", err)
	}
	for _, rk := range replies {
		if !liveReplies[rk] {
			expired = append(expired, rk)
		}
	}
	// Look again: a packet may have refreshed the flow since the walk.
	victims := expired[:0]
	for i := 0; i < len(expired); i++ {
		k := expired[i]
		e, err := d.LookupConntrack(k)
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			continue
		}
		if err != nil {
			return st, fmt.Errorf("bpf: conntrack gc: %w", err)
		}
		if !k.Reply && !d.timeouts.Expired(k.Proto, e, now) {
			i++ // refreshed: keep it and the reply entry that follows it
			continue
		}
		victims = append(victims, k)
	}
	n, err := d.DeleteConntrack(victims)
	st.Deleted = n
	if err != nil {
		return st, fmt.Errorf("bpf: conntrack gc: %w", err)
	}
	return st, nil
}

// replyKey is the reply-direction key of an original-direction flow: backend → client.
func replyKey(k ConntrackKey, e ConntrackEntry) ConntrackKey {
	return ConntrackKey{Src: e.NAT, Dst: k.Src, Proto: k.Proto, Reply: true}
}
