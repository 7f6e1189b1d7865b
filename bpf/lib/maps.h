/*
 * maps.h: every BPF map of the datapath, in one place.
 *
 * Conventions:
 *  - BTF-defined maps in SEC(".maps");
 *  - pinning = LIBBPF_PIN_BY_NAME for every map whose state must survive an
 *    agent restart: the loader pins it as <pin dir>/<map name> and reuses the
 *    pinned map on the next load. A pinned map whose type, key, value,
 *    max_entries or flags changed fails the load with ErrMapIncompatible
 *    rather than being silently replaced, so a definition change needs a
 *    migration (or a new map name); leave headroom in fixed sizes;
 *  - names at most 15 characters (the kernel's BPF_OBJ_NAME_LEN - 1), no
 *    prefix: the pin directory already says "sluice";
 *  - key and value types come from structs.h.
 */
#ifndef __SLUICE_MAPS_H
#define __SLUICE_MAPS_H

#include "common.h"
#include "structs.h"

/*
 * Packets and bytes per enum counter_id, per CPU; summed by the agent. Sized
 * with headroom so that new counters keep the pinned map compatible.
 */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, COUNTERS_MAP_SIZE);
	__type(key, __u32);
	__type(value, struct counter);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} counters SEC(".maps");

/*
 * Default sizes; the loader overrides them (Options -> MapSpec.MaxEntries),
 * and a pinned map created with another size fails the next load with
 * ErrMapIncompatible, so changing a size on a node means a migration.
 */
#define FRONTENDS_MAX 65536
#define BACKENDS_MAX 65536
#define MAGLEV_MAX (1U << 20)
#define CONNTRACK_MAX 262144
#define AFFINITY_MAX 65536
#define SOURCE_RANGES_MAX 65536
#define SOCK_REV_MAX 131072
#define SNAT_MAX 262144
#define EVENTS_SIZE (256 * 1024)

/* Service ports: (address, port, protocol, scope) -> struct frontend. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, FRONTENDS_MAX);
	__type(key, struct frontend_key);
	__type(value, struct frontend);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} frontends SEC(".maps");

/* Backends by id. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, BACKENDS_MAX);
	__type(key, __u32);
	__type(value, struct backend);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} backends SEC(".maps");

/*
 * All Maglev lookup tables in one array of backend ids: a frontend owns the
 * slots [maglev_base, maglev_base + maglev_size).
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAGLEV_MAX);
	/* The agent writes tables through a memory mapping: millions of slots in milliseconds. */
	__uint(map_flags, BPF_F_MMAPABLE);
	__type(key, __u32);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} maglev SEC(".maps");

/* Both directions of every translated flow (see struct ct_entry). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, CONNTRACK_MAX);
	__type(key, struct ct_key);
	__type(value, struct ct_entry);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} conntrack SEC(".maps");

/* ClientIP session affinity: (service, client) -> backend. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, AFFINITY_MAX);
	__type(key, struct affinity_key);
	__type(value, struct affinity);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} affinity SEC(".maps");

/* Client prefixes per service, for frontends with FRONTEND_F_SOURCE_RANGES. */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, SOURCE_RANGES_MAX);
	__type(key, struct source_range_key);
	__type(value, __u8);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} source_ranges SEC(".maps");

/*
 * Sockets the socket programs pointed at a backend -> the frontend they asked
 * for. An evicted entry only makes getpeername() / recvmsg() report the
 * backend instead of the frontend.
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, SOCK_REV_MAX);
	__type(key, struct sock_rev_key);
	__type(value, struct sock_rev);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sock_rev SEC(".maps");

/* The nodes of remote backends (DSR's tunnel endpoints), by backend id. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, BACKENDS_MAX);
	__type(key, __u32);
	__type(value, struct backend_node);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} backend_nodes SEC(".maps");

/*
 * SNATed flows by their reply tuple (struct snat_entry). A plain hash, not an
 * LRU: an LRU update makes room (evicting a live flow's entry) before it
 * finds the key taken, and a flow whose entry is gone loses its replies. The
 * agent's garbage collection frees the entries of ended flows; when it is
 * full, new flows to remote backends are dropped (snat_no_port). Not
 * preallocated: an entry deleted under a reader is freed after an RCU grace
 * period, not reused at once.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SNAT_MAX);
	__type(key, struct ct_key);
	__type(value, struct snat_entry);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} snat SEC(".maps");

/*
 * Per-CPU scratch space for the structures a new flow writes (lb.h): on the
 * stack they would push the XDP program and its subprograms past their
 * combined 512 bytes. Not pinned: it holds nothing between packets.
 */
struct lb_scratch {
	struct ct_entry entry;		/* lb_forward: the new flow's conntrack entries */
	struct ct_key snat_key;		/* lb_snat_claim */
	struct snat_entry snat;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct lb_scratch);
} lb_scratch SEC(".maps");

/* The node's SNAT source addresses: index 0 IPv4 (mapped), 1 IPv6. Written by the agent. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, struct snat_addr);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} snat_addrs SEC(".maps");

/*
 * Drop and trace events (struct event). Not pinned: it carries no state, and
 * the reader belongs to the agent that loaded the programs.
 */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, EVENTS_SIZE);
} events SEC(".maps");

#endif /* __SLUICE_MAPS_H */
