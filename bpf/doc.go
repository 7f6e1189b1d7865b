// Package bpf holds Sluice's eBPF datapath: the C programs, their compiled
// objects and the Go code that loads, attaches and reads them.
//
// # Layout
//
// Each attach point has one C file with a tiny entry function (xdp.c for
// now); the logic lives in lib/*.h: common.h (includes, helpers), structs.h
// (every type shared with Go), maps.h (every map), config.h (per-node
// constants), parse.h, counters.h. include/asm is a small shim for the UAPI
// headers' architecture includes. bpf2go compiles each C file (see gen.go)
// into a committed *_bpfel.o with a generated *_bpfel.go; run
// "go generate ./bpf/" after changing any C and commit the result.
//
// # Lifecycle
//
// [Load] verifies the programs and creates (or, with [Options.PinPath],
// reuses the pinned) maps; per-node constants from [Options] are fixed at
// that moment, so changing them means loading again. [Datapath.AttachXDP]
// attaches the XDP program to an interface; the returned link belongs to the
// caller and detaches when closed (or when the process exits). [Datapath.Close]
// releases the programs and maps held by this process; pinned maps stay in the
// bpffs with their contents, so the next Load (typically the restarted
// agent) picks them up. [Datapath.Unpin] removes the pins, for uninstalling.
// Links are not pinned yet, so during a restart the interface runs without
// the program: harmless while it only counts, to change (pin the link,
// Update it with the new program) before it owns traffic.
//
// A pinned map whose definition changed (type, key, value, size) is not
// replaced: Load fails with an error matching [ebpf.ErrMapIncompatible].
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
// Reading counters and attaching may run concurrently with each other; Close
// and Unpin must not run concurrently with any other method.
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
