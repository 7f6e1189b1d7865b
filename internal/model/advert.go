package model

import (
	"fmt"
	"strconv"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/sluice-lb/sluice/api/v1alpha1"
)

// Community is a BGP community: a standard one (Large false, Value) or a large one
// (Large true, Global:Local1:Local2).
type Community struct {
	Large                  bool
	Value                  uint32 // standard: high 16 bits AS, low 16 bits value
	Global, Local1, Local2 uint32
}

func (c Community) String() string {
	if c.Large {
		return fmt.Sprintf("%d:%d:%d", c.Global, c.Local1, c.Local2)
	}
	return fmt.Sprintf("%d:%d", c.Value>>16, c.Value&0xffff)
}

// wellKnownCommunities are the RFC 1997 / IANA names accepted for standard communities.
var wellKnownCommunities = map[string]uint32{
	"graceful-shutdown":   0xFFFF0000,
	"accept-own":          0xFFFF0001,
	"llgr-stale":          0xFFFF0006,
	"no-llgr":             0xFFFF0007,
	"blackhole":           0xFFFF029A,
	"no-export":           0xFFFFFF01,
	"no-advertise":        0xFFFFFF02,
	"no-export-subconfed": 0xFFFFFF03,
	"no-peer":             0xFFFFFF04,
}

// ParseCommunity parses "AA:NN", "A:B:C" or a well-known name.
func ParseCommunity(s string) (Community, error) {
	if v, ok := wellKnownCommunities[s]; ok {
		return Community{Value: v}, nil
	}
	parts := strings.Split(s, ":")
	bits := 16
	if len(parts) == 3 {
		bits = 32
	} else if len(parts) != 2 {
		return Community{}, fmt.Errorf("%q is not a community: want AA:NN, A:B:C or a well-known name such as no-export", s)
	}
	nums := make([]uint32, len(parts))
	for i, part := range parts {
		n, err := strconv.ParseUint(part, 10, bits)
		if err != nil {
			return Community{}, fmt.Errorf("%q is not a community: part %q must be a %d-bit number", s, part, bits)
		}
		nums[i] = uint32(n)
	}
	if len(nums) == 3 {
		return Community{Large: true, Global: nums[0], Local1: nums[1], Local2: nums[2]}, nil
	}
	return Community{Value: nums[0]<<16 | nums[1]}, nil
}

// PoolMatch selects pools by name or label. Empty (no names, no selector) matches every pool.
type PoolMatch struct {
	Names    []string
	Selector labels.Selector
}

// Matches reports whether the pool is selected.
func (m PoolMatch) Matches(p *Pool) bool {
	if len(m.Names) == 0 && m.Selector == nil {
		return true
	}
	for _, n := range m.Names {
		if n == p.Name {
			return true
		}
	}
	return m.Selector != nil && m.Selector.Matches(p.Labels)
}

// BGPAdvert is a validated BGPAdvertisement.
type BGPAdvert struct {
	Name                string
	Pools               PoolMatch
	ServiceSelector     labels.Selector // nil: every Service
	NodeSelector        labels.Selector // nil: every node
	Peers               []string        // empty: every peer
	AddressTypes        []v1alpha1.AddressType
	AggregationLength   int
	AggregationLengthV6 int
	Communities         []Community
	LocalPreference     *uint32
}

// L2Advert is a validated L2Advertisement.
type L2Advert struct {
	Name            string
	Pools           PoolMatch
	ServiceSelector labels.Selector
	NodeSelector    labels.Selector
	Interfaces      []string // empty: every suitable interface
}

func buildBGPAdvert(o *v1alpha1.BGPAdvertisement, pools map[string]*Pool, peers map[string]*Peer) (*BGPAdvert, []Problem) {
	ps := &problems{ref: ObjectRef{Kind: "BGPAdvertisement", Name: o.Name}}
	s := o.Spec
	a := &BGPAdvert{Name: o.Name, AggregationLength: 32, AggregationLengthV6: 128}
	a.Pools = poolMatch(ps, s.Pools, s.PoolSelector, pools)
	a.ServiceSelector = selector(ps, "spec.serviceSelector", s.ServiceSelector)
	a.NodeSelector = selector(ps, "spec.nodeSelector", s.NodeSelector)
	for i, name := range s.Peers {
		if _, ok := peers[name]; !ok {
			ps.warn(fmt.Sprintf("spec.peers[%d]", i), "BGPPeer %q does not exist (or is invalid); announcing to the others", name)
		}
		a.Peers = append(a.Peers, name)
	}
	a.AddressTypes = []v1alpha1.AddressType{v1alpha1.AddressLoadBalancerIP}
	if len(s.AddressTypes) > 0 {
		a.AddressTypes = nil
		for i, t := range s.AddressTypes {
			switch t {
			case v1alpha1.AddressLoadBalancerIP, v1alpha1.AddressExternalIP, v1alpha1.AddressClusterIP, v1alpha1.AddressPodCIDR:
				a.AddressTypes = append(a.AddressTypes, t)
			default:
				ps.reject(fmt.Sprintf("spec.addressTypes[%d]", i), "unknown address type %q (want LoadBalancerIP, ExternalIP, ClusterIP or PodCIDR)", t)
			}
		}
	}
	if l := s.AggregationLength; l != nil {
		if *l < 0 || *l > 32 {
			ps.reject("spec.aggregationLength", "must be between 0 and 32, got %d", *l)
		}
		a.AggregationLength = int(*l)
	}
	if l := s.AggregationLengthV6; l != nil {
		if *l < 0 || *l > 128 {
			ps.reject("spec.aggregationLengthV6", "must be between 0 and 128, got %d", *l)
		}
		a.AggregationLengthV6 = int(*l)
	}
	for i, c := range s.Communities {
		com, err := ParseCommunity(string(c))
		if err != nil {
			ps.reject(fmt.Sprintf("spec.communities[%d]", i), "%v", err)
			continue
		}
		a.Communities = append(a.Communities, com)
	}
	if lp := s.LocalPreference; lp != nil {
		if *lp < 0 || *lp > maxASN {
			ps.reject("spec.localPreference", "must be between 0 and %d, got %d", int64(maxASN), *lp)
		} else {
			v := uint32(*lp)
			a.LocalPreference = &v
		}
	}
	if ps.rejected() {
		return nil, ps.list
	}
	return a, ps.list
}

func buildL2Advert(o *v1alpha1.L2Advertisement, pools map[string]*Pool) (*L2Advert, []Problem) {
	ps := &problems{ref: ObjectRef{Kind: "L2Advertisement", Name: o.Name}}
	s := o.Spec
	a := &L2Advert{Name: o.Name}
	a.Pools = poolMatch(ps, s.Pools, s.PoolSelector, pools)
	a.ServiceSelector = selector(ps, "spec.serviceSelector", s.ServiceSelector)
	a.NodeSelector = selector(ps, "spec.nodeSelector", s.NodeSelector)
	for i, name := range s.Interfaces {
		if name == "" || len(name) > 15 || strings.ContainsAny(name, "/: \t") {
			ps.reject(fmt.Sprintf("spec.interfaces[%d]", i), "%q is not an interface name", name)
			continue
		}
		a.Interfaces = append(a.Interfaces, name)
	}
	if ps.rejected() {
		return nil, ps.list
	}
	return a, ps.list
}

// poolMatch builds a PoolMatch, warning about names of pools that do not exist: the
// advertisement still applies to the others, and to the named pool once it appears.
func poolMatch(ps *problems, names []string, sel *metav1.LabelSelector, pools map[string]*Pool) PoolMatch {
	m := PoolMatch{Names: names, Selector: selector(ps, "spec.poolSelector", sel)}
	for i, n := range names {
		if _, ok := pools[n]; !ok {
			ps.warn(fmt.Sprintf("spec.pools[%d]", i), "IPPool %q does not exist (or is invalid)", n)
		}
	}
	return m
}
