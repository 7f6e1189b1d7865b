package migrate

import (
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sluice-lb/sluice/api/v1alpha1"
)

// advertisementSelectors converts an advertisement's pool and node selector lists into the
// objects it becomes; nil when it must not be converted.
func (c *converter) advertisementSelectors(o *Object, poolSels, nodeSels []metav1.LabelSelector) []split {
	pool, poolAlts, err := anyOf(poolSels)
	if err != nil {
		c.note(Error, o, "spec.ipAddressPoolSelectors", "not converted: %v", err)
		return nil
	}
	node, nodeAlts, err := anyOf(nodeSels)
	if err != nil {
		c.note(Error, o, "spec.nodeSelectors", "not converted: %v", err)
		return nil
	}
	out := splits(o.Name, pool, node, poolAlts, nodeAlts)
	if len(out) > 1 {
		names := make([]string, len(out))
		for i, s := range out {
			names[i] = s.name
		}
		c.note(Info, o, "", "its selectors match what any of them matches, and a Sluice advertisement takes one of each: split into %v, which together announce the same", names)
	}
	return out
}

// advertisedPools returns the pools an advertisement names, noting those the input does not
// convert; none (every pool) when one of its pool selectors is empty and so matches all.
func (c *converter) advertisedPools(o *Object, pools []string, sels []metav1.LabelSelector) []string {
	if len(pools) > 0 && matchesAll(sels) {
		c.note(Info, o, "spec.ipAddressPoolSelectors", "an empty selector matches every pool: the advertisement covers all of them")
		return nil
	}
	for i, p := range pools {
		if c.pools[p] == nil {
			c.note(Warning, o, fmt.Sprintf("spec.ipAddressPools[%d]", i), "no pool %q was converted; kept, and it announces nothing until an IPPool of that name exists", p)
		}
	}
	return pools
}

// l2Advertisement converts an L2Advertisement.
func (c *converter) l2Advertisement(o *Object) {
	s := o.spec.(*l2AdvertisementSpec)
	pools := c.advertisedPools(o, s.IPAddressPools, s.IPAddressPoolSelectors)
	for _, sp := range c.advertisementSelectors(o, s.IPAddressPoolSelectors, s.NodeSelectors) {
		c.add(o, &v1alpha1.L2Advertisement{ObjectMeta: meta(sp.name, o.Labels), Spec: v1alpha1.L2AdvertisementSpec{
			Pools: pools, PoolSelector: sp.pool, NodeSelector: sp.node, Interfaces: s.Interfaces}})
	}
}

// bgpAdvertisement converts a BGPAdvertisement; its peers are those made of the MetalLB
// peers it names.
func (c *converter) bgpAdvertisement(o *Object) {
	s := o.spec.(*bgpAdvertisementSpec)
	spec := v1alpha1.BGPAdvertisementSpec{Pools: c.advertisedPools(o, s.IPAddressPools, s.IPAddressPoolSelectors),
		AggregationLength: s.AggregationLength, AggregationLengthV6: s.AggregationLengthV6,
		Communities: c.communities(o, "spec.communities", s.Communities)}
	if s.LocalPref != 0 {
		lp := int64(s.LocalPref)
		spec.LocalPreference = &lp
	}
	for i, p := range s.Peers {
		name, ok := c.peers[p]
		if !ok {
			c.note(Warning, o, fmt.Sprintf("spec.peers[%d]", i), "no BGPPeer %q was converted; kept, and it announces to no one until a BGPPeer of that name exists", p)
			name = p
		}
		spec.Peers = append(spec.Peers, name)
	}
	for _, sp := range c.advertisementSelectors(o, s.IPAddressPoolSelectors, s.NodeSelectors) {
		ad := &v1alpha1.BGPAdvertisement{ObjectMeta: meta(sp.name, o.Labels), Spec: *spec.DeepCopy()}
		ad.Spec.PoolSelector, ad.Spec.NodeSelector = sp.pool, sp.node
		c.add(o, ad)
	}
}
