package bpf

// The BPF objects are compiled by bpf2go (pinned in go.mod as a tool) with the
// system clang; the generated *_bpfel.go and *_bpfel.o are committed so that
// building Go needs no clang. Regenerate after any change under bpf/ with
//
//	go generate ./bpf/
//
// CI runs the same and then "git diff --exit-code -- bpf/", so the output must
// be byte-for-byte reproducible: bpf2go strips DWARF, drops the clang ident
// and maps the source directory out of the debug info (any checkout path
// gives the same bytes), and the asm/ shim in include/ keeps the host
// architecture out. The bytes do depend on the compiler and headers: build
// with Debian's clang 14 and libbpf-dev (apt-get install clang llvm
// libbpf-dev), as CI does.
//
// Only the little-endian target is built, so the package builds for
// little-endian GOARCHes only (amd64, arm64, ...).
//
// -mcpu=v3 (JMP32, ALU32) needs Linux 5.1; the datapath needs far newer
// (TCX is 6.6). bpf2go emits Go types for every map key/value and global
// variable by itself; -type adds the ones only used as values (enums), which
// also need a BTF anchor in lib/structs.h.

//go:generate go tool bpf2go -target bpfel -cflags "-O2 -g -Wall -Werror -mcpu=v3 -I./include" -type counter_id -type ct_state -type event_type -type event datapath datapath.c
