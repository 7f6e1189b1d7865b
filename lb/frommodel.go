package lb

import (
	"net/netip"
	"slices"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/sluice-lb/sluice/internal/model"
)

// Options are the settings FromModel needs from the agent.
type Options struct {
	// LoadBalancerIPs, when not nil, are the addresses of our LoadBalancer Services (the
	// allocator's result in standalone mode, where no status is written back): they are used
	// instead of the Services' status. A Service of ours missing from it has none.
	LoadBalancerIPs map[types.NamespacedName][]netip.Addr
	// Algorithm is the backend selection of every Service.
	Algorithm Algorithm
	// NodeAddresses are this node's addresses: NodePort frontends listen on each.
	NodeAddresses []netip.Addr
	// Node is the node the datapath runs on: frontends whose traffic policy is Local
	// (externalTrafficPolicy for External ones, internalTrafficPolicy for Internal ones)
	// balance over the endpoints on this node only.
	Node string
	// Zone is the node's topology.kubernetes.io/zone, for topology hints ("": none).
	Zone string
	// NodePortFirst and NodePortLast bound the node ports served (inclusive); a Service
	// port's nodePort outside them gets no frontend. Both 0: any.
	NodePortFirst, NodePortLast uint16
	// DSR makes direct server return the forwarding mode of Services that do not pick one
	// (model.Service.ForwardingMode); SNAT otherwise.
	DSR bool
	// Nodes are the cluster's nodes' addresses by name: a remote backend's Node is its
	// node's first address of the backend's family.
	Nodes map[string][]netip.Addr
}

// nodePortServed reports whether a nodePort is within opts' range.
func (o Options) nodePortServed(p uint16) bool {
	return o.NodePortLast == 0 || (p >= o.NodePortFirst && p <= o.NodePortLast)
}

// Conflict is a frontend that two Services claim. The first Service in key order keeps it.
type Conflict struct {
	Frontend Frontend
	Kept     ServiceKey
	Dropped  ServiceKey
}

// FromModel returns what the datapath of a node is programmed with for the Services of a
// model: one Service per port (TCP or UDP; SCTP is not balanced yet) and address family of
// each Kubernetes Service that has a frontend in that family. It is pure and deterministic:
// the result is sorted by key and does not depend on the order of svcs.
//
// Frontends are, with scope External, the status.loadBalancer.ingress addresses of a
// LoadBalancer Service (whoever assigned them, as kube-proxy does) or, for ours, its
// addresses in opts.LoadBalancerIPs when that is set, spec.externalIPs, and each of
// opts.NodeAddresses on the port's nodePort (NodePort and LoadBalancer Services); with scope
// Internal, the cluster IPs. Headless Services, ExternalName ones and those whose
// ServiceProxyNameLabel names another proxy are left out, as kube-proxy leaves them. An address listed twice is kept once, External winning. A frontend
// claimed by two Services goes to the first in key order and the other one is reported as a
// Conflict; a Service left without frontends is dropped.
//
// Backends are the endpoints of the frontends' family that have the port: ready ones are
// Active, serving and terminating ones Terminating (Active when no endpoint is ready), the
// others left out. Frontends of a scope
// whose traffic policy is Local form a Service of their own (ServiceKey.Local) whose backends
// are only the endpoints on opts.Node: as with kube-proxy, such traffic is never sent to
// another node, so the client's address is kept and replies leave through this node; with no
// local endpoint it is refused. Every backend has
// DefaultWeight and ID 0 (see IDs.Assign). A Service with no backend is kept: the datapath
// answers it with a refusal, not silence.
func FromModel(svcs []*model.Service, opts Options) ([]Service, []Conflict) {
	var out []Service
	for _, s := range svcs {
		out = append(out, fromModelService(s, opts)...)
	}
	slices.SortFunc(out, func(a, b Service) int { return compareServiceKeys(a.Key, b.Key) })

	type claim struct {
		addr  netip.Addr
		port  uint16
		proto Protocol
	}
	owner := map[claim]ServiceKey{}
	var conflicts []Conflict
	kept := out[:0]
	for _, svc := range out {
		fronts := svc.Frontends[:0]
		for _, f := range svc.Frontends {
			c := claim{f.Addr, f.Port, f.Protocol}
			if k, taken := owner[c]; taken {
				conflicts = append(conflicts, Conflict{Frontend: f, Kept: k, Dropped: svc.Key})
				continue
			}
			owner[c] = svc.Key
			fronts = append(fronts, f)
		}
		if len(fronts) > 0 {
			svc.Frontends = fronts
			kept = append(kept, svc)
		}
	}
	return kept, conflicts
}

// ServiceProxyNameLabel names the proxy that serves a Service; kube-proxy and Sluice leave
// Services that carry it alone (unless it names Sluice), as their mesh or gateway serves them.
const (
	ServiceProxyNameLabel = "service.kubernetes.io/service-proxy-name"
	ServiceProxyName      = "sluice"
)

// fromModelService returns the Services of one model Service, in no particular order.
func fromModelService(s *model.Service, opts Options) []Service {
	if s.Type == corev1.ServiceTypeExternalName || s.Headless {
		return nil
	}
	if name, ok := s.Labels[ServiceProxyNameLabel]; ok && name != ServiceProxyName {
		return nil
	}
	var external []netip.Addr
	if s.Type == corev1.ServiceTypeLoadBalancer {
		if opts.LoadBalancerIPs != nil && s.Ours {
			external = append(external, opts.LoadBalancerIPs[s.Key]...)
		} else {
			external = append(external, s.IngressIPs...)
		}
	}
	// loadBalancerSourceRanges hold for the LoadBalancer addresses only, as with kube-proxy:
	// not for node ports, external or cluster IPs.
	var restricted map[netip.Addr]bool
	if s.SourceRestricted {
		restricted = map[netip.Addr]bool{}
		for _, a := range external {
			restricted[a] = true
		}
	}
	external = append(external, s.ExternalIPs...)

	affinity, timeout := AffinityNone, s.AffinityTimeout
	if s.SessionAffinity == corev1.ServiceAffinityClientIP {
		affinity = AffinityClientIP
	} else {
		timeout = 0
	}

	externalLocal := s.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal
	internalLocal := s.InternalTrafficPolicy == corev1.ServiceInternalTrafficPolicyLocal

	var out []Service
	seen := map[ServiceKey]bool{}
	for _, p := range s.Ports {
		proto, ok := protocolOf(p.Protocol)
		if !ok {
			continue
		}
		for _, fam := range []Family{IPv4, IPv6} {
			key := ServiceKey{Namespace: s.Key.Namespace, Name: s.Key.Name, Port: p.Name, Family: fam}
			if seen[key] {
				continue // a second port of the same name; the API server forbids it
			}
			seen[key] = true
			// fronts[true] are the frontends whose traffic policy is Local.
			fronts := map[bool][]Frontend{}
			for _, a := range external {
				if familyOf(a) == fam {
					fronts[externalLocal] = append(fronts[externalLocal], Frontend{Addr: a, Port: p.Port, Protocol: proto, Scope: ScopeExternal})
				}
			}
			if p.NodePort != 0 && opts.nodePortServed(p.NodePort) && hasFamily(s, fam) &&
				(s.Type == corev1.ServiceTypeNodePort || s.Type == corev1.ServiceTypeLoadBalancer) {
				for _, a := range opts.NodeAddresses {
					if familyOf(a) == fam {
						fronts[externalLocal] = append(fronts[externalLocal], Frontend{Addr: a, Port: p.NodePort, Protocol: proto, Scope: ScopeExternal})
					}
				}
			}
			for _, a := range s.ClusterIPs {
				if familyOf(a) == fam {
					fronts[internalLocal] = append(fronts[internalLocal], Frontend{Addr: a, Port: p.Port, Protocol: proto, Scope: ScopeInternal})
				}
			}
			// An address that is both external and a cluster IP keeps its External
			// frontend only, in whichever half that falls.
			if externalLocal != internalLocal {
				ext := map[netip.Addr]bool{}
				for _, f := range fronts[externalLocal] {
					ext[f.Addr] = true
				}
				fronts[internalLocal] = slices.DeleteFunc(fronts[internalLocal], func(f Frontend) bool { return ext[f.Addr] })
			}
			for _, local := range []bool{false, true} {
				if len(fronts[local]) == 0 {
					continue
				}
				k := key
				k.Local = local
				svc := Service{
					Key:             k,
					Frontends:       uniqueFrontends(fronts[local]),
					Backends:        backendsOf(topology(s.Endpoints, local, opts), p.Name, proto, fam, local, opts),
					Affinity:        affinity,
					DSR:             s.ForwardingMode == model.ForwardingDSR || (s.ForwardingMode == "" && opts.DSR),
					AffinityTimeout: timeout,
					Algorithm:       opts.Algorithm,
				}
				for _, f := range svc.Frontends {
					if f.Scope == ScopeExternal && restricted[f.Addr] && f.Port == p.Port {
						svc.Restricted = append(svc.Restricted, f)
					}
				}
				if len(svc.Restricted) > 0 {
					for _, r := range s.SourceRanges {
						if (r.Addr().Is4() && fam == IPv4) || (r.Addr().Is6() && fam == IPv6) {
							svc.SourceRanges = append(svc.SourceRanges, r)
						}
					}
				}
				out = append(out, svc)
			}
		}
	}
	return out
}

// hasFamily says whether Service s is of family fam, for its node ports: spec.ipFamilies
// when set, else its cluster IPs' families, else (a Service written by hand for standalone
// mode, with neither) every family.
func hasFamily(s *model.Service, fam Family) bool {
	if len(s.IPFamilies) > 0 {
		want := corev1.IPv4Protocol
		if fam == IPv6 {
			want = corev1.IPv6Protocol
		}
		return slices.Contains(s.IPFamilies, want)
	}
	if len(s.ClusterIPs) > 0 {
		return slices.ContainsFunc(s.ClusterIPs, func(a netip.Addr) bool { return familyOf(a) == fam })
	}
	return true
}

// uniqueFrontends sorts frontends and keeps one per address and port, the External one if
// any.
func uniqueFrontends(fronts []Frontend) []Frontend {
	slices.SortFunc(fronts, compareFrontends)
	return slices.CompactFunc(fronts, func(a, b Frontend) bool { return a.Addr == b.Addr && a.Port == b.Port })
}

// backendsOf returns, sorted, the backends of the endpoints of family fam for a Service port;
// with local, only those on node. Those on another node are Remote.
func backendsOf(eps []model.Endpoint, portName string, proto Protocol, fam Family, local bool, opts Options) []Backend {
	node := opts.Node
	var out []Backend
	for _, ep := range eps {
		if familyOf(ep.Addr) != fam || (local && ep.Node != node) {
			continue
		}
		port, ok := ep.Ports[portName]
		if !ok || port == 0 {
			continue
		}
		var state BackendState
		switch {
		case ep.Terminating && ep.Serving:
			state = BackendTerminating
		case ep.Terminating || !ep.Ready:
			continue
		default:
			state = BackendActive
		}
		// An endpoint without a node (a hand-written standalone config) is taken as local.
		b := Backend{Addr: ep.Addr, Port: port, Weight: DefaultWeight, State: state, Remote: ep.Node != "" && node != "" && ep.Node != node}
		if b.Remote {
			if i := slices.IndexFunc(opts.Nodes[ep.Node], func(a netip.Addr) bool { return familyOf(a) == fam }); i >= 0 {
				b.Node = opts.Nodes[ep.Node][i]
			}
		}
		out = append(out, b)
	}
	// With no ready endpoint, serving terminating ones take new flows rather than none (as
	// kube-proxy does): a rolling update of a one-replica Deployment keeps answering.
	if !slices.ContainsFunc(out, func(b Backend) bool { return b.State == BackendActive }) {
		for i := range out {
			out[i].State = BackendActive
		}
	}
	slices.SortFunc(out, func(a, b Backend) int { return compareBackendKeys(a.Key(), b.Key()) })
	return slices.CompactFunc(out, func(a, b Backend) bool { return a.Key() == b.Key() })
}

// topology returns the endpoints traffic of this node may go to under the Service's
// topology hints, as kube-proxy decides (not for a Local traffic policy, which keeps to the
// node anyway): when every ready endpoint has node hints and one is for this node, those for
// this node; else when every ready endpoint has zone hints and one is for this node's zone,
// those for the zone; else all of them. Endpoints that are not ready keep no hints' say: with
// no ready endpoint the terminating fallback applies to all.
func topology(eps []model.Endpoint, local bool, opts Options) []model.Endpoint {
	if local {
		return eps
	}
	allNodes, allZones, forNode, forZone := true, true, false, false
	for _, ep := range eps {
		if !ep.Ready {
			continue
		}
		if len(ep.ForNodes) == 0 {
			allNodes = false
		} else if slices.Contains(ep.ForNodes, opts.Node) {
			forNode = true
		}
		if len(ep.ForZones) == 0 {
			allZones = false
		} else if opts.Zone != "" && slices.Contains(ep.ForZones, opts.Zone) {
			forZone = true
		}
	}
	var keep func(model.Endpoint) bool
	switch {
	case allNodes && forNode && opts.Node != "":
		keep = func(ep model.Endpoint) bool { return slices.Contains(ep.ForNodes, opts.Node) }
	case allZones && forZone:
		keep = func(ep model.Endpoint) bool { return slices.Contains(ep.ForZones, opts.Zone) }
	default:
		return eps
	}
	var out []model.Endpoint
	for _, ep := range eps {
		if ep.Ready && keep(ep) {
			out = append(out, ep)
		}
	}
	return out
}

func protocolOf(p corev1.Protocol) (Protocol, bool) {
	switch p {
	case corev1.ProtocolTCP, "":
		return TCP, true
	case corev1.ProtocolUDP:
		return UDP, true
	}
	return 0, false
}
