package model

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"sort"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/sluice-lb/sluice/api/v1alpha1"
)

// Objects is the input of Build: every object of the kinds Sluice reads.
type Objects struct {
	Pools          []*v1alpha1.IPPool
	Peers          []*v1alpha1.BGPPeer
	BGPAdverts     []*v1alpha1.BGPAdvertisement
	L2Adverts      []*v1alpha1.L2Advertisement
	Services       []*corev1.Service
	EndpointSlices []*discoveryv1.EndpointSlice
	Nodes          []*corev1.Node
	Secrets        []*corev1.Secret
	Namespaces     []*corev1.Namespace
}

// Options are the settings Build needs from the agent.
type Options struct {
	// Namespace is where a BGPPeer's password Secret is looked up when its reference names no
	// namespace: the agent's own namespace.
	Namespace string
	// ExternalIPCIDRs are where spec.externalIPs may lie besides the IPPools' ranges: an
	// external IP anywhere else is ignored (CVE-2020-8554: any user who can create a Service
	// could otherwise take over traffic to any address).
	ExternalIPCIDRs []netip.Prefix
	// LoadBalancerClass is the spec.loadBalancerClass served besides an unset one (default
	// LoadBalancerClass): another implementation's class, to take its Services over unedited.
	LoadBalancerClass string
}

// Model is a validated snapshot. Slices are sorted (pools and peers oldest first, the rest by
// name) and nothing may be modified.
type Model struct {
	Pools      []*Pool
	Peers      []*Peer
	BGPAdverts []*BGPAdvert
	L2Adverts  []*L2Advert
	Services   []*Service
	Nodes      []*Node
	// NamespaceLabels are the labels of each namespace known, for namespace selectors.
	NamespaceLabels map[string]map[string]string
	// ConfigGeneration changes whenever the configuration does (pools, peers,
	// advertisements, secrets, namespaces, options), in Models of one Builder: Models of
	// the same generation have the very same Pools, Peers, advertisements and namespaces.
	ConfigGeneration uint64

	poolsByName map[string]*Pool
}

// Pool returns the pool of that name, or nil.
func (m *Model) Pool(name string) *Pool { return m.poolsByName[name] }

// PoolOf returns the pool holding address ip, or nil. Valid pools do not overlap.
func (m *Model) PoolOf(ip netip.Addr) *Pool {
	for _, p := range m.Pools {
		for _, r := range p.Ranges {
			if r.Contains(ip) {
				return p
			}
		}
	}
	return nil
}

// Build validates objects into a Model. Problems lists what was wrong, sorted; the Model holds
// everything that was not rejected.
func Build(in Objects, opts Options) (*Model, []Problem) {
	return new(Builder).Build(in, opts)
}

// Builder builds one Model after another, reusing what did not change since the last: the
// configuration (pools, peers, advertisements, secrets, namespaces) when every one of those
// objects is the one given last time, a Service when its object and its EndpointSlices are
// and the configuration is, and a Node when its object is. Sources hand out an unchanged
// object as the very same pointer (informers and the file Decoder do), so a change to one
// Service among 10k rebuilds one. Whatever is reused is what Build would make again: the
// Model is the same as Build's. A Builder is not safe for concurrent use.
type Builder struct {
	opts   Options
	in     Objects // the configuration objects of the last Build
	config *config
	gen    uint64
	// services and nodes are the last Build's results by input object.
	services map[*corev1.Service]builtService
	nodes    map[*corev1.Node]built[*Node]
	builds   uint64
}

// config is the part of a Model built from the configuration objects.
type config struct {
	pools           []*Pool
	poolsByName     map[string]*Pool
	peers           []*Peer
	bgpAdverts      []*BGPAdvert
	l2Adverts       []*L2Advert
	namespaceLabels map[string]map[string]string
	problems        []Problem
}

type built[T any] struct {
	v        T
	problems []Problem
	used     uint64 // the last build that used it
}

func (b built[T]) lastUsed() uint64 { return b.used }

type builtService struct {
	built[*Service]
	slices []*discoveryv1.EndpointSlice
	gen    uint64 // the configuration it was built with
}

// Build validates objects into a Model, as the function Build does.
func (b *Builder) Build(in Objects, opts Options) (*Model, []Problem) {
	if b.config == nil || !sameConfig(b.in, in) || !sameOptions(b.opts, opts) {
		b.config = buildConfig(in, opts)
		b.in = Objects{Pools: in.Pools, Peers: in.Peers, BGPAdverts: in.BGPAdverts, L2Adverts: in.L2Adverts,
			Secrets: in.Secrets, Namespaces: in.Namespaces}
		b.opts = opts
		b.gen++
	}
	c := b.config
	m := &Model{Pools: c.pools, poolsByName: c.poolsByName, Peers: c.peers, BGPAdverts: c.bgpAdverts,
		L2Adverts: c.l2Adverts, NamespaceLabels: c.namespaceLabels, ConfigGeneration: b.gen}
	list := slices.Clone(c.problems)

	byService := map[types.NamespacedName][]*discoveryv1.EndpointSlice{}
	for _, sl := range in.EndpointSlices {
		svc := sl.Labels[discoveryv1.LabelServiceName]
		if svc == "" {
			continue
		}
		k := types.NamespacedName{Namespace: sl.Namespace, Name: svc}
		byService[k] = append(byService[k], sl)
	}
	// The memos are kept from build to build (a map of 10k made anew each time would cost
	// more than the rest): an entry is stamped with the last build that used it, and those
	// of objects gone are swept out.
	b.builds++
	if b.services == nil {
		b.services, b.nodes = map[*corev1.Service]builtService{}, map[*corev1.Node]built[*Node]{}
	}
	m.Services = make([]*Service, 0, len(in.Services))
	for _, o := range sortedByName(in.Services) {
		sls := byService[types.NamespacedName{Namespace: o.Namespace, Name: o.Name}]
		r, ok := b.services[o]
		if !ok || r.gen != b.gen || !slices.Equal(r.slices, sls) {
			s, ps := buildService(o, sls, cmp.Or(opts.LoadBalancerClass, LoadBalancerClass))
			ps = append(ps, m.allowExternalIPs(s, opts.ExternalIPCIDRs)...)
			r = builtService{built: built[*Service]{v: s, problems: ps}, slices: sls, gen: b.gen}
		}
		r.used = b.builds
		b.services[o] = r
		list = append(list, r.problems...)
		m.Services = append(m.Services, r.v)
	}
	for _, o := range sortedByName(in.Nodes) {
		r, ok := b.nodes[o]
		if !ok {
			r.v, r.problems = buildNode(o)
		}
		r.used = b.builds
		b.nodes[o] = r
		list = append(list, r.problems...)
		m.Nodes = append(m.Nodes, r.v)
	}
	sweep(b.services, len(m.Services), b.builds)
	sweep(b.nodes, len(m.Nodes), b.builds)
	sortProblems(list)
	return m, list
}

// sweep removes the entries of memo not used by build, which used n.
func sweep[K comparable, V interface{ lastUsed() uint64 }](memo map[K]V, n int, build uint64) {
	if len(memo) == n {
		return
	}
	for k, v := range memo {
		if v.lastUsed() != build {
			delete(memo, k)
		}
	}
}

// sameConfig reports whether a and b hold the same configuration objects (by pointer).
func sameConfig(a, b Objects) bool {
	return slices.Equal(a.Pools, b.Pools) && slices.Equal(a.Peers, b.Peers) && slices.Equal(a.BGPAdverts, b.BGPAdverts) &&
		slices.Equal(a.L2Adverts, b.L2Adverts) && slices.Equal(a.Secrets, b.Secrets) && slices.Equal(a.Namespaces, b.Namespaces)
}

func sameOptions(a, b Options) bool {
	return a.Namespace == b.Namespace && slices.Equal(a.ExternalIPCIDRs, b.ExternalIPCIDRs) && a.LoadBalancerClass == b.LoadBalancerClass
}

// buildConfig builds the part of a Model the configuration objects make.
func buildConfig(in Objects, opts Options) *config {
	c := &config{poolsByName: map[string]*Pool{}, namespaceLabels: map[string]map[string]string{}}
	var pools []*Pool
	for _, o := range sortedByAge(in.Pools) {
		p, ps := buildPool(o)
		c.problems = append(c.problems, ps...)
		if p != nil {
			pools = append(pools, p)
		}
	}
	pools, ps := resolvePoolConflicts(pools)
	c.problems = append(c.problems, ps...)
	c.pools = pools
	for _, p := range pools {
		c.poolsByName[p.Name] = p
	}

	secrets := map[secretKey]*corev1.Secret{}
	for _, s := range in.Secrets {
		secrets[secretKey{s.Namespace, s.Name}] = s
	}
	var peers []*Peer
	for _, o := range sortedByAge(in.Peers) {
		p, ps := buildPeer(o, secrets, opts.Namespace)
		c.problems = append(c.problems, ps...)
		if p != nil {
			peers = append(peers, p)
		}
	}
	peers, ps = resolvePeerConflicts(peers)
	c.problems = append(c.problems, ps...)
	c.peers = peers
	peersByName := map[string]*Peer{}
	for _, p := range peers {
		peersByName[p.Name] = p
	}

	for _, o := range sortedByName(in.BGPAdverts) {
		a, ps := buildBGPAdvert(o, c.poolsByName, peersByName)
		c.problems = append(c.problems, ps...)
		if a != nil {
			c.bgpAdverts = append(c.bgpAdverts, a)
		}
	}
	for _, o := range sortedByName(in.L2Adverts) {
		a, ps := buildL2Advert(o, c.poolsByName)
		c.problems = append(c.problems, ps...)
		if a != nil {
			c.l2Adverts = append(c.l2Adverts, a)
		}
	}
	for _, ns := range in.Namespaces {
		c.namespaceLabels[ns.Name] = ns.Labels
	}
	return c
}

// allowExternalIPs keeps the external IPs of s that lie in an IPPool or in cidrs, and reports
// each other one as ignored.
func (m *Model) allowExternalIPs(s *Service, cidrs []netip.Prefix) []Problem {
	var list []Problem
	kept := s.ExternalIPs[:0]
	for i, ip := range s.ExternalIPs {
		if m.PoolOf(ip) != nil || slices.ContainsFunc(cidrs, func(p netip.Prefix) bool { return p.Contains(ip) }) {
			kept = append(kept, ip)
			continue
		}
		list = append(list, Problem{Object: ObjectRef{Kind: "Service", Namespace: s.Key.Namespace, Name: s.Key.Name},
			Field:   fmt.Sprintf("spec.externalIPs[%d]", i),
			Message: fmt.Sprintf("%s is in no IPPool and no --external-ip-cidrs: ignored (external IPs are served only where the administrator allows them, CVE-2020-8554)", ip)})
	}
	s.ExternalIPs = kept
	return list
}

// sortedByAge returns the objects oldest first (creationTimestamp, then name): on a conflict
// the older object wins, as it was there first and may already be in use.
func sortedByAge[T metav1.Object](in []T) []T {
	objs := slices.Clone(in)
	sort.SliceStable(objs, func(i, j int) bool {
		ti, tj := objs[i].GetCreationTimestamp(), objs[j].GetCreationTimestamp()
		if !ti.Equal(&tj) {
			return ti.Before(&tj)
		}
		return objs[i].GetName() < objs[j].GetName()
	})
	return objs
}

// sortedByName returns the objects by namespace, then name.
// Input that is sorted already (the store lists by key) is returned as it is.
func sortedByName[T metav1.Object](in []T) []T {
	byName := func(a, b T) int {
		return cmp.Or(cmp.Compare(a.GetNamespace(), b.GetNamespace()), cmp.Compare(a.GetName(), b.GetName()))
	}
	if slices.IsSortedFunc(in, byName) {
		return in
	}
	objs := slices.Clone(in)
	slices.SortStableFunc(objs, byName)
	return objs
}
