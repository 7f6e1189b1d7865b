package lb

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/sluice-lb/sluice/internal/model"
)

func addrs(ss ...string) []netip.Addr {
	var out []netip.Addr
	for _, s := range ss {
		out = append(out, netip.MustParseAddr(s))
	}
	return out
}

func ready(addr string, ports map[string]uint16) model.Endpoint {
	return model.Endpoint{Addr: netip.MustParseAddr(addr), Ready: true, Serving: true, Ports: ports}
}

func fe(addr string, port uint16, proto Protocol, scope Scope) Frontend {
	return Frontend{Addr: netip.MustParseAddr(addr), Port: port, Protocol: proto, Scope: scope}
}

func be(addr string, port uint16, proto Protocol, state BackendState) Backend {
	_ = proto
	return Backend{Addr: netip.MustParseAddr(addr), Port: port, Weight: 1, State: state}
}

// remote is b on another node.
func remote(b Backend) Backend {
	b.Remote = true
	return b
}

// onNode is b with its node's address.
func onNode(b Backend, node string) Backend {
	b.Node = netip.MustParseAddr(node)
	return b
}

func key(name, port string, fam Family) ServiceKey {
	return ServiceKey{Namespace: "ns", Name: name, Port: port, Family: fam}
}

func localKey(name, port string, fam Family) ServiceKey {
	k := key(name, port, fam)
	k.Local = true
	return k
}

func on(node string, ep model.Endpoint) model.Endpoint {
	ep.Node = node
	return ep
}

func svc(name string, typ corev1.ServiceType, f func(*model.Service)) *model.Service {
	s := &model.Service{
		Key:   types.NamespacedName{Namespace: "ns", Name: name},
		Type:  typ,
		Ours:  typ == corev1.ServiceTypeLoadBalancer,
		Ports: []model.Port{{Name: "http", Protocol: corev1.ProtocolTCP, Port: 80}},
	}
	f(s)
	return s
}

var http8080 = map[string]uint16{"http": 8080}

func TestFromModel(t *testing.T) {
	for _, tc := range []struct {
		name      string
		in        []*model.Service
		opts      Options
		want      []Service
		conflicts []Conflict
	}{{
		name: "cluster IP only",
		in: []*model.Service{svc("a", corev1.ServiceTypeClusterIP, func(s *model.Service) {
			s.ClusterIPs = addrs("10.96.0.10")
			s.Endpoints = []model.Endpoint{ready("10.1.0.2", http8080), ready("10.1.0.1", http8080)}
		})},
		want: []Service{{
			Key:       key("a", "http", IPv4),
			Frontends: []Frontend{fe("10.96.0.10", 80, TCP, ScopeInternal)},
			Backends:  []Backend{be("10.1.0.1", 8080, TCP, BackendActive), be("10.1.0.2", 8080, TCP, BackendActive)},
		}},
	}, {
		name: "load balancer with ingress and external IPs",
		in: []*model.Service{svc("lb", corev1.ServiceTypeLoadBalancer, func(s *model.Service) {
			s.ClusterIPs = addrs("10.96.0.11")
			s.IngressIPs = addrs("192.0.2.10")
			s.ExternalIPs = addrs("198.51.100.5", "192.0.2.10")
			s.Endpoints = []model.Endpoint{ready("10.1.0.1", http8080)}
		})},
		want: []Service{{
			Key: key("lb", "http", IPv4),
			Frontends: []Frontend{
				fe("10.96.0.11", 80, TCP, ScopeInternal),
				fe("192.0.2.10", 80, TCP, ScopeExternal),
				fe("198.51.100.5", 80, TCP, ScopeExternal),
			},
			Backends: []Backend{be("10.1.0.1", 8080, TCP, BackendActive)},
		}},
	}, {
		// loadBalancerSourceRanges restrict the LoadBalancer addresses only (not node ports,
		// external or cluster IPs), with the ranges of each family.
		name: "source ranges",
		in: []*model.Service{svc("sr", corev1.ServiceTypeLoadBalancer, func(s *model.Service) {
			s.ClusterIPs = addrs("10.96.0.14", "fd00::14")
			s.IngressIPs = addrs("192.0.2.14", "2001:db8::14")
			s.ExternalIPs = addrs("198.51.100.14")
			s.Ports[0].NodePort = 30014
			s.SourceRestricted = true
			s.SourceRanges = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("2001:db8:1::/48")}
			s.Endpoints = []model.Endpoint{ready("10.1.0.1", http8080), ready("fd01::1", http8080)}
		})},
		opts: Options{NodeAddresses: addrs("172.16.0.1")},
		want: []Service{{
			Key: key("sr", "http", IPv4),
			Frontends: []Frontend{
				fe("10.96.0.14", 80, TCP, ScopeInternal), fe("172.16.0.1", 30014, TCP, ScopeExternal),
				fe("192.0.2.14", 80, TCP, ScopeExternal), fe("198.51.100.14", 80, TCP, ScopeExternal),
			},
			Backends:     []Backend{be("10.1.0.1", 8080, TCP, BackendActive)},
			Restricted:   []Frontend{fe("192.0.2.14", 80, TCP, ScopeExternal)},
			SourceRanges: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")},
		}, {
			Key:          key("sr", "http", IPv6),
			Frontends:    []Frontend{fe("2001:db8::14", 80, TCP, ScopeExternal), fe("fd00::14", 80, TCP, ScopeInternal)},
			Backends:     []Backend{be("fd01::1", 8080, TCP, BackendActive)},
			Restricted:   []Frontend{fe("2001:db8::14", 80, TCP, ScopeExternal)},
			SourceRanges: []netip.Prefix{netip.MustParsePrefix("2001:db8:1::/48")},
		}},
	}, {
		name: "dual stack split by family",
		in: []*model.Service{svc("ds", corev1.ServiceTypeLoadBalancer, func(s *model.Service) {
			s.ClusterIPs = addrs("fd00::10", "10.96.0.12")
			s.IngressIPs = addrs("192.0.2.20", "2001:db8::20")
			s.Endpoints = []model.Endpoint{
				ready("fd01::1", http8080), ready("10.1.0.1", http8080), ready("10.1.0.2", http8080),
			}
		})},
		want: []Service{{
			Key:       key("ds", "http", IPv4),
			Frontends: []Frontend{fe("10.96.0.12", 80, TCP, ScopeInternal), fe("192.0.2.20", 80, TCP, ScopeExternal)},
			Backends:  []Backend{be("10.1.0.1", 8080, TCP, BackendActive), be("10.1.0.2", 8080, TCP, BackendActive)},
		}, {
			Key:       key("ds", "http", IPv6),
			Frontends: []Frontend{fe("2001:db8::20", 80, TCP, ScopeExternal), fe("fd00::10", 80, TCP, ScopeInternal)},
			Backends:  []Backend{be("fd01::1", 8080, TCP, BackendActive)},
		}},
	}, {
		name: "terminating, not ready and no backend",
		in: []*model.Service{svc("t", corev1.ServiceTypeClusterIP, func(s *model.Service) {
			s.ClusterIPs = addrs("10.96.0.13")
			s.Endpoints = []model.Endpoint{
				ready("10.1.0.1", http8080),
				{Addr: netip.MustParseAddr("10.1.0.2"), Serving: true, Terminating: true, Ports: http8080},
				{Addr: netip.MustParseAddr("10.1.0.3"), Terminating: true, Ports: http8080},
				{Addr: netip.MustParseAddr("10.1.0.4"), Ports: http8080},
				{Addr: netip.MustParseAddr("10.1.0.5"), Ready: true, Serving: true, Terminating: true, Ports: http8080},
			}
		}), svc("empty", corev1.ServiceTypeClusterIP, func(s *model.Service) {
			s.ClusterIPs = addrs("10.96.0.14")
		})},
		want: []Service{{
			Key:       key("empty", "http", IPv4),
			Frontends: []Frontend{fe("10.96.0.14", 80, TCP, ScopeInternal)},
		}, {
			Key:       key("t", "http", IPv4),
			Frontends: []Frontend{fe("10.96.0.13", 80, TCP, ScopeInternal)},
			Backends: []Backend{
				be("10.1.0.1", 8080, TCP, BackendActive),
				be("10.1.0.2", 8080, TCP, BackendTerminating),
				be("10.1.0.5", 8080, TCP, BackendTerminating),
			},
		}},
	}, {
		name: "named target ports, UDP, SCTP ignored",
		in: []*model.Service{svc("p", corev1.ServiceTypeClusterIP, func(s *model.Service) {
			s.ClusterIPs = addrs("10.96.0.15")
			s.Ports = []model.Port{
				{Name: "dns", Protocol: corev1.ProtocolUDP, Port: 53},
				{Name: "metrics", Protocol: corev1.ProtocolTCP, Port: 9090},
				{Name: "sig", Protocol: corev1.ProtocolSCTP, Port: 3868},
			}
			s.Endpoints = []model.Endpoint{
				ready("10.1.0.1", map[string]uint16{"dns": 5353, "metrics": 9100, "sig": 3868}),
				ready("10.1.0.2", map[string]uint16{"dns": 5354}),
			}
		})},
		want: []Service{{
			Key:       key("p", "dns", IPv4),
			Frontends: []Frontend{fe("10.96.0.15", 53, UDP, ScopeInternal)},
			Backends:  []Backend{be("10.1.0.1", 5353, UDP, BackendActive), be("10.1.0.2", 5354, UDP, BackendActive)},
		}, {
			Key:       key("p", "metrics", IPv4),
			Frontends: []Frontend{fe("10.96.0.15", 9090, TCP, ScopeInternal)},
			Backends:  []Backend{be("10.1.0.1", 9100, TCP, BackendActive)},
		}},
	}, {
		name: "client IP affinity and random",
		opts: Options{Algorithm: AlgorithmRandom},
		in: []*model.Service{svc("aff", corev1.ServiceTypeClusterIP, func(s *model.Service) {
			s.ClusterIPs = addrs("10.96.0.16")
			s.SessionAffinity = corev1.ServiceAffinityClientIP
			s.AffinityTimeout = 30 * time.Second
		}), svc("none", corev1.ServiceTypeClusterIP, func(s *model.Service) {
			s.ClusterIPs = addrs("10.96.0.17")
			s.SessionAffinity = corev1.ServiceAffinityNone
			s.AffinityTimeout = 30 * time.Second
		})},
		want: []Service{{
			Key:       key("aff", "http", IPv4),
			Frontends: []Frontend{fe("10.96.0.16", 80, TCP, ScopeInternal)},
			Affinity:  AffinityClientIP, AffinityTimeout: 30 * time.Second, Algorithm: AlgorithmRandom,
		}, {
			Key:       key("none", "http", IPv4),
			Frontends: []Frontend{fe("10.96.0.17", 80, TCP, ScopeInternal)},
			Algorithm: AlgorithmRandom,
		}},
	}, {
		name: "allocated addresses in standalone mode replace the status, ours only",
		opts: Options{LoadBalancerIPs: map[types.NamespacedName][]netip.Addr{
			{Namespace: "ns", Name: "mine"}:   addrs("192.0.2.30"),
			{Namespace: "ns", Name: "theirs"}: addrs("192.0.2.99"), // not ours: its status counts
		}},
		in: []*model.Service{svc("mine", corev1.ServiceTypeLoadBalancer, func(s *model.Service) {
			s.RequestedIPs = addrs("192.0.2.30")
			s.IngressIPs = addrs("192.0.2.29") // stale: the allocation says otherwise
		}), svc("unallocated", corev1.ServiceTypeLoadBalancer, func(s *model.Service) {
			s.IngressIPs = addrs("192.0.2.28")
		}), svc("theirs", corev1.ServiceTypeLoadBalancer, func(s *model.Service) {
			s.Ours = false
			s.RequestedIPs = addrs("192.0.2.31")
			s.IngressIPs = addrs("192.0.2.32")
		})},
		want: []Service{{
			Key:       key("mine", "http", IPv4),
			Frontends: []Frontend{fe("192.0.2.30", 80, TCP, ScopeExternal)},
		}, {
			Key:       key("theirs", "http", IPv4),
			Frontends: []Frontend{fe("192.0.2.32", 80, TCP, ScopeExternal)},
		}},
	}, {
		name: "requested IPs wait for status with IPAM; stale status, ExternalName and headless ignored",
		in: []*model.Service{svc("mine", corev1.ServiceTypeLoadBalancer, func(s *model.Service) {
			s.RequestedIPs = addrs("192.0.2.30")
		}), svc("was-lb", corev1.ServiceTypeClusterIP, func(s *model.Service) {
			s.IngressIPs = addrs("192.0.2.33")
		}), svc("ext", corev1.ServiceTypeExternalName, func(s *model.Service) {
			s.ExternalIPs = addrs("192.0.2.34")
		}), svc("headless", corev1.ServiceTypeClusterIP, func(s *model.Service) {
			s.Endpoints = []model.Endpoint{ready("10.1.0.1", http8080)}
		})},
	}, {
		name: "conflicting frontends: first in key order wins",
		in: []*model.Service{svc("b", corev1.ServiceTypeClusterIP, func(s *model.Service) {
			s.ExternalIPs = addrs("198.51.100.9")
		}), svc("c", corev1.ServiceTypeClusterIP, func(s *model.Service) {
			s.ClusterIPs = addrs("10.96.0.18")
			s.ExternalIPs = addrs("198.51.100.9")
		}), svc("a", corev1.ServiceTypeClusterIP, func(s *model.Service) {
			s.ExternalIPs = addrs("198.51.100.9")
			s.Ports = append(s.Ports, model.Port{Name: "dns", Protocol: corev1.ProtocolUDP, Port: 80})
		})},
		want: []Service{{
			Key:       key("a", "dns", IPv4),
			Frontends: []Frontend{fe("198.51.100.9", 80, UDP, ScopeExternal)},
		}, {
			Key:       key("a", "http", IPv4),
			Frontends: []Frontend{fe("198.51.100.9", 80, TCP, ScopeExternal)},
		}, {
			Key:       key("c", "http", IPv4),
			Frontends: []Frontend{fe("10.96.0.18", 80, TCP, ScopeInternal)},
		}},
		conflicts: []Conflict{
			{Frontend: fe("198.51.100.9", 80, TCP, ScopeExternal), Kept: key("a", "http", IPv4), Dropped: key("b", "http", IPv4)},
			{Frontend: fe("198.51.100.9", 80, TCP, ScopeExternal), Kept: key("a", "http", IPv4), Dropped: key("c", "http", IPv4)},
		},
	}, {
		name: "an address both cluster and external IP is external",
		in: []*model.Service{svc("x", corev1.ServiceTypeClusterIP, func(s *model.Service) {
			s.ClusterIPs = addrs("10.96.0.19")
			s.ExternalIPs = addrs("10.96.0.19")
		})},
		want: []Service{{
			Key:       key("x", "http", IPv4),
			Frontends: []Frontend{fe("10.96.0.19", 80, TCP, ScopeExternal)},
		}},
	}, {
		name: "externalTrafficPolicy Local: external frontends over this node's endpoints only",
		in: []*model.Service{svc("etp", corev1.ServiceTypeLoadBalancer, func(s *model.Service) {
			s.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
			s.ClusterIPs = addrs("10.96.0.20")
			s.IngressIPs = addrs("198.51.100.20")
			s.ExternalIPs = addrs("10.96.0.20") // also a cluster IP: external, so local
			s.Endpoints = []model.Endpoint{
				on("node-a", ready("10.1.0.1", http8080)), on("node-b", ready("10.1.0.2", http8080)),
				ready("10.1.0.3", http8080), // no node: never local
			}
		})},
		opts: Options{Node: "node-a"},
		want: []Service{{ // the only cluster IP is also external: no cluster-wide half
			Key:       localKey("etp", "http", IPv4),
			Frontends: []Frontend{fe("10.96.0.20", 80, TCP, ScopeExternal), fe("198.51.100.20", 80, TCP, ScopeExternal)},
			Backends:  []Backend{be("10.1.0.1", 8080, TCP, BackendActive)},
		}},
	}, {
		name: "externalTrafficPolicy Local with no local endpoint refuses external traffic",
		in: []*model.Service{svc("etp", corev1.ServiceTypeLoadBalancer, func(s *model.Service) {
			s.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
			s.ClusterIPs = addrs("10.96.0.21")
			s.IngressIPs = addrs("198.51.100.21")
			s.Endpoints = []model.Endpoint{on("node-b", ready("10.1.0.2", http8080))}
		})},
		opts: Options{Node: "node-a"},
		want: []Service{{
			Key:       key("etp", "http", IPv4),
			Frontends: []Frontend{fe("10.96.0.21", 80, TCP, ScopeInternal)},
			Backends:  []Backend{remote(be("10.1.0.2", 8080, TCP, BackendActive))},
		}, {
			Key:       localKey("etp", "http", IPv4),
			Frontends: []Frontend{fe("198.51.100.21", 80, TCP, ScopeExternal)},
		}},
	}, {
		name: "internalTrafficPolicy Local: cluster IPs over this node's endpoints, external over all",
		in: []*model.Service{svc("itp", corev1.ServiceTypeLoadBalancer, func(s *model.Service) {
			s.InternalTrafficPolicy = corev1.ServiceInternalTrafficPolicyLocal
			s.ClusterIPs = addrs("10.96.0.22")
			s.IngressIPs = addrs("198.51.100.22")
			s.Endpoints = []model.Endpoint{
				on("node-a", ready("10.1.0.1", http8080)),
				on("node-b", ready("10.1.0.2", http8080)),
				on("node-a", model.Endpoint{Addr: netip.MustParseAddr("10.1.0.4"), Serving: true, Terminating: true, Ports: http8080}),
			}
		})},
		opts: Options{Node: "node-a"},
		want: []Service{{
			Key:       key("itp", "http", IPv4),
			Frontends: []Frontend{fe("198.51.100.22", 80, TCP, ScopeExternal)},
			Backends: []Backend{be("10.1.0.1", 8080, TCP, BackendActive), remote(be("10.1.0.2", 8080, TCP, BackendActive)),
				be("10.1.0.4", 8080, TCP, BackendTerminating)},
		}, {
			Key:       localKey("itp", "http", IPv4),
			Frontends: []Frontend{fe("10.96.0.22", 80, TCP, ScopeInternal)},
			Backends:  []Backend{be("10.1.0.1", 8080, TCP, BackendActive), be("10.1.0.4", 8080, TCP, BackendTerminating)},
		}},
	}, {
		name: "both policies Local: one node-local Service",
		in: []*model.Service{svc("both", corev1.ServiceTypeLoadBalancer, func(s *model.Service) {
			s.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
			s.InternalTrafficPolicy = corev1.ServiceInternalTrafficPolicyLocal
			s.ClusterIPs = addrs("10.96.0.23")
			s.IngressIPs = addrs("198.51.100.23")
			s.Endpoints = []model.Endpoint{on("node-a", ready("10.1.0.1", http8080)), on("node-b", ready("10.1.0.2", http8080))}
		})},
		opts: Options{Node: "node-b"},
		want: []Service{{
			Key:       localKey("both", "http", IPv4),
			Frontends: []Frontend{fe("10.96.0.23", 80, TCP, ScopeInternal), fe("198.51.100.23", 80, TCP, ScopeExternal)},
			Backends:  []Backend{be("10.1.0.2", 8080, TCP, BackendActive)},
		}},
	}, {
		name: "NodePort frontends on every node address of the family, Local with externalTrafficPolicy Local",
		in: []*model.Service{
			svc("np", corev1.ServiceTypeNodePort, func(s *model.Service) {
				s.ClusterIPs = addrs("10.96.0.30", "fd00::30")
				s.Ports[0].NodePort = 30080
				s.Endpoints = []model.Endpoint{on("node-a", ready("10.1.0.1", http8080)), on("node-b", ready("10.1.0.2", http8080))}
			}),
			svc("lbl", corev1.ServiceTypeLoadBalancer, func(s *model.Service) {
				s.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
				s.ClusterIPs = addrs("10.96.0.31")
				s.IngressIPs = addrs("198.51.100.31")
				s.Ports[0].NodePort = 30081
				s.Endpoints = []model.Endpoint{on("node-a", ready("10.1.0.1", http8080)), on("node-b", ready("10.1.0.2", http8080))}
			}),
		},
		opts: Options{Node: "node-a", NodeAddresses: addrs("192.0.2.11", "192.0.2.12", "2001:db8::11")},
		want: []Service{{
			Key:       key("lbl", "http", IPv4),
			Frontends: []Frontend{fe("10.96.0.31", 80, TCP, ScopeInternal)},
			Backends:  []Backend{be("10.1.0.1", 8080, TCP, BackendActive), remote(be("10.1.0.2", 8080, TCP, BackendActive))},
		}, {
			Key: localKey("lbl", "http", IPv4),
			Frontends: []Frontend{fe("192.0.2.11", 30081, TCP, ScopeExternal), fe("192.0.2.12", 30081, TCP, ScopeExternal),
				fe("198.51.100.31", 80, TCP, ScopeExternal)},
			Backends: []Backend{be("10.1.0.1", 8080, TCP, BackendActive)},
		}, {
			Key:       key("np", "http", IPv4),
			Frontends: []Frontend{fe("10.96.0.30", 80, TCP, ScopeInternal), fe("192.0.2.11", 30080, TCP, ScopeExternal), fe("192.0.2.12", 30080, TCP, ScopeExternal)},
			Backends:  []Backend{be("10.1.0.1", 8080, TCP, BackendActive), remote(be("10.1.0.2", 8080, TCP, BackendActive))},
		}, {
			Key:       key("np", "http", IPv6),
			Frontends: []Frontend{fe("2001:db8::11", 30080, TCP, ScopeExternal), fe("fd00::30", 80, TCP, ScopeInternal)},
		}},
	}, {
		name: "a nodePort outside the node port range gets no frontend",
		in: []*model.Service{svc("np", corev1.ServiceTypeNodePort, func(s *model.Service) {
			s.ClusterIPs = addrs("10.96.0.32")
			s.Ports = append(s.Ports, model.Port{Name: "in", Protocol: corev1.ProtocolTCP, Port: 81, NodePort: 30000})
			s.Ports[0].NodePort = 29999
			s.Endpoints = []model.Endpoint{ready("10.1.0.1", map[string]uint16{"http": 8080, "in": 8081})}
		})},
		opts: Options{NodeAddresses: addrs("192.0.2.11"), NodePortFirst: 30000, NodePortLast: 32767},
		want: []Service{{
			Key:       key("np", "http", IPv4),
			Frontends: []Frontend{fe("10.96.0.32", 80, TCP, ScopeInternal)},
			Backends:  []Backend{be("10.1.0.1", 8080, TCP, BackendActive)},
		}, {
			Key:       key("np", "in", IPv4),
			Frontends: []Frontend{fe("10.96.0.32", 81, TCP, ScopeInternal), fe("192.0.2.11", 30000, TCP, ScopeExternal)},
			Backends:  []Backend{be("10.1.0.1", 8081, TCP, BackendActive)},
		}},
	}, {
		name: "DSR by annotation or by default, with remote backends' node addresses",
		in: []*model.Service{
			svc("dsr", corev1.ServiceTypeLoadBalancer, func(s *model.Service) {
				s.ForwardingMode = model.ForwardingDSR
				s.IngressIPs = addrs("198.51.100.40")
				s.Endpoints = []model.Endpoint{on("node-a", ready("10.1.0.1", http8080)), on("node-b", ready("10.1.0.2", http8080)),
					on("node-c", ready("10.1.0.3", http8080))} // node-c: no address known
			}),
			svc("snat", corev1.ServiceTypeLoadBalancer, func(s *model.Service) {
				s.ForwardingMode = model.ForwardingSNAT
				s.IngressIPs = addrs("198.51.100.41")
			}),
			svc("default", corev1.ServiceTypeLoadBalancer, func(s *model.Service) { s.IngressIPs = addrs("198.51.100.42") }),
		},
		opts: Options{Node: "node-a", DSR: true, Nodes: map[string][]netip.Addr{"node-b": addrs("2001:db8::12", "192.0.2.12")}},
		want: []Service{{
			Key: key("default", "http", IPv4), Frontends: []Frontend{fe("198.51.100.42", 80, TCP, ScopeExternal)}, DSR: true,
		}, {
			Key:       key("dsr", "http", IPv4),
			Frontends: []Frontend{fe("198.51.100.40", 80, TCP, ScopeExternal)},
			Backends: []Backend{be("10.1.0.1", 8080, TCP, BackendActive), onNode(remote(be("10.1.0.2", 8080, TCP, BackendActive)), "192.0.2.12"),
				remote(be("10.1.0.3", 8080, TCP, BackendActive))},
			DSR: true,
		}, {
			Key: key("snat", "http", IPv4), Frontends: []Frontend{fe("198.51.100.41", 80, TCP, ScopeExternal)},
		}},
	}, {
		name: "no ready endpoint: the serving terminating ones take new flows",
		in: []*model.Service{svc("rolling", corev1.ServiceTypeClusterIP, func(s *model.Service) {
			s.ClusterIPs = addrs("10.96.0.50")
			s.Endpoints = []model.Endpoint{
				{Addr: netip.MustParseAddr("10.1.0.1"), Serving: true, Terminating: true, Ports: http8080},
				{Addr: netip.MustParseAddr("10.1.0.2"), Terminating: true, Ports: http8080}, // not serving: never
				{Addr: netip.MustParseAddr("10.1.0.3"), Ports: http8080},                    // not ready: never
			}
		})},
		want: []Service{{
			Key:       key("rolling", "http", IPv4),
			Frontends: []Frontend{fe("10.96.0.50", 80, TCP, ScopeInternal)},
			Backends:  []Backend{be("10.1.0.1", 8080, TCP, BackendActive)},
		}},
	}, {
		name: "headless, and another proxy's Services, are left alone",
		in: []*model.Service{
			svc("headless", corev1.ServiceTypeClusterIP, func(s *model.Service) {
				s.Headless = true
				s.ExternalIPs = addrs("198.51.100.40")
				s.Endpoints = []model.Endpoint{ready("10.1.0.1", http8080)}
			}),
			svc("mesh", corev1.ServiceTypeClusterIP, func(s *model.Service) {
				s.Labels = map[string]string{ServiceProxyNameLabel: "istio"}
				s.ClusterIPs = addrs("10.96.0.41")
			}),
			svc("ours", corev1.ServiceTypeClusterIP, func(s *model.Service) {
				s.Labels = map[string]string{ServiceProxyNameLabel: ServiceProxyName}
				s.ClusterIPs = addrs("10.96.0.42")
			}),
		},
		want: []Service{{
			Key:       key("ours", "http", IPv4),
			Frontends: []Frontend{fe("10.96.0.42", 80, TCP, ScopeInternal)},
		}},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			got, conflicts := FromModel(tc.in, tc.opts)
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("services:\n%s\nwant:\n%s", dump(got), dump(tc.want))
			}
			if !reflect.DeepEqual(conflicts, tc.conflicts) {
				t.Errorf("conflicts: %v\nwant: %v", conflicts, tc.conflicts)
			}
			// The same model in any order gives the same result.
			rng := rand.New(rand.NewPCG(5, 6))
			for range 10 {
				shuffled := slices.Clone(tc.in)
				rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
				again, againConflicts := FromModel(shuffled, tc.opts)
				if !reflect.DeepEqual(again, got) || !reflect.DeepEqual(againConflicts, conflicts) {
					t.Fatalf("shuffled input gives:\n%s", dump(again))
				}
			}
		})
	}
}

func dump(svcs []Service) string {
	var b strings.Builder
	for _, s := range svcs {
		fmt.Fprintf(&b, "  %s affinity %s %s algorithm %s\n", s.Key, s.Affinity, s.AffinityTimeout, s.Algorithm)
		for _, f := range s.Frontends {
			fmt.Fprintf(&b, "    frontend %s\n", f)
		}
		for _, be := range s.Backends {
			fmt.Fprintf(&b, "    backend %s\n", be)
		}
	}
	return b.String()
}

func TestServiceMaglev(t *testing.T) {
	s := Service{Backends: []Backend{
		{ID: 1, Addr: netip.MustParseAddr("10.1.0.1"), Port: 80, Weight: 1},
		{ID: 2, Addr: netip.MustParseAddr("10.1.0.2"), Port: 80, Weight: 1, State: BackendTerminating},
		{ID: 3, Addr: netip.MustParseAddr("10.1.0.3"), Port: 80, Weight: 1},
	}}
	if got := len(s.Active()); got != 2 {
		t.Fatalf("%d active backends, want 2", got)
	}
	table := s.Maglev(0)
	if len(table) != 251 || shares(table)[2] != 0 {
		t.Errorf("table of %d slots, shares %v", len(table), shares(table))
	}
	if got := (&Service{}).Maglev(0); len(got) != 0 {
		t.Errorf("no backends: %d slots", len(got))
	}
}

// TestTopologyHints: EndpointSlice hints narrow the backends of cluster-wide traffic as
// kube-proxy narrows them — node hints first, then zone hints, each only when every ready
// endpoint has them and one is for this node (its zone); otherwise every endpoint. A Local
// traffic policy keeps to the node regardless.
func TestTopologyHints(t *testing.T) {
	ep := func(addr, zone, node string, forZones, forNodes []string) model.Endpoint {
		e := on(node, ready(addr, http8080))
		e.Zone, e.ForZones, e.ForNodes = zone, forZones, forNodes
		return e
	}
	a := []string{"a"}
	backends := func(eps []model.Endpoint, zone string, local bool) string {
		s := svc("t", corev1.ServiceTypeClusterIP, func(s *model.Service) {
			s.ClusterIPs = addrs("10.96.0.20")
			s.Endpoints = eps
			if local {
				s.InternalTrafficPolicy = corev1.ServiceInternalTrafficPolicyLocal
			}
		})
		out, _ := FromModel([]*model.Service{s}, Options{Node: "n1", Zone: zone})
		var got []string
		for _, b := range out[0].Backends {
			got = append(got, b.Addr.String())
		}
		return strings.Join(got, " ")
	}
	zoned := []model.Endpoint{ep("10.1.0.1", "a", "n1", a, nil), ep("10.1.0.2", "a", "n2", a, nil), ep("10.1.0.3", "b", "n3", []string{"b"}, nil)}
	for _, c := range []struct {
		name  string
		eps   []model.Endpoint
		zone  string
		local bool
		want  string
	}{
		{"zone hints for this zone", zoned, "a", false, "10.1.0.1 10.1.0.2"},
		{"the other zone", zoned, "b", false, "10.1.0.3"},
		{"no hint for this zone", zoned, "c", false, "10.1.0.1 10.1.0.2 10.1.0.3"},
		{"node without a zone", zoned, "", false, "10.1.0.1 10.1.0.2 10.1.0.3"},
		{"one ready endpoint without hints", append(slices.Clone(zoned), ep("10.1.0.4", "a", "n4", nil, nil)), "a", false, "10.1.0.1 10.1.0.2 10.1.0.3 10.1.0.4"},
		{"a not-ready endpoint without hints does not count", append(slices.Clone(zoned), model.Endpoint{Addr: netip.MustParseAddr("10.1.0.5"), Ports: http8080}), "a", false, "10.1.0.1 10.1.0.2"},
		{"node hints first", []model.Endpoint{ep("10.1.0.1", "a", "n1", a, []string{"n1"}), ep("10.1.0.2", "a", "n2", a, []string{"n2"})}, "a", false, "10.1.0.1"},
		{"node hints for other nodes: zone hints", []model.Endpoint{ep("10.1.0.1", "a", "n7", a, []string{"n7"}), ep("10.1.0.2", "a", "n2", a, []string{"n2"})}, "a", false, "10.1.0.1 10.1.0.2"},
		{"Local traffic policy: the node's own", zoned, "b", true, "10.1.0.1"},
	} {
		if got := backends(c.eps, c.zone, c.local); got != c.want {
			t.Errorf("%s: backends %q, want %q", c.name, got, c.want)
		}
	}
}
