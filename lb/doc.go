// Package lb is the control side of the eBPF load balancer: the Service model (frontends,
// backends with weight and state), a pure Maglev table builder, and the syncer that diffs the
// desired state against the pinned BPF maps and writes only the difference. On start it reads
// the pinned maps back, keeps backend IDs stable and waits for the first full model before
// pruning, so a restart drops no traffic.
//
// What exists so far is the pure core; everything here is plain data and functions, with no
// I/O, clock or globals:
//
//   - FromModel turns a validated model snapshot into the Services the datapath of a node is
//     programmed with: one per (Kubernetes Service, port, address family), with its
//     frontends (load-balancer, external and cluster IPs, each with a scope) and its backends
//     (ready endpoints Active, serving terminating ones Terminating). It is deterministic and
//     independent of input order; frontends claimed twice are reported as Conflicts.
//   - IDs gives each backend (address, port, protocol) a stable uint32 ID, seeded from the
//     pinned backends map on start so IDs survive restarts, and reuses a freed ID as late as
//     it can. It is not safe for concurrent use: its owner (the syncer) serialises calls.
//   - BuildMaglev and MaglevSize build a Service's Maglev lookup table: weighted, identical
//     on every node for the same backends (it depends only on their addresses, ports and
//     weights), sized from a ladder of primes of at least 100 slots per backend so that
//     adding or removing a backend moves few flows of the others.
//
// Not implemented yet: the syncer (desired → BPF maps, batch diffs, start-up read-back).
package lb
