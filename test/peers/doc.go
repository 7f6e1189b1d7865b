// Package peers runs real BGP daemons — FRR bgpd, BIRD 2 and gobgpd — inside network
// namespaces as peers for tests and demos, and reads their state back as Go data.
//
// # Lifecycle
//
// StartFRR, StartBIRD and StartGoBGP write a configuration generated from a Config into
// a runtime directory owned by the caller (a test's t.TempDir, for instance), start the
// daemon in the foreground inside the named network namespace with `ip netns exec`, and
// return once its control interface answers. Stop kills the daemon by PID (SIGTERM, then
// SIGKILL) and removes nothing: the directory, with the configuration and sockets, stays
// with its owner. StartForTest does all this for a test, in t.TempDir, stopping on
// cleanup and printing the daemon's log if the test failed.
//
// The generated configurations are meant for labs: no policy (everything is accepted and
// re-advertised), connect-retry timers of one second, and neither zebra nor a kernel
// protocol, so the daemons never touch the namespace's routing table — except an FRR asked
// to be a router (Config.InstallRoutes), which runs zebra and installs its best paths, ECMP
// included (FRR.KernelNextHops reads them back). Each neighbor
// carries the address family of its address (IPv4 unicast or IPv6 unicast).
//
// # State
//
// Sessions and Routes return the neighbor sessions and the BGP table in one shape for
// every daemon (see Session and Route); WaitEstablished, WaitRoute and WaitWithdrawn
// poll them. The parsers behind them are pure functions tested against outputs recorded
// from the real daemons (testdata/).
//
// # Concurrency
//
// The daemons' methods are safe for concurrent use; each call runs the daemon's own
// client (birdc, gobgp; for FRR, a command on its vty socket, as vtysh sends it). One gobgpd per namespace: its API listens on
// 127.0.0.1:50051, which is per namespace.
//
// # Requirements
//
// Root (in group frrvty for zebra: hack/install-deps.sh sees to it), iproute2's `ip`, and
// the Debian packages frr (/usr/lib/frr/bgpd, /usr/lib/frr/zebra, vtysh), bird2
// (bird, birdc) and gobgpd (gobgpd, gobgp).
package peers
