package migrate

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sluice-lb/sluice/api/v1alpha1"
)

// ipAddressPool converts an IPAddressPool into an IPPool of the same name.
func (c *converter) ipAddressPool(o *Object) {
	s := o.spec.(*ipAddressPoolSpec)
	p := &v1alpha1.IPPool{ObjectMeta: meta(o.Name, o.Labels)}
	p.Spec.Blocks = c.blocks(o, "spec.addresses", s.Addresses)
	if len(p.Spec.Blocks) == 0 {
		c.note(Error, o, "spec.addresses", "not converted: no usable address")
		return
	}
	p.Spec.AutoAssign = s.AutoAssign
	p.Spec.AvoidBuggyIPs = s.AvoidBuggyIPs
	if a := s.ServiceAllocation; a != nil && !c.serviceAllocation(o, p, a) {
		return
	}
	c.addPool(o, p)
}

// unrestrictedLast is the priority of a MetalLB pool restricted to some Services but given
// no priority: MetalLB tries every pool that is restricted to a Service before any that is
// not, so it must come before Sluice's pools without a priority (0: last).
const unrestrictedLast = 1 << 30

// serviceAllocation converts an IPAddressPool's serviceAllocation so Sluice picks pools in
// MetalLB's order: the restricted pools that admit a Service first, by priority, then the
// unrestricted ones. ok is false when the pool must not be converted.
func (c *converter) serviceAllocation(o *Object, p *v1alpha1.IPPool, a *serviceAllocation) bool {
	const f = "spec.serviceAllocation"
	restricted := len(a.Namespaces) > 0 || len(a.NamespaceSelectors) > 0 || len(a.ServiceSelectors) > 0
	if !restricted {
		// MetalLB auto-assigns a pool with a serviceAllocation only to the Services it admits:
		// restricting nothing, it admits none.
		if p.Spec.AutoAssign == nil || *p.Spec.AutoAssign {
			no := false
			p.Spec.AutoAssign = &no
			c.note(Info, o, f, "restricts no Service, so MetalLB never assigns from it automatically: autoAssign false")
		}
		return true
	}
	switch {
	case a.Priority < 0:
		c.note(Warning, o, f+".priority", "%d is not a priority; left out", a.Priority)
		p.Spec.Priority = unrestrictedLast
	case a.Priority > 0 && a.Priority < unrestrictedLast:
		p.Spec.Priority = a.Priority
	default:
		p.Spec.Priority = unrestrictedLast
	}
	// MetalLB admits a namespace listed or matched by a selector; Sluice wants both when both
	// are set, so the list joins the selectors as one more on the namespace's name.
	nsSels := a.NamespaceSelectors
	p.Spec.Namespaces = a.Namespaces
	if len(a.Namespaces) > 0 && len(nsSels) > 0 {
		joined := append(slices.Clone(nsSels), metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
			{Key: "kubernetes.io/metadata.name", Operator: metav1.LabelSelectorOpIn, Values: a.Namespaces}}})
		if one, alts, err := anyOf(joined); err == nil && alts == nil {
			nsSels, p.Spec.Namespaces = nil, nil
			p.Spec.NamespaceSelector = one
		} else {
			c.note(Warning, o, f+".namespaces", "MetalLB admits a namespace listed here or matched by namespaceSelectors; Sluice admits one that is both, so the pool now serves fewer namespaces")
		}
	}
	var ok bool
	if len(nsSels) > 0 {
		if p.Spec.NamespaceSelector, ok = c.poolSelector(o, f+".namespaceSelectors", nsSels); !ok {
			return false
		}
	}
	if p.Spec.ServiceSelector, ok = c.poolSelector(o, f+".serviceSelectors", a.ServiceSelectors); !ok {
		return false
	}
	return true
}

func (c *converter) addPool(o *Object, p *v1alpha1.IPPool) bool {
	if !c.add(o, p) {
		return false
	}
	c.pools[p.Name] = p
	c.origins[p] = o
	return true
}

// addressPool converts a 0.12/0.13 AddressPool into an IPPool and the advertisement its
// protocol implies, both of its name.
func (c *converter) addressPool(o *Object) {
	s := o.spec.(*addressPoolSpec)
	var ads []legacyPoolAdvertisement
	for _, a := range s.BGPAdvertisements {
		lp := a.LocalPref
		ads = append(ads, legacyPoolAdvertisement{AggregationLength: a.AggregationLength,
			AggregationLengthV6: a.AggregationLengthV6, LocalPref: &lp, Communities: a.Communities})
	}
	c.poolWithProtocol(o, "spec", o.Name, s.Protocol, s.Addresses, s.AutoAssign, s.AvoidBuggyIPs, ads)
}

// legacyPool converts address-pools[i] of a legacy ConfigMap.
func (c *converter) legacyPool(o *Object, i int) {
	lp := o.config.AddressPools[i]
	field := fmt.Sprintf("data.config.address-pools[%d]", i)
	if lp.Name == "" {
		c.note(Error, o, field, "not converted: a pool without a name")
		return
	}
	c.poolWithProtocol(o, field, lp.Name, lp.Protocol, lp.Addresses, lp.AutoAssign, lp.AvoidBuggyIPs, lp.BGPAdvertisements)
}

// poolWithProtocol makes the IPPool and advertisements of a pool that names its protocol.
func (c *converter) poolWithProtocol(o *Object, field, name, protocol string, addrs []string, autoAssign *bool, avoidBuggy bool, ads []legacyPoolAdvertisement) {
	labels := o.Labels
	if o.config != nil {
		labels = nil // the ConfigMap's, not the pool's
	}
	p := &v1alpha1.IPPool{ObjectMeta: meta(name, labels)}
	p.Spec.Blocks = c.blocks(o, field+".addresses", addrs)
	if len(p.Spec.Blocks) == 0 {
		c.note(Error, o, field+".addresses", "pool %q not converted: no usable address", name)
		return
	}
	p.Spec.AutoAssign, p.Spec.AvoidBuggyIPs = autoAssign, avoidBuggy
	switch protocol {
	case "layer2", "bgp":
	default:
		c.note(Error, o, field+".protocol", "pool %q not converted: protocol %q is neither layer2 nor bgp", name, protocol)
		return
	}
	if !c.addPool(o, p) {
		return
	}
	if protocol == "layer2" {
		if len(ads) > 0 {
			c.note(Warning, o, field+".bgpAdvertisements", "a layer2 pool's BGP advertisements are ignored, as MetalLB ignores them")
		}
		c.add(o, &v1alpha1.L2Advertisement{ObjectMeta: meta(name, nil), Spec: v1alpha1.L2AdvertisementSpec{Pools: []string{name}}})
		return
	}
	if len(ads) == 0 {
		ads = []legacyPoolAdvertisement{{}}
	}
	for i, a := range ads {
		adName := name
		if i > 0 {
			adName = fmt.Sprintf("%s-%d", name, i+1)
		}
		ad := &v1alpha1.BGPAdvertisement{ObjectMeta: meta(adName, nil)}
		ad.Spec.Pools = []string{name}
		ad.Spec.AggregationLength, ad.Spec.AggregationLengthV6 = a.AggregationLength, a.AggregationLengthV6
		if a.LocalPref != nil && *a.LocalPref != 0 {
			lp := int64(*a.LocalPref)
			ad.Spec.LocalPreference = &lp
		}
		ad.Spec.Communities = c.communities(o, fmt.Sprintf("%s.bgpAdvertisements[%d].communities", field, i), a.Communities)
		c.add(o, ad)
	}
}

// blocks converts MetalLB address ranges ("CIDR" or "first-last"); bad ones are noted and
// left out.
func (c *converter) blocks(o *Object, field string, addrs []string) []v1alpha1.IPBlock {
	var out []v1alpha1.IPBlock
	for i, a := range addrs {
		b, err := block(a)
		if err != nil {
			c.note(Error, o, fmt.Sprintf("%s[%d]", field, i), "left out: %v", err)
			continue
		}
		if b.CIDR != "" && b.CIDR != strings.TrimSpace(a) {
			c.note(Info, o, fmt.Sprintf("%s[%d]", field, i), "%q is the network %s", a, b.CIDR)
		}
		out = append(out, b)
	}
	return out
}

// block parses one MetalLB address range.
func block(s string) (v1alpha1.IPBlock, error) {
	s = strings.TrimSpace(s)
	if first, last, ok := strings.Cut(s, "-"); ok {
		a, errA := netip.ParseAddr(strings.TrimSpace(first))
		b, errB := netip.ParseAddr(strings.TrimSpace(last))
		switch {
		case errA != nil || errB != nil || a.Zone() != "" || b.Zone() != "":
			return v1alpha1.IPBlock{}, fmt.Errorf("%q is not a range of two addresses", shorten(s))
		case a.Is4() != b.Is4():
			return v1alpha1.IPBlock{}, fmt.Errorf("%q mixes IPv4 and IPv6", s)
		case b.Less(a):
			return v1alpha1.IPBlock{}, fmt.Errorf("%q ends before it starts", s)
		}
		return v1alpha1.IPBlock{Start: a.String(), Stop: b.String()}, nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return v1alpha1.IPBlock{}, fmt.Errorf("%q is neither a CIDR nor a first-last range", shorten(s))
	}
	return v1alpha1.IPBlock{CIDR: p.Masked().String()}, nil
}
