// Package ipam gives LoadBalancer Services their addresses (LB-IPAM).
//
// It will hold two parts: a pure allocator (pools in, Services in, a stable assignment out:
// requested addresses honoured, sharing keys respected, earlier assignments kept, pools tried by
// priority) with no client calls, and the controller that runs on one leader and writes
// status.loadBalancer.ingress and pool status, retrying per key and writing only what changed.
// In standalone mode the assignment is deterministic (Services in creationTimestamp,
// namespace/name order, earlier results kept in a state file) so agents reading one file agree.
//
// Not implemented yet: this package states the contract the next change builds to.
package ipam
