/*
 * structs.h: every type shared between the BPF programs and Go.
 *
 * bpf2go emits a Go declaration for each of them (by itself for map keys,
 * values and globals; enums need a -type flag in ../gen.go and an anchor
 * below), so the layout here is the layout Go reads and writes:
 *  - use fixed-width __u8/__u16/__u32/__u64 (or __be16/__be32 for values kept
 *    in network order) and lay fields out without implicit padding;
 *  - append to enums, never renumber: counters are keyed by value and pinned
 *    maps outlive the agent that created them.
 */
#ifndef __SLUICE_STRUCTS_H
#define __SLUICE_STRUCTS_H

#include "common.h"

/*
 * What the parser made of one packet. Each value is a slot in the counters
 * map; the datapath counts every packet in exactly one slot.
 */
enum counter_id {
	COUNTER_NON_IP = 0,	/* neither IPv4 nor IPv6 (ARP, LLDP, QinQ, ...) */
	COUNTER_IPV4_TCP,
	COUNTER_IPV4_UDP,
	COUNTER_IPV4_OTHER,	/* other protocols and non-first fragments */
	COUNTER_IPV6_TCP,
	COUNTER_IPV6_UDP,
	COUNTER_IPV6_OTHER,	/* other next headers, incl. extension headers */
	COUNTER_MALFORMED_L2,	/* Ethernet or VLAN header cut short */
	COUNTER_MALFORMED_L3,	/* bad or truncated IP header, IP length past the frame */
	COUNTER_MALFORMED_L4,	/* TCP/UDP header does not fit in the IP payload */
	COUNTER_MAX,		/* number of counters; keep last */
};

/*
 * Entries in the counters map: room to append counters without changing the
 * pinned map's definition (which would make the next agent's load fail).
 */
#define COUNTERS_MAP_SIZE 64
_Static_assert(COUNTER_MAX <= COUNTERS_MAP_SIZE, "counters map too small: raise COUNTERS_MAP_SIZE (a breaking change for pinned maps)");

/* One counters map value (per CPU): packets and bytes (whole frames). */
struct counter {
	__u64 packets;
	__u64 bytes;
};
SLUICE_ASSERT_SIZE(struct counter, 16);

/*
 * Per-node constants, fixed when the agent loads the programs (a volatile
 * const global, node_config in config.h). The verifier sees the values and
 * prunes the branches they switch off. Anything that changes at run time
 * belongs in a map instead. Feature switches are one byte each, 0 or 1.
 */
struct config {
	__u8 counters;		/* update the counters map */
	__u8 vlan;		/* look through one 802.1Q / 802.1ad tag */
	__u8 _reserved[6];
};
SLUICE_ASSERT_SIZE(struct config, 8);

/*
 * BTF anchors. bpf2go can only emit Go for types the object's BTF holds, and
 * clang only puts a type there when a map, global or non-inlined function
 * uses it; enums used only as values are dropped. One unused pointer per such
 * type keeps it (cilium/ebpf's examples do the same for ring-buffer events).
 * They are const, so they sit in .rodata next to node_config instead of
 * adding a .bss map to every load.
 */
const enum counter_id *const _anchor_counter_id __attribute__((unused)) = 0;

#endif /* __SLUICE_STRUCTS_H */
