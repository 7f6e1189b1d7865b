package bgp

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"

	"github.com/sluice-lb/sluice/api/v1alpha1"
	"github.com/sluice-lb/sluice/internal/model"
)

// Path is a prefix to announce to one peer, with its attributes: the merge of every
// advertisement that announces the prefix from this node to that peer (the union of their
// communities, the highest local preference).
type Path struct {
	Prefix      netip.Prefix
	Communities []model.Community // sorted, no duplicates
	// LocalPref is the local preference (iBGP); HasLocalPref says whether one is set.
	LocalPref    uint32
	HasLocalPref bool
}

func (p Path) String() string {
	s := p.Prefix.String()
	for _, c := range p.Communities {
		s += " " + c.String()
	}
	if p.HasLocalPref {
		s += fmt.Sprintf(" local-pref %d", p.LocalPref)
	}
	return s
}

// Equal reports whether two paths carry the same prefix and attributes.
func (p Path) Equal(o Path) bool {
	return p.Prefix == o.Prefix && slices.Equal(p.Communities, o.Communities) &&
		p.HasLocalPref == o.HasLocalPref && p.LocalPref == o.LocalPref
}

// Desired is what one node announces: its peers (those whose node selector admits it) and
// the paths each of them gets.
type Desired struct {
	Node  string
	Peers []*model.Peer // by name
	// Paths holds, per peer name, the paths it gets, sorted by prefix.
	Paths map[string][]Path
	// Warnings say what could not be decided (the node unknown, for example).
	Warnings []string
	// Seq numbers the Desired of a Planner. When Since is not 0, the Desired numbered Since
	// differs from this one only in the prefixes Changed lists, per peer: a Speaker that
	// applied that one can send those alone.
	Seq, Since uint64
	Changed    map[string][]netip.Prefix
}

// Desired computes what node announces from the model. lbIPs, when not nil, are the
// LoadBalancer addresses of our Services (standalone mode's allocation); otherwise their
// status says. It is pure and deterministic.
func DesiredFor(m *model.Model, node string, lbIPs map[types.NamespacedName][]netip.Addr) Desired {
	c := planConfig(m, node)
	perPeer := map[string]map[netip.Prefix]*attrs{}
	add := func(peers []string, a *model.BGPAdvert, prefix netip.Prefix) {
		for _, peer := range peers {
			m := perPeer[peer]
			if m == nil {
				m = map[netip.Prefix]*attrs{}
				perPeer[peer] = m
			}
			at := m[prefix]
			if at == nil {
				at = &attrs{}
				m[prefix] = at
			}
			at.add(a)
		}
	}
	c.podCIDRs(add)
	for _, s := range m.Services {
		c.service(m, s, lbIPs, add)
	}
	d := c.desired
	d.Paths = map[string][]Path{}
	for peer, prefixes := range perPeer {
		var paths []Path
		for prefix, at := range prefixes {
			paths = append(paths, at.path(prefix))
		}
		slices.SortFunc(paths, func(x, y Path) int { return comparePrefixes(x.Prefix, y.Prefix) })
		d.Paths[peer] = paths
	}
	return d
}

// attrs are the merged attributes of one prefix to one peer.
type attrs struct {
	communities []model.Community
	localPref   uint32
	hasLP       bool
}

func (at *attrs) add(a *model.BGPAdvert) {
	at.communities = append(at.communities, a.Communities...)
	if a.LocalPreference != nil && (!at.hasLP || *a.LocalPreference > at.localPref) {
		at.localPref, at.hasLP = *a.LocalPreference, true
	}
}

func (at *attrs) path(prefix netip.Prefix) Path {
	cs := slices.Clone(at.communities)
	slices.SortFunc(cs, compareCommunities)
	cs = slices.Compact(cs)
	return Path{Prefix: prefix, Communities: cs, LocalPref: at.localPref, HasLocalPref: at.hasLP}
}

// plan is what the configuration and the node decide, before any Service: the peers, and
// the advertisements that apply to the node with the peers each one announces to.
type plan struct {
	desired Desired // Peers and Warnings
	node    string
	self    *model.Node
	adverts []plannedAdvert
}

type plannedAdvert struct {
	*model.BGPAdvert
	peers []string
}

// emit is told that advertisement a announces prefix to peers.
type emit func(peers []string, a *model.BGPAdvert, prefix netip.Prefix)

func planConfig(m *model.Model, node string) *plan {
	c := &plan{desired: Desired{Node: node}, node: node}
	for _, n := range m.Nodes {
		if n.Name == node {
			c.self = n
		}
	}
	nodeLabels := labels.Set{}
	if c.self == nil {
		c.desired.Warnings = append(c.desired.Warnings, fmt.Sprintf("Node %q is unknown: peers and advertisements with a node selector leave it out", node))
	} else {
		nodeLabels = c.self.Labels
	}
	for _, p := range m.Peers {
		if p.NodeSelector == nil || p.NodeSelector.Matches(nodeLabels) {
			c.desired.Peers = append(c.desired.Peers, p)
		}
	}
	slices.SortFunc(c.desired.Peers, func(a, b *model.Peer) int { return cmp.Compare(a.Name, b.Name) })
	for _, a := range m.BGPAdverts {
		if a.NodeSelector != nil && !a.NodeSelector.Matches(nodeLabels) {
			continue
		}
		var peers []string
		for _, p := range c.desired.Peers {
			if len(a.Peers) == 0 || slices.Contains(a.Peers, p.Name) {
				peers = append(peers, p.Name)
			}
		}
		if len(peers) > 0 {
			c.adverts = append(c.adverts, plannedAdvert{a, peers})
		}
	}
	return c
}

// prefixOf is the prefix a announces for ip: its aggregation length.
func (a plannedAdvert) prefixOf(ip netip.Addr) netip.Prefix {
	bits := a.AggregationLength
	if ip.Is6() {
		bits = a.AggregationLengthV6
	}
	p, _ := ip.Prefix(bits)
	return p
}

// podCIDRs emits the node's pod CIDRs, for the advertisements that ask for them.
func (c *plan) podCIDRs(add emit) {
	for _, a := range c.adverts {
		if c.self != nil && slices.Contains(a.AddressTypes, v1alpha1.AddressPodCIDR) {
			for _, p := range c.self.PodCIDRs {
				add(a.peers, a.BGPAdvert, p.Masked())
			}
		}
	}
}

// service emits the prefixes the node announces for Service s.
func (c *plan) service(m *model.Model, s *model.Service, lbIPs map[types.NamespacedName][]netip.Addr, add emit) {
	for _, a := range c.adverts {
		if a.ServiceSelector != nil && !a.ServiceSelector.Matches(s.Labels) {
			continue
		}
		for _, typ := range a.AddressTypes {
			if typ == v1alpha1.AddressPodCIDR || !announcesFrom(s, typ, c.node) {
				continue
			}
			for _, ip := range serviceAddresses(m, s, typ, a.BGPAdvert, lbIPs) {
				add(a.peers, a.BGPAdvert, a.prefixOf(ip))
			}
		}
	}
}

// serviceAddresses returns the addresses of Service s of type typ that advertisement a
// covers. LoadBalancer addresses must lie in one of the advertisement's pools.
func serviceAddresses(m *model.Model, s *model.Service, typ v1alpha1.AddressType, a *model.BGPAdvert,
	lbIPs map[types.NamespacedName][]netip.Addr) []netip.Addr {
	switch typ {
	case v1alpha1.AddressLoadBalancerIP:
		if s.Type != corev1.ServiceTypeLoadBalancer {
			return nil
		}
		ips := s.IngressIPs
		if lbIPs != nil && s.Ours {
			ips = lbIPs[s.Key]
		}
		var out []netip.Addr
		for _, ip := range ips {
			if p := m.PoolOf(ip); p != nil && a.Pools.Matches(p) {
				out = append(out, ip)
			}
		}
		return out
	case v1alpha1.AddressExternalIP:
		if s.Type == corev1.ServiceTypeExternalName {
			return nil
		}
		return s.ExternalIPs
	case v1alpha1.AddressClusterIP:
		return s.ClusterIPs
	}
	return nil
}

// announcesFrom says whether node announces Service s's addresses of type typ: with a Local
// traffic policy (external for LoadBalancer and external IPs, internal for cluster IPs) only
// a node with a ready endpoint of the Service does, since the others would drop the traffic.
func announcesFrom(s *model.Service, typ v1alpha1.AddressType, node string) bool {
	local := s.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal
	if typ == v1alpha1.AddressClusterIP {
		local = s.InternalTrafficPolicy == corev1.ServiceInternalTrafficPolicyLocal
	}
	if !local {
		return true
	}
	return slices.ContainsFunc(s.Endpoints, func(e model.Endpoint) bool { return e.Node == node && e.Ready })
}

func comparePrefixes(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return cmp.Compare(a.Bits(), b.Bits())
}

func compareCommunities(a, b model.Community) int {
	if a.Large != b.Large {
		if a.Large {
			return 1
		}
		return -1
	}
	return cmp.Or(cmp.Compare(a.Value, b.Value), cmp.Compare(a.Global, b.Global), cmp.Compare(a.Local1, b.Local1), cmp.Compare(a.Local2, b.Local2))
}
