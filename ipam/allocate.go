package ipam

import (
	"cmp"
	"fmt"
	"maps"
	"math/big"
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"

	"github.com/sluice-lb/sluice/internal/model"
)

// Options are the allocator's settings.
type Options struct {
	// RequireClass makes only Services with the class served (model.Options.LoadBalancerClass) ours; a
	// LoadBalancer Service without a class is left to another implementation.
	RequireClass bool
}

// Reason says why a Service has the addresses it has (a condition reason).
type Reason string

const (
	// Allocated: every family asked for has an address from a pool.
	Allocated Reason = "Allocated"
	// PartiallyAllocated: PreferDualStack got one family only.
	PartiallyAllocated Reason = "PartiallyAllocated"
	// OutsidePools: an address is kept (it is in use) but no pool the Service may use holds
	// it any more: a pool was shrunk, deleted or changed.
	OutsidePools Reason = "OutsidePools"
	// NoPool: no pool may serve the Service (selectors, namespaces, autoAssign, disabled).
	NoPool Reason = "NoPool"
	// UnknownPool: the pool the Service names does not exist (or is not valid).
	UnknownPool Reason = "UnknownPool"
	// PoolExhausted: the pools that may serve it have no free address of the family.
	PoolExhausted Reason = "PoolExhausted"
	// RequestedUnavailable: an address asked for cannot be given (in no pool, not allowed,
	// or used by a Service it may not share with).
	RequestedUnavailable Reason = "RequestedUnavailable"
)

// Allocation is one Service's addresses.
type Allocation struct {
	Service types.NamespacedName
	// IPs are the addresses, in the Service's family order; Pools the pool of each ("" for
	// an address kept outside every pool).
	IPs   []netip.Addr
	Pools []string
	// Ready is true when every family the Service needs has an address.
	Ready bool
	// Reason and Message explain the outcome, for the Service's condition and events.
	Reason  Reason
	Message string
}

// PoolUse is how much of a pool is handed out, per family ("IPv4", "IPv6").
type PoolUse struct {
	Used map[string]int64
	Free map[string]*big.Int
}

// Result is the outcome of Allocate.
type Result struct {
	// Allocations holds one entry per Service of ours, sorted by namespace and name. An
	// Allocation may be shared by later Results: none may be modified.
	Allocations []*Allocation
	// Pools holds the use of every valid pool, by name.
	Pools map[string]PoolUse
}

// Of returns the allocation of a Service, or nil if the Service is not ours.
func (r *Result) Of(key types.NamespacedName) *Allocation {
	i, ok := slices.BinarySearchFunc(r.Allocations, key, func(a *Allocation, k types.NamespacedName) int {
		return cmp.Or(cmp.Compare(a.Service.Namespace, k.Namespace), cmp.Compare(a.Service.Name, k.Name))
	})
	if !ok {
		return nil
	}
	return r.Allocations[i]
}

// family is "IPv4" or "IPv6", as corev1.IPFamily and the pool status spell them.
type family = corev1.IPFamily

func familyOf(a netip.Addr) family {
	if a.Is4() {
		return corev1.IPv4Protocol
	}
	return corev1.IPv6Protocol
}

// svc is a Service being allocated.
type svc struct {
	*model.Service
	ingress  []netip.Addr // the addresses it holds: its status, or what standalone mode remembers
	families []family     // wanted, in order
	require  bool         // RequireDualStack: every family or it is not ready
	held     map[family]netip.Addr
	problems []string // why a family has no address, or what was dropped
	reason   Reason   // the worst reason met
	outside  []netip.Addr
	out      *Allocation // the outcome
}

// addr is a handed-out address.
type addr struct {
	holders []*svc
	pool    *model.Pool // nil: in no pool
}

type allocator struct {
	m       *model.Model
	pools   []*model.Pool // valid pools, in the order they are tried (priority, then age)
	used    map[netip.Addr]*addr
	byKey   map[string][]netip.Addr // sharing key -> addresses held under it, in claim order
	cursors map[cursorKey]netip.Addr
}

type cursorKey struct {
	pool  string
	block int
}

// Allocate gives every LoadBalancer Service of ours its addresses. See the package
// documentation for the rules.
func Allocate(m *model.Model, opts Options) *Result {
	r, _ := (&Allocator{opts: opts}).full(m)
	return r
}

// ours lists the Services of m that are ours, oldest first: an older Service wins a
// contested address, and allocation follows creation order whatever the order of the input.
func (x *Allocator) ours(m *model.Model) []*svc {
	var svcs []*svc
	for _, s := range m.Services {
		if x.isOurs(s) {
			svcs = append(svcs, newSvc(s, x.ingressOf(s)))
		}
	}
	slices.SortFunc(svcs, byAge)
	return svcs
}

func byAge(x, y *svc) int {
	if c := x.CreatedAt.Compare(y.CreatedAt); c != 0 {
		return c
	}
	if c := cmp.Compare(x.Key.Namespace, y.Key.Namespace); c != 0 {
		return c
	}
	return cmp.Compare(x.Key.Name, y.Key.Name)
}

// full allocates for every Service, from scratch.
func (x *Allocator) full(m *model.Model) (*Result, []types.NamespacedName) {
	a := &allocator{m: m, used: map[netip.Addr]*addr{}, byKey: map[string][]netip.Addr{}, cursors: map[cursorKey]netip.Addr{}}
	a.pools = slices.Clone(m.Pools)
	slices.SortStableFunc(a.pools, func(x, y *model.Pool) int { return cmp.Compare(x.SortKey(), y.SortKey()) })
	svcs := x.ours(m)
	// Every address in use is claimed before any new one is handed out.
	for _, s := range svcs {
		a.keep(s)
	}
	for _, s := range svcs {
		a.allocate(s)
	}
	changed := make([]types.NamespacedName, 0, len(svcs))
	gone := x.svcs
	x.a, x.gen = a, m.ConfigGeneration
	x.svcs = make(map[types.NamespacedName]*svc, len(svcs))
	x.unsettled = map[types.NamespacedName]bool{}
	for _, s := range svcs {
		x.finish(s)
		changed = append(changed, s.Key)
		delete(gone, s.Key)
	}
	for k := range gone {
		changed = append(changed, k)
	}
	return x.result(m), changed
}

// finish records s's outcome.
// A Service is settled when it has every address without a problem and holds them all
// (they were claimed from what it holds, before any allocation): a full run would give it
// the same, whatever the others do. One given an address in the allocation phase is not —
// in a full run it allocates in age order, among the others — until it holds it.
func (x *Allocator) finish(s *svc) {
	s.out = x.a.result(s)
	x.svcs[s.Key] = s
	if s.out.Ready && s.out.Reason == Allocated && len(s.problems) == 0 && holdsAll(s.ingress, s.out.IPs) {
		delete(x.unsettled, s.Key)
	} else {
		x.unsettled[s.Key] = true
	}
}

// holdsAll reports whether every address of ips is in ingress.
func holdsAll(ingress, ips []netip.Addr) bool {
	for _, ip := range ips {
		if !slices.Contains(ingress, ip) {
			return false
		}
	}
	return true
}

// result is the Result of the Services' outcomes, in the order of m's Services (by
// namespace and name).
func (x *Allocator) result(m *model.Model) *Result {
	r := &Result{Pools: x.a.usage(), Allocations: make([]*Allocation, 0, len(x.svcs))}
	for _, s := range m.Services {
		if v := x.svcs[s.Key]; v != nil {
			r.Allocations = append(r.Allocations, v.out)
		}
	}
	return r
}

// newSvc prepares s for allocation; it holds ingress.
func newSvc(s *model.Service, ingress []netip.Addr) *svc {
	v := &svc{Service: s, ingress: ingress, held: map[family]netip.Addr{}, reason: Allocated}
	fams := slices.Clone(s.IPFamilies)
	if len(fams) == 0 {
		// Standalone Services often say nothing: the families of what they ask for or
		// have, else IPv4.
		for _, ips := range [][]netip.Addr{s.RequestedIPs, ingress, s.ClusterIPs} {
			for _, ip := range ips {
				if f := familyOf(ip); !slices.Contains(fams, f) {
					fams = append(fams, f)
				}
			}
			if len(fams) > 0 {
				break
			}
		}
		if len(fams) == 0 {
			fams = []family{corev1.IPv4Protocol}
		}
	}
	switch s.IPFamilyPolicy {
	case corev1.IPFamilyPolicyPreferDualStack, corev1.IPFamilyPolicyRequireDualStack:
		if len(fams) == 1 {
			other := corev1.IPv6Protocol
			if fams[0] == corev1.IPv6Protocol {
				other = corev1.IPv4Protocol
			}
			fams = append(fams, other)
		}
		v.require = s.IPFamilyPolicy == corev1.IPFamilyPolicyRequireDualStack
	default:
		fams = fams[:1]
	}
	v.families = fams
	return v
}

// note records a problem of s and raises its reason (later reasons do not hide the first).
func (s *svc) note(r Reason, format string, args ...any) {
	s.problems = append(s.problems, fmt.Sprintf(format, args...))
	if s.reason == Allocated || s.reason == OutsidePools {
		s.reason = r
	}
}

// keep claims the addresses s holds in its status, unless s stopped asking for them or an
// older Service it may not share with holds them.
func (a *allocator) keep(s *svc) {
	for _, ip := range s.ingress {
		f := familyOf(ip)
		switch {
		case !slices.Contains(s.families, f):
			continue // the family is no longer asked for
		case s.held[f].IsValid():
			continue // one address per family: the first listed stays
		case requestedOf(s, f).IsValid() && requestedOf(s, f) != ip:
			continue // it asks for another address of this family now
		}
		pool := a.m.PoolOf(ip)
		if s.Pool != "" && pool != nil && pool.Name != s.Pool && a.m.Pool(s.Pool) != nil {
			continue // it names another pool now
		}
		if other := a.incompatible(s, ip); other != nil {
			s.note(RequestedUnavailable, "%s is held by the older Service %s, which it may not share with", ip, other.Key)
			continue
		}
		a.claim(s, ip, pool)
		if pool == nil || (s.Pool == "" && !a.admits(pool, s)) {
			s.outside = append(s.outside, ip)
		}
	}
}

// allocate gives s an address for each family it still lacks.
func (a *allocator) allocate(s *svc) {
	var fresh []family
	for _, f := range s.families {
		if s.held[f].IsValid() {
			continue
		}
		var ok bool
		if req := requestedOf(s, f); req.IsValid() {
			ok = a.allocateRequested(s, req)
		} else {
			ok = a.allocateAuto(s, f)
		}
		if ok {
			fresh = append(fresh, f)
		}
	}
	if s.require && len(s.held) < len(s.families) {
		// RequireDualStack: both families or none new (what is held stays held).
		for _, f := range fresh {
			s.note(s.reason, "%s not given: RequireDualStack needs every family", s.held[f])
			a.release(s, f)
		}
	}
}

// requestedOf returns the first address of family f s asks for.
func requestedOf(s *svc, f family) netip.Addr {
	for _, ip := range s.RequestedIPs {
		if familyOf(ip) == f {
			return ip
		}
	}
	return netip.Addr{}
}

func (a *allocator) allocateRequested(s *svc, ip netip.Addr) bool {
	pool := a.m.PoolOf(ip)
	switch {
	case pool == nil:
		s.note(RequestedUnavailable, "requested %s is in no pool", ip)
	case s.Pool != "" && pool.Name != s.Pool:
		s.note(RequestedUnavailable, "requested %s is in pool %s, not in pool %s the Service names", ip, pool.Name, s.Pool)
	case !a.admits(pool, s):
		s.note(RequestedUnavailable, "requested %s is in pool %s, which does not serve this Service (%s)", ip, pool.Name, a.whyNot(pool, s))
	case pool.Disabled:
		s.note(RequestedUnavailable, "requested %s is in pool %s, which is disabled", ip, pool.Name)
	case a.avoided(pool, ip):
		s.note(RequestedUnavailable, "requested %s is skipped by pool %s (avoidBuggyIPs: .0 and .255)", ip, pool.Name)
	default:
		if other := a.incompatible(s, ip); other != nil {
			s.note(RequestedUnavailable, "requested %s is used by Service %s, which it may not share with", ip, other.Key)
			return false
		}
		a.claim(s, ip, pool)
		return true
	}
	return false
}

func (a *allocator) allocateAuto(s *svc, f family) bool {
	var candidates []*model.Pool
	if s.Pool != "" {
		p := a.m.Pool(s.Pool)
		switch {
		case p == nil:
			s.note(UnknownPool, "pool %s does not exist or is not valid", s.Pool)
			return false
		case !a.admits(p, s):
			s.note(NoPool, "pool %s does not serve this Service (%s)", p.Name, a.whyNot(p, s))
			return false
		case p.Disabled:
			s.note(NoPool, "pool %s is disabled", p.Name)
			return false
		}
		candidates = []*model.Pool{p}
	} else {
		for _, p := range a.pools {
			if p.AutoAssign && !p.Disabled && a.admits(p, s) {
				candidates = append(candidates, p)
			}
		}
		if len(candidates) == 0 {
			s.note(NoPool, "no pool serves this Service: none with autoAssign, enabled, whose selectors and namespaces admit it")
			return false
		}
	}
	if !slices.ContainsFunc(candidates, func(p *model.Pool) bool { return hasFamily(p, f) }) {
		s.note(NoPool, "no pool that serves this Service has %s addresses", f)
		return false
	}
	// An address already shared under the Service's key comes first (MetalLB does the same).
	if s.SharingKey != "" {
		for _, ip := range a.byKey[s.SharingKey] {
			st := a.used[ip]
			if familyOf(ip) == f && st != nil && len(st.holders) > 0 && st.pool != nil &&
				slices.Contains(candidates, st.pool) && a.incompatible(s, ip) == nil {
				a.claim(s, ip, st.pool)
				return true
			}
		}
	}
	for _, p := range candidates {
		if ip, ok := a.nextFree(p, f); ok {
			a.claim(s, ip, p)
			return true
		}
	}
	names := make([]string, len(candidates))
	for i, p := range candidates {
		names[i] = p.Name
	}
	s.note(PoolExhausted, "no free %s address in pool %s", f, strings.Join(names, ", "))
	return false
}

func hasFamily(p *model.Pool, f family) bool {
	return slices.ContainsFunc(p.Ranges, func(r model.Range) bool { return familyOf(r.First) == f })
}

// nextFree returns the lowest free address of family f in pool p, scanning its blocks in
// order from where the last scan of this Allocate stopped.
func (a *allocator) nextFree(p *model.Pool, f family) (netip.Addr, bool) {
	for i, r := range p.Ranges {
		if familyOf(r.First) != f {
			continue
		}
		k := cursorKey{p.Name, i}
		ip, ok := a.cursors[k]
		if !ok {
			ip = r.First
		}
		for ; ip.IsValid() && r.Contains(ip); ip = ip.Next() {
			if _, taken := a.used[ip]; taken || a.avoided(p, ip) {
				continue
			}
			a.cursors[k] = ip
			return ip, true
		}
		a.cursors[k] = ip // past the block (or the end of the family): exhausted
	}
	return netip.Addr{}, false
}

// avoided reports whether pool p skips ip (avoidBuggyIPs: IPv4 .0 and .255).
func (a *allocator) avoided(p *model.Pool, ip netip.Addr) bool {
	if !p.AvoidBuggyIPs || !ip.Is4() {
		return false
	}
	last := ip.As4()[3]
	return last == 0 || last == 255
}

// admits reports whether pool p may serve s (its namespaces and selectors).
func (a *allocator) admits(p *model.Pool, s *svc) bool { return a.whyNot(p, s) == "" }

// whyNot says which of pool p's restrictions s fails, or "".
func (a *allocator) whyNot(p *model.Pool, s *svc) string {
	ns := s.Key.Namespace
	switch {
	case len(p.Namespaces) > 0 && !slices.Contains(p.Namespaces, ns):
		return "namespace " + ns + " is not in its namespaces"
	case p.NamespaceSelector != nil && !p.NamespaceSelector.Matches(labels.Set(a.m.NamespaceLabels[ns])):
		return "namespace " + ns + " does not match its namespaceSelector"
	case p.ServiceSelector != nil && !p.ServiceSelector.Matches(s.Labels):
		return "the Service's labels do not match its serviceSelector"
	}
	return ""
}

// incompatible returns a holder of ip that s may not share it with, or nil.
func (a *allocator) incompatible(s *svc, ip netip.Addr) *svc {
	st := a.used[ip]
	if st == nil {
		return nil
	}
	for _, h := range st.holders {
		if h != s && !canShare(s, h) {
			return h
		}
	}
	return nil
}

// canShare is MetalLB's rule: the same sharing key, no port used by both (protocol and
// number), and with externalTrafficPolicy Local on either side, both Local and selecting
// the same pods. Across namespaces, both Services must allow the other's namespace.
func canShare(x, y *svc) bool {
	if x.SharingKey == "" || x.SharingKey != y.SharingKey {
		return false
	}
	if x.Key.Namespace != y.Key.Namespace && (!allowsNamespace(x, y.Key.Namespace) || !allowsNamespace(y, x.Key.Namespace)) {
		return false
	}
	for _, p := range x.Ports {
		for _, q := range y.Ports {
			if p.Protocol == q.Protocol && p.Port == q.Port {
				return false
			}
		}
	}
	local := corev1.ServiceExternalTrafficPolicyLocal
	if x.ExternalTrafficPolicy == local || y.ExternalTrafficPolicy == local {
		return x.ExternalTrafficPolicy == y.ExternalTrafficPolicy && len(x.Selector) > 0 && maps.Equal(x.Selector, y.Selector)
	}
	return true
}

func allowsNamespace(s *svc, ns string) bool {
	return slices.Contains(s.SharingNamespaces, "*") || slices.Contains(s.SharingNamespaces, ns)
}

func (a *allocator) claim(s *svc, ip netip.Addr, pool *model.Pool) {
	st := a.used[ip]
	if st == nil {
		st = &addr{pool: pool}
		a.used[ip] = st
	}
	st.holders = append(st.holders, s)
	s.held[familyOf(ip)] = ip
	if s.SharingKey != "" && !slices.Contains(a.byKey[s.SharingKey], ip) {
		a.byKey[s.SharingKey] = append(a.byKey[s.SharingKey], ip)
	}
}

// release undoes s's claim of its family f address.
func (a *allocator) release(s *svc, f family) {
	ip := s.held[f]
	delete(s.held, f)
	st := a.used[ip]
	st.holders = slices.DeleteFunc(st.holders, func(h *svc) bool { return h == s })
	if len(st.holders) == 0 {
		delete(a.used, ip)
		// A released address may be below a cursor: rewind the cursors of its pool.
		for k := range a.cursors {
			if st.pool != nil && k.pool == st.pool.Name {
				delete(a.cursors, k)
			}
		}
	}
}

func (a *allocator) result(s *svc) *Allocation {
	out := &Allocation{Service: s.Key}
	var parts []string
	for _, f := range s.families {
		ip := s.held[f]
		if !ip.IsValid() {
			continue
		}
		pool := ""
		if st := a.used[ip]; st.pool != nil {
			pool = st.pool.Name
		}
		out.IPs = append(out.IPs, ip)
		out.Pools = append(out.Pools, pool)
		switch {
		case slices.Contains(s.outside, ip) && pool == "":
			parts = append(parts, fmt.Sprintf("%s kept: it is in use but in no pool now", ip))
		case slices.Contains(s.outside, ip):
			parts = append(parts, fmt.Sprintf("%s kept: it is in use but pool %s no longer serves this Service", ip, pool))
		default:
			parts = append(parts, fmt.Sprintf("%s from pool %s", ip, pool))
		}
	}
	out.Ready = len(s.held) == len(s.families)
	out.Reason = s.reason
	switch {
	case out.Reason == Allocated && len(s.outside) > 0:
		out.Reason = OutsidePools
	case out.Ready && out.Reason != Allocated && len(s.outside) == 0:
		out.Reason = Allocated // a problem on the way, solved (an address kept over a request)
	case !out.Ready && len(s.held) > 0 && !s.require && s.IPFamilyPolicy == corev1.IPFamilyPolicyPreferDualStack:
		out.Reason = PartiallyAllocated
	}
	parts = append(parts, s.problems...)
	if len(parts) == 0 {
		parts = append(parts, "no address")
	}
	out.Message = strings.Join(parts, "; ")
	return out
}

// usage counts each pool's used and free addresses per family.
func (a *allocator) usage() map[string]PoolUse {
	out := map[string]PoolUse{}
	for _, p := range a.m.Pools {
		u := PoolUse{Used: map[string]int64{}, Free: map[string]*big.Int{}}
		for _, r := range p.Ranges {
			f := string(familyOf(r.First))
			size := r.Size()
			if p.AvoidBuggyIPs && r.First.Is4() {
				size.Sub(size, big.NewInt(buggyIn(r)))
			}
			if u.Free[f] == nil {
				u.Free[f] = new(big.Int)
				u.Used[f] = 0
			}
			u.Free[f].Add(u.Free[f], size)
		}
		out[p.Name] = u
	}
	type poolFamily struct {
		pool   *model.Pool
		family string
	}
	used, counted := map[poolFamily]int64{}, map[poolFamily]int64{}
	for ip, st := range a.used {
		if st.pool == nil {
			continue
		}
		k := poolFamily{st.pool, string(familyOf(ip))}
		used[k]++
		if !a.avoided(st.pool, ip) { // an avoided address is not counted free anyway
			counted[k]++
		}
	}
	for k, n := range used {
		u := out[k.pool.Name]
		u.Used[k.family] = n
		u.Free[k.family].Sub(u.Free[k.family], big.NewInt(counted[k]))
	}
	return out
}

// buggyIn counts the addresses of IPv4 range r ending in .0 or .255.
func buggyIn(r model.Range) int64 {
	v := func(a netip.Addr) int64 {
		b := a.As4()
		return int64(b[0])<<24 | int64(b[1])<<16 | int64(b[2])<<8 | int64(b[3])
	}
	// upTo(n): how many x in [0, n] end in .0 or .255.
	upTo := func(n int64) int64 {
		if n < 0 {
			return 0
		}
		return n/256 + 1 + (n+1)/256
	}
	return upTo(v(r.Last)) - upTo(v(r.First)-1)
}
