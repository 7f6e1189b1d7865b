// Package ipam gives LoadBalancer Services their addresses from IPPools (LB-IPAM).
//
// [Allocate] is pure: it takes a validated model (pools, Services with their
// current status) and returns every Service's addresses, with a reason for
// what it could not give, and every pool's use. The same input gives the same
// output, whatever the order of the objects in it. It never moves an address a
// Service holds: the Service's status is the source of truth, and every held
// address is claimed before any new one is handed out, so a restart, a pool
// edit or shrink, or another Service's deletion changes nothing that is in use.
// An address goes only when its Service goes, stops being ours, or stops
// asking for it (another requested address, another pool named, a family
// dropped).
//
// The rules follow MetalLB and Cilium, so a Service moves over unedited:
// requested addresses (spec.loadBalancerIP, sluice.dev/ips and the MetalLB and
// Cilium annotations), a pool by name (sluice.dev/pool, MetalLB's), pools'
// autoAssign, avoidBuggyIPs, priority, namespace and Service selectors and
// disabled, ipFamilyPolicy, and address sharing by key with MetalLB's rules.
//
// The controller that runs Allocate on one leader and writes Services' status
// and pools' status builds on it; in standalone mode the agent runs Allocate on
// the file's objects.
package ipam
