package ipam

import (
	"maps"
	"net/netip"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/types"

	"github.com/sluice-lb/sluice/internal/model"
)

// Allocator allocates again and again as Models come (those of one model.Builder), and
// remembers the addresses it gave out as standalone mode's State: a Service with no status
// address holds the ones remembered for it.
//
// When the configuration is the same (model.Model.ConfigGeneration) and only a few Services
// changed, it allocates for those alone instead of for all: that is the common case at
// scale, one Service added to 10k, and the rest of the work is then proportional to the
// change. It does so only where the outcome is provably the one Allocate would give — every
// other Service of ours has all its addresses without a problem (so none of them is waiting
// for one), no changed Service shares addresses (a sharing key), and no changed Service
// holds an address another one holds — and otherwise allocates for all. Either way the result
// is Allocate's over the Model with the remembered addresses as status (see
// TestAllocatorSameAsAllocate).
type Allocator struct {
	opts       Options
	remembered map[types.NamespacedName][]netip.Addr
	addresses  map[types.NamespacedName][]netip.Addr // the last result's, by Service
	state      State                                 // remembered, as written to the state file
	keys       []string                              // state's keys, sorted
	buf        []byte                                // the last state file written

	gen       uint64     // the ConfigGeneration of the last run
	a         *allocator // the claims of the last run
	svcs      map[types.NamespacedName]*svc
	unsettled map[types.NamespacedName]bool // Services of the last run lacking an address, or with a problem
	partial   bool                          // the last run allocated for the changed Services alone
}

// Addresses returns the addresses of the last result, by Service (those without any left
// out), as Result.Addresses does. It is kept up to date as it is: the caller must not modify
// it, and may use it only until the next Allocate.
func (x *Allocator) Addresses() map[types.NamespacedName][]netip.Addr { return x.addresses }

// Partial reports whether the last Allocate allocated for the changed Services alone.
func (x *Allocator) Partial() bool { return x.partial }

// NewAllocator returns an Allocator that starts from the addresses st remembers.
func NewAllocator(opts Options, st State) *Allocator {
	x := &Allocator{opts: opts, remembered: map[types.NamespacedName][]netip.Addr{},
		state: State{Version: stateVersion, Services: map[string][]netip.Addr{}}}
	for k, ips := range st.Services {
		ns, name, _ := strings.Cut(k, "/")
		x.remember(types.NamespacedName{Namespace: ns, Name: name}, ips)
	}
	return x
}

// State returns the addresses it remembers. It is kept up to date as it is: the caller must
// not modify it, and may use it only until the next Allocate.
func (x *Allocator) State() State { return x.state }

// WriteState writes what State returns to the state file at path, as State.Write does, with
// no sorting and no garbage.
func (x *Allocator) WriteState(path string) error {
	b, err := x.state.appendJSON(x.buf[:0], x.keys)
	if err != nil {
		return err
	}
	x.buf = b
	return writeFile(path, b)
}

// remember sets the addresses remembered for k (none: k is forgotten), and reports whether
// that changed anything.
func (x *Allocator) remember(k types.NamespacedName, ips []netip.Addr) bool {
	was, had := x.remembered[k]
	key := k.String()
	i, found := slices.BinarySearch(x.keys, key)
	if len(ips) == 0 {
		if had {
			delete(x.remembered, k)
			delete(x.state.Services, key)
			x.keys = slices.Delete(x.keys, i, i+1)
		}
		return had
	}
	if had && slices.Equal(was, ips) {
		return false
	}
	ips = slices.Clone(ips)
	x.remembered[k] = ips
	x.state.Services[key] = ips
	if !found {
		x.keys = slices.Insert(x.keys, i, key)
	}
	return true
}

func (x *Allocator) isOurs(s *model.Service) bool {
	return s.Ours && (!x.opts.RequireClass || s.ClassSet)
}

// ingressOf returns the addresses s holds: its status, else what is remembered for it.
func (x *Allocator) ingressOf(s *model.Service) []netip.Addr {
	if len(s.IngressIPs) > 0 || x.remembered == nil {
		return s.IngressIPs
	}
	return x.remembered[s.Key]
}

// Allocate allocates for m and remembers the outcome. changed lists the Services whose
// allocation may differ from the last run's, those gone included (after a full run, every
// one); remembered says whether the addresses remembered changed.
func (x *Allocator) Allocate(m *model.Model) (r *Result, changed []types.NamespacedName, remembered bool) {
	r, changed, ok := x.incremental(m)
	if x.partial = ok; !ok {
		r, changed = x.full(m)
		x.addresses = make(map[types.NamespacedName][]netip.Addr, len(r.Allocations))
	}
	for _, k := range changed {
		if s := x.svcs[k]; s != nil && len(s.out.IPs) > 0 {
			x.addresses[k] = s.out.IPs
		} else {
			delete(x.addresses, k)
		}
	}
	if x.remembered == nil {
		return r, changed, false
	}
	for _, k := range changed {
		var ips []netip.Addr
		if s := x.svcs[k]; s != nil {
			ips = s.out.IPs
		}
		remembered = x.remember(k, ips) || remembered
	}
	if !x.partial { // the first run may not know every Service remembered
		for k := range x.remembered {
			if x.svcs[k] == nil {
				remembered = x.remember(k, nil) || remembered
			}
		}
	}
	return r, changed, remembered
}

// incremental allocates for the Services that changed since the last run alone, when that
// gives what a full run would (see Allocator); ok is false when it does not apply.
func (x *Allocator) incremental(m *model.Model) (r *Result, changed []types.NamespacedName, ok bool) {
	if x.a == nil || m.ConfigGeneration == 0 || m.ConfigGeneration != x.gen {
		return nil, nil, false
	}
	// What changed: Services of ours that are new, or another object, or hold other addresses
	// than they did, and those that are gone.
	var fresh []*svc
	seen, held := 0, false
	for _, s := range m.Services {
		if !x.isOurs(s) {
			continue
		}
		ingress := x.ingressOf(s)
		old := x.svcs[s.Key]
		if old != nil {
			seen++
			if old.Service == s && slices.Equal(old.ingress, ingress) {
				continue
			}
			// Given its addresses last time, it now holds them (they are remembered): a
			// full run would have it keep them, with the same outcome, as long as it had no
			// problem. It is settled from now on.
			if old.Service == s && slices.Equal(ingress, old.out.IPs) && old.out.Ready && old.out.Reason == Allocated && len(old.problems) == 0 {
				old.ingress, held = ingress, true
				delete(x.unsettled, s.Key)
				continue
			}
		}
		fresh = append(fresh, newSvc(s, ingress))
		changed = append(changed, s.Key)
	}
	if seen < len(x.svcs) {
		keys := map[types.NamespacedName]bool{}
		for _, s := range m.Services {
			if x.isOurs(s) {
				keys[s.Key] = true
			}
		}
		for k := range x.svcs {
			if !keys[k] {
				changed = append(changed, k)
			}
		}
	}
	if len(changed) == 0 && !held {
		return x.result(m), nil, true
	}
	inChanged := make(map[types.NamespacedName]bool, len(changed))
	for _, k := range changed {
		inChanged[k] = true
	}
	// Where a full run could come out otherwise: someone else waits for an address or has a
	// problem that may involve a changed Service (or one that now holds what it was given,
	// which claims it earlier in a full run), a changed Service shares, or holds what another
	// holds.
	for k := range x.unsettled {
		if !inChanged[k] {
			return nil, nil, false
		}
	}
	if len(changed) == 0 {
		return x.result(m), nil, true
	}
	for _, s := range fresh {
		if s.SharingKey != "" {
			return nil, nil, false
		}
		for _, ip := range s.ingress {
			if st := x.a.used[ip]; st != nil && slices.ContainsFunc(st.holders, func(h *svc) bool { return !inChanged[h.Key] }) {
				return nil, nil, false
			}
		}
	}

	a := x.a
	a.m, a.cursors = m, map[cursorKey]netip.Addr{}
	for _, k := range changed {
		if old := x.svcs[k]; old != nil {
			for f := range maps.Clone(old.held) {
				a.release(old, f)
			}
			delete(x.svcs, k)
			delete(x.unsettled, k)
		}
	}
	slices.SortFunc(fresh, byAge)
	for _, s := range fresh {
		a.keep(s)
	}
	for _, s := range fresh {
		a.allocate(s)
	}
	for _, s := range fresh {
		x.finish(s)
	}
	return x.result(m), changed, true
}
