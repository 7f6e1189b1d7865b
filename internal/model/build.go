package model

import (
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
	m := &Model{poolsByName: map[string]*Pool{}, NamespaceLabels: map[string]map[string]string{}}
	var list []Problem

	var pools []*Pool
	for _, o := range sortedByAge(in.Pools) {
		p, ps := buildPool(o)
		list = append(list, ps...)
		if p != nil {
			pools = append(pools, p)
		}
	}
	pools, ps := resolvePoolConflicts(pools)
	list = append(list, ps...)
	m.Pools = pools
	for _, p := range pools {
		m.poolsByName[p.Name] = p
	}

	secrets := map[secretKey]*corev1.Secret{}
	for _, s := range in.Secrets {
		secrets[secretKey{s.Namespace, s.Name}] = s
	}
	var peers []*Peer
	for _, o := range sortedByAge(in.Peers) {
		p, ps := buildPeer(o, secrets, opts.Namespace)
		list = append(list, ps...)
		if p != nil {
			peers = append(peers, p)
		}
	}
	peers, ps = resolvePeerConflicts(peers)
	list = append(list, ps...)
	m.Peers = peers
	peersByName := map[string]*Peer{}
	for _, p := range peers {
		peersByName[p.Name] = p
	}

	for _, o := range sortedByName(in.BGPAdverts) {
		a, ps := buildBGPAdvert(o, m.poolsByName, peersByName)
		list = append(list, ps...)
		if a != nil {
			m.BGPAdverts = append(m.BGPAdverts, a)
		}
	}
	for _, o := range sortedByName(in.L2Adverts) {
		a, ps := buildL2Advert(o, m.poolsByName)
		list = append(list, ps...)
		if a != nil {
			m.L2Adverts = append(m.L2Adverts, a)
		}
	}

	slices := map[types.NamespacedName][]*discoveryv1.EndpointSlice{}
	for _, sl := range in.EndpointSlices {
		svc := sl.Labels[discoveryv1.LabelServiceName]
		if svc == "" {
			continue
		}
		k := types.NamespacedName{Namespace: sl.Namespace, Name: svc}
		slices[k] = append(slices[k], sl)
	}
	for _, o := range sortedByName(in.Services) {
		s, ps := buildService(o, slices[types.NamespacedName{Namespace: o.Namespace, Name: o.Name}])
		list = append(list, ps...)
		list = append(list, m.allowExternalIPs(s, opts.ExternalIPCIDRs)...)
		m.Services = append(m.Services, s)
	}
	for _, o := range sortedByName(in.Nodes) {
		n, ps := buildNode(o)
		list = append(list, ps...)
		m.Nodes = append(m.Nodes, n)
	}
	for _, ns := range in.Namespaces {
		m.NamespaceLabels[ns.Name] = ns.Labels
	}
	sortProblems(list)
	return m, list
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
func sortedByName[T metav1.Object](in []T) []T {
	objs := slices.Clone(in)
	sort.SliceStable(objs, func(i, j int) bool {
		if objs[i].GetNamespace() != objs[j].GetNamespace() {
			return objs[i].GetNamespace() < objs[j].GetNamespace()
		}
		return objs[i].GetName() < objs[j].GetName()
	})
	return objs
}
