// Package lab builds network-namespace topologies on one Linux kernel: a router, clients
// and Kubernetes "nodes" as named network namespaces joined by veth pairs and bridges.
// Tests use it through ForTest; `make demo` and other programs use New and Close.
//
// # Naming
//
// Every network namespace a Lab makes is named "sluicelab-<pid>-<seq>-[<label>-]<short>",
// where pid is the owning process, seq a per-process counter and label the sanitized name
// given to New. Labs in parallel tests and parallel test binaries therefore never collide.
// Interfaces are created directly inside their namespaces (never in the root namespace),
// so interface names may repeat across namespaces and are only limited to 15 bytes.
//
// # Lifecycle
//
// New first removes stale labs: namespaces whose owning PID is no longer alive (or, for
// this PID, that belong to no open Lab of this process). Their processes are killed and
// the namespaces deleted. RemoveStale does the same on demand.
//
// Close removes everything the Lab made, in order: the processes it started (SIGTERM,
// then SIGKILL after a grace period), any other process still inside its namespaces
// (for example a daemon that forked itself into the background), its interfaces (veths
// and bridges), and its namespaces. Close is idempotent; after it, other methods return
// ErrClosed. ForTest registers Close with t.Cleanup, so a failed or panicking test
// still removes its lab.
//
// # Concurrency
//
// A Lab and its Namespaces are safe for concurrent use. Namespace.Do runs a function on
// a dedicated, locked OS thread inside the namespace and always restores (or discards)
// that thread; sockets opened inside Do stay in the namespace and may be used anywhere.
//
// # Requirements
//
// Root (CAP_SYS_ADMIN, CAP_NET_ADMIN) and iproute2's `ip`, which creates the namespaces
// (so that /run/netns is a shared mount) and runs commands in them (`ip netns exec`).
package lab
