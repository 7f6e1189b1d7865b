// Package lb is the control side of the eBPF load balancer: the Service model (frontends,
// backends with weight and state), a pure Maglev table builder, and the syncer that diffs the
// desired state against the pinned BPF maps and writes only the difference. On start it reads
// the pinned maps back, keeps backend IDs stable and waits for the first full model before
// pruning, so a restart drops no traffic.
//
// Not implemented yet: this package states the contract the next change builds to.
package lb
