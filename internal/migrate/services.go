package migrate

import (
	"net/netip"
	"slices"
	"strings"

	"github.com/sluice-lb/sluice/api/v1alpha1"
	"github.com/sluice-lb/sluice/internal/model"
)

// checkService says what becomes of a LoadBalancer Service of the input: Sluice honours
// MetalLB's annotations and keeps the addresses in its status, so it needs no edit, unless
// its class is another's or its addresses lie outside the converted pools.
func (c *converter) checkService(o *Object) {
	svc := o.service
	if cl := svc.Spec.LoadBalancerClass; cl != nil && *cl != model.LoadBalancerClass {
		c.note(Warning, o, "spec.loadBalancerClass", "class %q is not Sluice's default (%s): run Sluice with --lb-class %s (Helm: loadBalancerClass) to serve it unedited (the field cannot be changed)", *cl, model.LoadBalancerClass, *cl)
		return
	}
	for _, key := range []string{"metallb.io/address-pool", "metallb.universe.tf/address-pool"} {
		if p, ok := svc.Annotations[key]; ok && c.pools[p] == nil {
			c.note(Warning, o, "metadata.annotations."+key, "no IPPool %q was converted: the Service gets no address from Sluice until one exists", p)
		}
	}
	for _, ing := range svc.Status.LoadBalancer.Ingress {
		ip, err := netip.ParseAddr(ing.IP)
		if err != nil {
			continue
		}
		if c.poolOf(ip) == "" {
			c.note(Warning, o, "status.loadBalancer.ingress", "%s lies in no converted IPPool: Sluice keeps it in the status but announces it from no pool's advertisement", ip)
		}
	}
}

// poolOf names the converted pool holding ip, or "".
func (c *converter) poolOf(ip netip.Addr) string {
	names := sortedKeys(c.pools)
	for _, name := range names {
		if slices.ContainsFunc(c.pools[name].Spec.Blocks, func(b v1alpha1.IPBlock) bool { return blockHolds(b, ip) }) {
			return name
		}
	}
	return ""
}

// blockHolds reports whether a converted block holds ip.
func blockHolds(b v1alpha1.IPBlock, ip netip.Addr) bool {
	if b.CIDR != "" {
		p, err := netip.ParsePrefix(b.CIDR)
		return err == nil && p.Contains(ip)
	}
	first, err1 := netip.ParseAddr(strings.TrimSpace(b.Start))
	last, err2 := netip.ParseAddr(strings.TrimSpace(b.Stop))
	return err1 == nil && err2 == nil && first.BitLen() == ip.BitLen() && !ip.Less(first) && !last.Less(ip)
}
