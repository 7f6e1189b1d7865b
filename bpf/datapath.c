//go:build ignore

/*
 * datapath.c: the one compilation unit bpf2go builds (see gen.go). It
 * includes one file per attach point, so that every program of the datapath
 * lands in one object with one set of maps: the programs share the maps
 * without any plumbing, and the loader pins them once.
 */
#include "xdp.c"
#include "tc.c"
#include "sock.c"

char LICENSE[] SEC("license") = "Dual MIT/GPL";
