package l2announce

import (
	"net/netip"
	"slices"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/sluice-lb/sluice/internal/model"
)

// ExcludeLabel keeps a node from answering for any Service address, as it keeps it out of
// cloud load balancers.
const ExcludeLabel = "node.kubernetes.io/exclude-from-external-load-balancers"

// Candidate is a Service address to answer for over ARP/NDP: the nodes that may answer for
// it (liveness aside) and the interfaces named by its advertisements (none: the default).
type Candidate struct {
	Addr    netip.Addr
	Service types.NamespacedName
	// ServiceUID is the Service's metadata.uid, for Events about it.
	ServiceUID types.UID
	Nodes      []string
	Interfaces []string
}

// Candidates returns, sorted by address, every LoadBalancer address an L2Advertisement
// covers — in one of its pools, of a Service its serviceSelector admits — with the nodes its
// nodeSelector admits, except those labelled ExcludeLabel and, for a Service with
// externalTrafficPolicy Local, those without a ready endpoint of it. Several advertisements of
// one address add up (their nodes and interfaces). lbIPs, when not nil, are our Services'
// addresses (standalone mode's allocation) in place of their status.
func Candidates(m *model.Model, lbIPs map[types.NamespacedName][]netip.Addr) []Candidate {
	byAddr := map[netip.Addr]*Candidate{}
	for _, a := range m.L2Adverts {
		var nodes []string
		for _, n := range m.Nodes {
			if _, excluded := n.Labels[ExcludeLabel]; excluded {
				continue
			}
			if a.NodeSelector == nil || a.NodeSelector.Matches(n.Labels) {
				nodes = append(nodes, n.Name)
			}
		}
		for _, s := range m.Services {
			if s.Type != corev1.ServiceTypeLoadBalancer || (a.ServiceSelector != nil && !a.ServiceSelector.Matches(s.Labels)) {
				continue
			}
			ips := s.IngressIPs
			if lbIPs != nil && s.Ours {
				ips = lbIPs[s.Key]
			}
			for _, ip := range ips {
				if p := m.PoolOf(ip); p == nil || !a.Pools.Matches(p) {
					continue
				}
				c := byAddr[ip]
				if c == nil {
					c = &Candidate{Addr: ip, Service: s.Key, ServiceUID: s.UID}
					byAddr[ip] = c
				}
				for _, n := range nodes {
					if s.ExternalTrafficPolicy != corev1.ServiceExternalTrafficPolicyLocal || hasReadyEndpoint(s, n) {
						c.Nodes = append(c.Nodes, n)
					}
				}
				c.Interfaces = append(c.Interfaces, a.Interfaces...)
			}
		}
	}
	out := make([]Candidate, 0, len(byAddr))
	for _, c := range byAddr {
		slices.Sort(c.Nodes)
		c.Nodes = slices.Compact(c.Nodes)
		slices.Sort(c.Interfaces)
		c.Interfaces = slices.Compact(c.Interfaces)
		out = append(out, *c)
	}
	slices.SortFunc(out, func(a, b Candidate) int { return a.Addr.Compare(b.Addr) })
	return out
}

func hasReadyEndpoint(s *model.Service, node string) bool {
	return slices.ContainsFunc(s.Endpoints, func(e model.Endpoint) bool { return e.Node == node && e.Ready && !e.Terminating })
}

// Owners assigns every candidate its owner among its nodes that are alive (none: no entry).
func Owners(cands []Candidate, alive []string) map[netip.Addr]string {
	live := make(map[string]bool, len(alive))
	for _, n := range alive {
		live[n] = true
	}
	wants := make([]Want, 0, len(cands))
	for _, c := range cands {
		nodes := slices.DeleteFunc(slices.Clone(c.Nodes), func(n string) bool { return !live[n] })
		wants = append(wants, Want{Addr: c.Addr, Nodes: nodes})
	}
	return Assign(wants)
}

// Owned returns the candidates node owns given the live nodes.
func Owned(cands []Candidate, alive []string, node string) []Candidate {
	owners := Owners(cands, alive)
	var out []Candidate
	for _, c := range cands {
		if owners[c.Addr] == node {
			out = append(out, c)
		}
	}
	return out
}
