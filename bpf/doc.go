// Package bpf holds Sluice's eBPF datapath: the C programs, their compiled
// objects and the Go code that loads, attaches and reads them.
//
// # Layout
//
// Each attach point has one C file with a tiny entry function: xdp.c (the
// forward path on the external devices) and tc.c (TCX ingress: the same
// forward path for what XDP did not handle; TCX egress: the reply path).
// bpf2go compiles one unit, datapath.c, which includes both, so every program
// shares one set of maps (see gen.go); the generated Go is datapath_bpfel.go.
// The logic lives in lib/*.h: common.h (includes, helpers), structs.h (every
// type shared with Go), maps.h (every map), config.h (per-node constants),
// parse.h, csum.h (RFC 1624 arithmetic), hash.h (the Maglev flow hash), ct.h
// (conntrack), lb.h (frontend lookup and backend selection), nat.h
// (rewrites), icmp.h (ICMP error translation), reply.h (RST / ICMP
// unreachable), events.h, counters.h, forward.h and reverse.h (the paths).
// include/asm is a small shim for the UAPI headers' architecture includes.
// Run "go generate ./bpf/" after changing any C and commit the result.
//
// # Datapath
//
// Addresses are 16 bytes in every map (IPv4 as IPv4-mapped IPv6). A packet
// to a frontend (address, port, protocol; scope external) follows its
// conntrack entry if one is live and its backend still exists (even a
// terminating one); otherwise ClientIP affinity, otherwise the frontend's
// Maglev range (or a random slot) picks the backend, and both conntrack
// entries (and the affinity) are written. The destination is rewritten and
// the packet passed to the kernel to route. Replies leaving a device get the
// frontend back as their source at TCX egress; ICMP errors about translated
// flows are translated both ways. A frontend with MaglevSize 0 rejects: XDP
// answers TCP with a RST and UDP with ICMP port unreachable; TC ingress drops.
// Everything else, fragments included, passes untouched.
//
// # Lifecycle
//
// [Load] verifies the programs and creates (or, with [Options.PinPath],
// reuses the pinned) maps; per-node constants from [Options] (feature
// switches, conntrack timeouts) and map sizes are fixed at that moment, so
// changing them means loading again. [Datapath.AttachXDP] and
// [Datapath.AttachTCX] attach the programs to an interface; the returned link belongs to the
// caller and detaches when closed (or when the process exits). [Datapath.AttachDevice]
// (what the agent uses) pins the links instead, and a later AttachDevice updates
// them in place with the new programs: the device never runs without one.
// [Datapath.Close] releases the programs and maps held by this process; pinned
// maps and links stay in the bpffs, so the next Load (typically the restarted
// agent) picks them up. [Datapath.Unpin] removes the map pins, for uninstalling.
//
// A pinned map whose definition changed (a size flag, or a new version's
// layout) is replaced by Load, with its entries carried over where the layout
// allows and they fit; [Datapath.Migrations] says what happened.
//
// # Privileges
//
// Load needs CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON (or root). CAP_PERFMON is
// not optional: the programs subtract packet pointers (frame lengths), which
// the verifier only allows with it, and without it the verifier also adds
// Spectre mitigations to every program. Attaching needs CAP_NET_ADMIN in the
// interface's network namespace.
//
// # Concurrency
//
// Reading counters, the map accessors (maps_linux.go) and attaching may run
// concurrently with each other and with the running programs; Close and
// Unpin must not run concurrently with any other method.
//
// # Errors
//
// Functions return wrapped errors (match with errors.Is / errors.As, for
// example [ebpf.VerifierError] for the full verifier log) and never log.
//
// The loader is Linux-only; the counter types also build elsewhere so that
// code which formats or aggregates them stays portable. Only the
// little-endian object is generated, so the package needs a little-endian
// GOARCH (amd64, arm64, ...).
package bpf
