package model

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
)

// LoadBalancerClass is the spec.loadBalancerClass Sluice serves by default (besides an unset
// one); Options.LoadBalancerClass names another.
const LoadBalancerClass = "sluice.dev/lb"

// Service annotations, each followed by the MetalLB and Cilium equivalents honoured so that a
// Service moves over without edits. The first one present wins; different values are
// reported as a warning.
var (
	AnnotationIPs = []string{
		"sluice.dev/ips", "metallb.io/loadBalancerIPs", "metallb.universe.tf/loadBalancerIPs",
		"lbipam.cilium.io/ips", "io.cilium/lb-ipam-ips",
	}
	AnnotationPool = []string{
		"sluice.dev/pool", "metallb.io/address-pool", "metallb.universe.tf/address-pool",
	}
	AnnotationSharingKey = []string{
		"sluice.dev/sharing-key", "metallb.io/allow-shared-ip", "metallb.universe.tf/allow-shared-ip",
		"lbipam.cilium.io/sharing-key", "io.cilium/lb-ipam-sharing-key",
	}
	// AnnotationSharingNamespaces lists the other namespaces (comma-separated, or "*") whose
	// Services may share this Service's address; both sides must allow it.
	AnnotationSharingNamespaces = []string{
		"sluice.dev/sharing-cross-namespace", "lbipam.cilium.io/sharing-cross-namespace",
	}
	// AnnotationForwardingMode picks how external traffic reaches endpoints on other nodes:
	// "snat" or "dsr" (else the agent's --lb-mode).
	AnnotationForwardingMode = []string{"sluice.dev/forwarding-mode", "service.cilium.io/forwarding-mode"}
)

// Forwarding modes (AnnotationForwardingMode).
const (
	ForwardingSNAT = "snat"
	ForwardingDSR  = "dsr"
)

// Service is a Service with its backends.
type Service struct {
	Key types.NamespacedName
	// UID is the Service's metadata.uid (empty in standalone files, usually).
	UID    types.UID
	Labels labels.Set
	Type   corev1.ServiceType
	// Ours is true for a LoadBalancer Service whose class is unset or the one served.
	Ours bool
	// ClassSet is true when spec.loadBalancerClass is set (to LoadBalancerClass, if Ours).
	ClassSet   bool
	CreatedAt  time.Time
	ClusterIPs []netip.Addr
	// Headless is spec.clusterIP None: no load balancing, as with kube-proxy.
	Headless bool
	// ExternalIPs are spec.externalIPs.
	ExternalIPs []netip.Addr
	// RequestedIPs are the addresses asked for by annotation or spec.loadBalancerIP.
	RequestedIPs []netip.Addr
	Pool         string
	SharingKey   string
	// SharingNamespaces are the other namespaces allowed to share the address ("*": all).
	SharingNamespaces []string
	// IPFamilyPolicy is spec.ipFamilyPolicy (SingleStack when unset); IPFamilies is
	// spec.ipFamilies, in order.
	IPFamilyPolicy corev1.IPFamilyPolicy
	IPFamilies     []corev1.IPFamily
	// Selector is spec.selector: Services sharing an address with externalTrafficPolicy
	// Local must select the same pods.
	Selector map[string]string
	// IngressIPs are status.loadBalancer.ingress[].ip.
	IngressIPs []netip.Addr
	// SourceRestricted says that only clients in SourceRanges may open connections to the
	// LoadBalancer addresses: spec.loadBalancerSourceRanges, else the
	// AnnotationSourceRanges annotation (as kube-proxy reads them). It stays set when none
	// of the ranges is valid: a restriction with a typo admits nobody rather than everybody.
	SourceRestricted      bool
	SourceRanges          []netip.Prefix
	Ports                 []Port
	ExternalTrafficPolicy corev1.ServiceExternalTrafficPolicy
	// HealthCheckNodePort is spec.healthCheckNodePort (externalTrafficPolicy Local), 0 if none.
	HealthCheckNodePort   uint16
	InternalTrafficPolicy corev1.ServiceInternalTrafficPolicy
	SessionAffinity       corev1.ServiceAffinity
	AffinityTimeout       time.Duration
	// ForwardingMode is AnnotationForwardingMode: ForwardingSNAT, ForwardingDSR, or "" (the
	// agent's default).
	ForwardingMode string
	Endpoints      []Endpoint
}

// Port is one port of a Service.
type Port struct {
	Name     string
	Protocol corev1.Protocol
	Port     uint16
	NodePort uint16
}

// Endpoint is one backend address of a Service, from its EndpointSlices.
type Endpoint struct {
	Addr        netip.Addr
	Node        string
	Zone        string
	Ready       bool
	Serving     bool
	Terminating bool
	// Ports maps a Service port name to the backend's port number.
	Ports map[string]uint16
	// ForZones and ForNodes are the EndpointSlice's topology hints: the zones, and nodes,
	// that should send traffic to it (trafficDistribution PreferClose / PreferSameNode, or
	// topology-aware routing).
	ForZones, ForNodes []string
}

func buildService(o *corev1.Service, slices []*discoveryv1.EndpointSlice, lbClass string) (*Service, []Problem) {
	ps := &problems{ref: ObjectRef{Kind: "Service", Namespace: o.Namespace, Name: o.Name}}
	s := &Service{
		Key:                   types.NamespacedName{Namespace: o.Namespace, Name: o.Name},
		UID:                   o.UID,
		Labels:                labels.Set(o.Labels),
		Type:                  o.Spec.Type,
		CreatedAt:             o.CreationTimestamp.Time,
		ExternalTrafficPolicy: o.Spec.ExternalTrafficPolicy,
		HealthCheckNodePort:   uint16(o.Spec.HealthCheckNodePort),
		InternalTrafficPolicy: corev1.ServiceInternalTrafficPolicyCluster,
		SessionAffinity:       o.Spec.SessionAffinity,
	}
	if s.Type == "" {
		s.Type = corev1.ServiceTypeClusterIP
	}
	class := o.Spec.LoadBalancerClass
	s.Ours = s.Type == corev1.ServiceTypeLoadBalancer && (class == nil || *class == lbClass)
	s.ClassSet = class != nil
	s.IPFamilyPolicy = corev1.IPFamilyPolicySingleStack
	if o.Spec.IPFamilyPolicy != nil {
		s.IPFamilyPolicy = *o.Spec.IPFamilyPolicy
	}
	for i, f := range o.Spec.IPFamilies {
		if f != corev1.IPv4Protocol && f != corev1.IPv6Protocol {
			ps.warn(fmt.Sprintf("spec.ipFamilies[%d]", i), "%q is not IPv4 or IPv6: ignored", f)
			continue
		}
		s.IPFamilies = append(s.IPFamilies, f)
	}
	s.Selector = o.Spec.Selector
	if o.Spec.InternalTrafficPolicy != nil {
		s.InternalTrafficPolicy = *o.Spec.InternalTrafficPolicy
	}
	if s.SessionAffinity == corev1.ServiceAffinityClientIP {
		s.AffinityTimeout = 10800 * time.Second
		if c := o.Spec.SessionAffinityConfig; c != nil && c.ClientIP != nil && c.ClientIP.TimeoutSeconds != nil {
			s.AffinityTimeout = time.Duration(*c.ClientIP.TimeoutSeconds) * time.Second
		}
	}
	s.Headless = o.Spec.ClusterIP == corev1.ClusterIPNone
	for i, ip := range o.Spec.ClusterIPs {
		if ip == "" || ip == corev1.ClusterIPNone {
			continue
		}
		if a, err := parseAddr(ip); err != nil {
			ps.warn(fmt.Sprintf("spec.clusterIPs[%d]", i), "%v", err)
		} else {
			s.ClusterIPs = append(s.ClusterIPs, a)
		}
	}
	for i, ip := range o.Spec.ExternalIPs {
		if a, err := parseAddr(ip); err != nil {
			ps.warn(fmt.Sprintf("spec.externalIPs[%d]", i), "%v", err)
		} else {
			s.ExternalIPs = append(s.ExternalIPs, a)
		}
	}
	for i, in := range o.Status.LoadBalancer.Ingress {
		if in.IP == "" {
			continue
		}
		if a, err := parseAddr(in.IP); err != nil {
			ps.warn(fmt.Sprintf("status.loadBalancer.ingress[%d].ip", i), "%v", err)
		} else {
			s.IngressIPs = append(s.IngressIPs, a)
		}
	}
	s.SourceRestricted, s.SourceRanges = sourceRanges(ps, o)
	s.RequestedIPs = requestedIPs(ps, o)
	s.Pool = annotation(ps, o.Annotations, AnnotationPool)
	s.SharingKey = annotation(ps, o.Annotations, AnnotationSharingKey)
	if v := annotation(ps, o.Annotations, AnnotationSharingNamespaces); v != "" {
		for _, ns := range strings.Split(v, ",") {
			if ns = strings.TrimSpace(ns); ns != "" {
				s.SharingNamespaces = append(s.SharingNamespaces, ns)
			}
		}
	}
	switch mode := annotation(ps, o.Annotations, AnnotationForwardingMode); mode {
	case "", ForwardingSNAT, ForwardingDSR:
		s.ForwardingMode = mode
	default:
		ps.warn("metadata.annotations["+AnnotationForwardingMode[0]+"]", "%q is not snat or dsr; the node's default applies", mode)
	}
	for i, p := range o.Spec.Ports {
		if p.Port < 1 || p.Port > 65535 {
			ps.warn(fmt.Sprintf("spec.ports[%d].port", i), "must be between 1 and 65535, got %d", p.Port)
			continue
		}
		proto := p.Protocol
		if proto == "" {
			proto = corev1.ProtocolTCP
		}
		s.Ports = append(s.Ports, Port{Name: p.Name, Protocol: proto, Port: uint16(p.Port), NodePort: uint16(p.NodePort)})
	}
	s.Endpoints = endpoints(slices)
	return s, ps.list
}

// AnnotationSourceRanges is the annotation older clients set instead of
// spec.loadBalancerSourceRanges (comma-separated CIDRs); kube-proxy honours it too.
const AnnotationSourceRanges = "service.beta.kubernetes.io/load-balancer-source-ranges"

// sourceRanges reads spec.loadBalancerSourceRanges, else the annotation: whether the Service
// restricts its clients, and the valid ranges (masked, duplicates dropped).
func sourceRanges(ps *problems, o *corev1.Service) (bool, []netip.Prefix) {
	field, ranges := "spec.loadBalancerSourceRanges", o.Spec.LoadBalancerSourceRanges
	if len(ranges) == 0 {
		v := strings.TrimSpace(o.Annotations[AnnotationSourceRanges])
		if v == "" {
			return false, nil
		}
		field, ranges = "metadata.annotations["+AnnotationSourceRanges+"]", strings.Split(v, ",")
	}
	var out []netip.Prefix
	for i, r := range ranges {
		p, err := netip.ParsePrefix(strings.TrimSpace(r))
		if err != nil {
			ps.warn(fmt.Sprintf("%s[%d]", field, i), "%q is not a CIDR: ignored (the other ranges still restrict the clients; with none valid, no client is admitted)", r)
			continue
		}
		if p.Addr().Is4In6() && p.Bits() >= 96 { // ::ffff:a.b.c.d/n is the IPv4 a.b.c.d/(n-96)
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		if p = p.Masked(); !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	return true, out
}

// annotation returns the value of the first of the equivalent annotations present, and warns
// when two of them disagree.
func annotation(ps *problems, ann map[string]string, names []string) string {
	value, from := "", ""
	for _, n := range names {
		v, ok := ann[n]
		if !ok {
			continue
		}
		v = strings.TrimSpace(v)
		if from == "" {
			value, from = v, n
		} else if v != value {
			ps.warn("metadata.annotations["+n+"]", "%q disagrees with %s=%q, which is used", v, from, value)
		}
	}
	return value
}

// requestedIPs reads the addresses a Service asks for: the IPs annotation (comma-separated,
// at most one per family) or the deprecated spec.loadBalancerIP.
func requestedIPs(ps *problems, o *corev1.Service) []netip.Addr {
	raw := annotation(ps, o.Annotations, AnnotationIPs)
	field := "metadata.annotations"
	if raw == "" {
		raw, field = o.Spec.LoadBalancerIP, "spec.loadBalancerIP"
	} else if o.Spec.LoadBalancerIP != "" {
		ps.warn("spec.loadBalancerIP", "ignored: the IPs annotation is set too and is used")
	}
	if raw == "" {
		return nil
	}
	var out []netip.Addr
	for _, part := range strings.Split(raw, ",") {
		a, err := parseAddr(strings.TrimSpace(part))
		if err != nil {
			ps.warn(field, "requested address ignored: %v", err)
			continue
		}
		out = append(out, a)
	}
	return out
}

// endpoints merges the Service's EndpointSlices, one Endpoint per address (the first slice in
// name order wins for an address listed twice).
func endpoints(slices []*discoveryv1.EndpointSlice) []Endpoint {
	slices = sortedByName(slices)
	seen := map[netip.Addr]bool{}
	var out []Endpoint
	for _, sl := range slices {
		if sl.AddressType == discoveryv1.AddressTypeFQDN {
			continue
		}
		ports := map[string]uint16{}
		for _, p := range sl.Ports {
			if p.Port == nil || *p.Port < 1 || *p.Port > 65535 {
				continue
			}
			name := ""
			if p.Name != nil {
				name = *p.Name
			}
			ports[name] = uint16(*p.Port)
		}
		for _, ep := range sl.Endpoints {
			for _, raw := range ep.Addresses {
				a, err := parseAddr(raw)
				if err != nil || seen[a] {
					continue
				}
				seen[a] = true
				e := Endpoint{
					Addr:        a,
					Ready:       ep.Conditions.Ready == nil || *ep.Conditions.Ready,
					Terminating: ep.Conditions.Terminating != nil && *ep.Conditions.Terminating,
					Ports:       ports,
				}
				e.Serving = e.Ready
				if ep.Conditions.Serving != nil {
					e.Serving = *ep.Conditions.Serving
				}
				if ep.NodeName != nil {
					e.Node = *ep.NodeName
				}
				if ep.Zone != nil {
					e.Zone = *ep.Zone
				}
				if h := ep.Hints; h != nil {
					for _, z := range h.ForZones {
						e.ForZones = append(e.ForZones, z.Name)
					}
					for _, n := range h.ForNodes {
						e.ForNodes = append(e.ForNodes, n.Name)
					}
				}
				out = append(out, e)
			}
		}
	}
	return out
}

// Node is a node of the cluster.
type Node struct {
	Name      string
	Labels    labels.Set
	Addresses []netip.Addr // InternalIP first, then ExternalIP
	PodCIDRs  []netip.Prefix
}

func buildNode(o *corev1.Node) (*Node, []Problem) {
	ps := &problems{ref: ObjectRef{Kind: "Node", Name: o.Name}}
	n := &Node{Name: o.Name, Labels: labels.Set(o.Labels)}
	for _, typ := range []corev1.NodeAddressType{corev1.NodeInternalIP, corev1.NodeExternalIP} {
		for i, a := range o.Status.Addresses {
			if a.Type != typ {
				continue
			}
			if ip, err := parseAddr(a.Address); err != nil {
				ps.warn(fmt.Sprintf("status.addresses[%d]", i), "%v", err)
			} else {
				n.Addresses = append(n.Addresses, ip)
			}
		}
	}
	for i, c := range o.Spec.PodCIDRs {
		if p, err := parsePrefix(c); err != nil {
			ps.warn(fmt.Sprintf("spec.podCIDRs[%d]", i), "%v", err)
		} else {
			n.PodCIDRs = append(n.PodCIDRs, p)
		}
	}
	return n, ps.list
}
