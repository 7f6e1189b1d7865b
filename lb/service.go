package lb

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"time"
)

// Protocol is a transport protocol, numbered as in the IP header.
type Protocol uint8

// The protocols the datapath balances.
const (
	TCP Protocol = 6
	UDP Protocol = 17
)

func (p Protocol) String() string {
	switch p {
	case TCP:
		return "TCP"
	case UDP:
		return "UDP"
	}
	return "proto-" + strconv.Itoa(int(p))
}

// Scope says where traffic to a frontend may come from.
type Scope uint8

const (
	// ScopeExternal frontends (load-balancer, external IPs) take traffic from anywhere.
	ScopeExternal Scope = iota
	// ScopeInternal frontends (cluster IPs) take traffic from inside the cluster.
	ScopeInternal
)

func (s Scope) String() string {
	if s == ScopeInternal {
		return "internal"
	}
	return "external"
}

// Frontend is an address a Service answers on: what the datapath matches a packet against.
type Frontend struct {
	Addr     netip.Addr
	Port     uint16
	Protocol Protocol
	Scope    Scope
}

func (f Frontend) String() string {
	return netip.AddrPortFrom(f.Addr, f.Port).String() + "/" + f.Protocol.String() + " (" + f.Scope.String() + ")"
}

func compareFrontends(a, b Frontend) int {
	return cmp.Or(a.Addr.Compare(b.Addr), cmp.Compare(a.Port, b.Port),
		cmp.Compare(a.Protocol, b.Protocol), cmp.Compare(a.Scope, b.Scope))
}

// BackendState says whether a backend takes new flows.
type BackendState uint8

const (
	// BackendActive backends take new flows.
	BackendActive BackendState = iota
	// BackendTerminating backends take no new flows but keep the ones they have.
	BackendTerminating
)

func (s BackendState) String() string {
	if s == BackendTerminating {
		return "terminating"
	}
	return "active"
}

// Backend is an address traffic to a Service is sent to.
type Backend struct {
	// ID identifies the backend in the datapath's maps; 0 until IDs.Assign sets it.
	ID   uint32
	Addr netip.Addr
	Port uint16
	// Weight is the backend's relative share of new flows; 0 takes none.
	Weight uint16
	State  BackendState
	// Remote backends are endpoints on another node: flows to them from outside the
	// cluster are SNATed to this node's address, so that their replies come back through it.
	Remote bool
	// Node is a remote backend's node address, where DSR tunnels its flows (invalid: none).
	Node netip.Addr
}

// DefaultWeight is the weight of a backend that was given none.
const DefaultWeight = 1

// Key returns what identifies the backend across Services and restarts.
func (b Backend) Key() BackendKey {
	return BackendKey{Addr: b.Addr, Port: b.Port}
}

func (b Backend) String() string {
	s := fmt.Sprintf("%s#%d weight %d %s", netip.AddrPortFrom(b.Addr, b.Port), b.ID, b.Weight, b.State)
	if b.Remote {
		s += " remote"
	}
	if b.Node.IsValid() {
		s += " on " + b.Node.String()
	}
	return s
}

// BackendKey is what a backend ID stands for: an address and port. The protocol is the
// frontend's, so the TCP and UDP ports of one endpoint share a backend.
type BackendKey struct {
	Addr netip.Addr
	Port uint16
}

func (k BackendKey) String() string {
	return netip.AddrPortFrom(k.Addr, k.Port).String()
}

func compareBackendKeys(a, b BackendKey) int {
	return cmp.Or(a.Addr.Compare(b.Addr), cmp.Compare(a.Port, b.Port))
}

// Family is an address family.
type Family uint8

// The address families.
const (
	IPv4 Family = 4
	IPv6 Family = 6
)

func (f Family) String() string {
	if f == IPv6 {
		return "IPv6"
	}
	return "IPv4"
}

func familyOf(a netip.Addr) Family {
	if a.Is4() {
		return IPv4
	}
	return IPv6
}

// ServiceKey names a load-balanced service: one port of a Kubernetes Service in one address
// family. Its frontends are all of that family and port, and so are its backends.
type ServiceKey struct {
	Namespace string
	Name      string
	// Port is the name of the Service port ("" for a Service's only, unnamed port).
	Port   string
	Family Family
	// Local marks the node-local half of a Service with a Local traffic policy: the
	// frontends of the scope(s) whose policy is Local, balanced over this node's endpoints
	// only. The other half (Local false) has the other frontends and every endpoint.
	Local bool
}

func (k ServiceKey) String() string {
	s := k.Namespace + "/" + k.Name + ":" + k.Port + "/" + k.Family.String()
	if k.Local {
		s += "/local"
	}
	return s
}

func compareServiceKeys(a, b ServiceKey) int {
	return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name),
		cmp.Compare(a.Port, b.Port), cmp.Compare(a.Family, b.Family), boolCompare(a.Local, b.Local))
}

func boolCompare(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return 1
	}
	return -1
}

// Affinity is a Service's session affinity.
type Affinity uint8

const (
	// AffinityNone balances every new flow on its own.
	AffinityNone Affinity = iota
	// AffinityClientIP sends new flows from a client address to the backend its last flow
	// went to, while that was less than AffinityTimeout ago.
	AffinityClientIP
)

func (a Affinity) String() string {
	if a == AffinityClientIP {
		return "ClientIP"
	}
	return "None"
}

// Algorithm picks the backend of a new flow.
type Algorithm uint8

const (
	// AlgorithmMaglev hashes the flow into the Service's Maglev table: consistent across
	// nodes and across backend changes.
	AlgorithmMaglev Algorithm = iota
	// AlgorithmRandom picks an active backend at random, weighted.
	AlgorithmRandom
)

func (a Algorithm) String() string {
	if a == AlgorithmRandom {
		return "random"
	}
	return "maglev"
}

// Service is what the datapath is programmed with for one ServiceKey. Frontends are sorted
// and never empty; Backends are sorted by key and may be empty, in which case the datapath
// refuses new flows (TCP RST, ICMP unreachable).
type Service struct {
	Key             ServiceKey
	Frontends       []Frontend
	Backends        []Backend
	Affinity        Affinity
	AffinityTimeout time.Duration
	Algorithm       Algorithm
	// Restricted are the frontends (sorted, of Frontends) that admit new flows only from
	// clients in SourceRanges — none when it is empty: a Service's
	// loadBalancerSourceRanges, which restrict its LoadBalancer addresses.
	Restricted   []Frontend
	SourceRanges []netip.Prefix
	// DSR sends external flows to remote backends by direct server return instead of SNAT.
	DSR bool
}

// restricts reports whether new flows to f are held to the source ranges.
func (s *Service) restricts(f Frontend) bool {
	_, found := slices.BinarySearchFunc(s.Restricted, f, compareFrontends)
	return found
}

// Active returns the backends that take new flows: active with a non-zero weight.
func (s *Service) Active() []Backend {
	var out []Backend
	for _, b := range s.Backends {
		if b.State == BackendActive && b.Weight > 0 {
			out = append(out, b)
		}
	}
	return out
}

// Maglev returns the Service's Maglev table (see BuildMaglev and MaglevSize; minimum is the
// configured minimum table size). It is empty when no backend takes new flows.
func (s *Service) Maglev(minimum uint32) []uint32 {
	return BuildMaglev(s.Backends, MaglevSize(len(s.Active()), minimum))
}
