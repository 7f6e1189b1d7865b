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
	/*
	 * Load-balancer outcomes, counted in addition to the class above for
	 * the packets the load balancer acted on (and by the TC programs,
	 * which count only these). Not counted here: not ours, passed.
	 */
	COUNTER_FWD_NEW,	/* new flow: backend selected, destination rewritten */
	COUNTER_FWD_ESTABLISHED, /* conntrack hit: destination rewritten */
	COUNTER_REV_NAT,	/* reply backend -> client: source rewritten (TC egress) */
	COUNTER_NO_BACKEND_RST,	/* no usable backend: TCP answered with a RST */
	COUNTER_NO_BACKEND_ICMP, /* no usable backend: answered ICMP(v6) port unreachable */
	COUNTER_NO_BACKEND_DROP, /* no usable backend, could not answer: dropped */
	COUNTER_ICMP_ERR_IN,	/* ICMP error about a reply translated (inbound) */
	COUNTER_ICMP_ERR_OUT,	/* ICMP error about a forwarded packet translated (outbound) */
	COUNTER_CT_EXPIRED,	/* conntrack entry found but expired or stale: reselected */
	COUNTER_CT_CLASH,	/* new flow whose reply tuple a live flow to another frontend holds: dropped */
	COUNTER_SOURCE_DENIED,	/* new flow from outside the frontend's source ranges: dropped */
	/*
	 * Socket-level load balancing (the cgroup programs, sock.h), counted
	 * per connect() or sendmsg() to a frontend, with 0 bytes.
	 */
	COUNTER_SOCK_XLATE,	/* the socket's destination set to the selected backend */
	COUNTER_SOCK_NO_BACKEND, /* no usable backend: connect() / sendmsg() refused (ECONNREFUSED) */
	/* SNAT to backends on other nodes (lb.h, forward.h). */
	COUNTER_SNAT_FWD,	/* client -> remote backend: source and destination rewritten, redirected (TC) */
	COUNTER_SNAT_REV,	/* remote backend -> client: translated back to frontend -> client */
	COUNTER_SNAT_NO_PORT,	/* new flow to a remote backend without a free SNAT port: dropped */
	COUNTER_NO_ROUTE,	/* SNATed or DSR packet without a route to its destination: dropped */
	/* DSR to backends on other nodes (forward.h, dsr.h). */
	COUNTER_DSR_ENCAP,	/* client -> remote backend: DNATed, IPIP to the backend's node, redirected (TC) */
	COUNTER_DSR_DECAP,	/* IPIP from another node's DSR: decapsulated, the flow recorded for the reply */
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
 * Conntrack timeouts are in seconds, like the kernel's nf_conntrack_*_timeout.
 *
 * The clock (clock.h): conntrack and affinity timestamps are CLOCK_MONOTONIC
 * nanoseconds. Reading it costs a helper call per packet, so when the loader
 * has measured the kernel's tick (clock_tick_ns != 0) the programs compute it
 * from jiffies instead, which the verifier inlines as one load:
 * jiffies * clock_tick_ns - clock_offset (wrapping), within a tick of
 * CLOCK_MONOTONIC.
 */
struct config {
	__u8 counters;		/* update the counters map */
	__u8 vlan;		/* look through one 802.1Q / 802.1ad tag */
	__u8 events;		/* emit events to the events ring buffer */
	__u8 _reserved;
	/*
	 * SNAT source ports for flows to backends on other nodes, host order,
	 * inclusive; snat_port_max 0: no SNAT (such flows are only DNATed).
	 */
	__u16 snat_port_min;
	__u16 snat_port_max;
	__u32 ct_tcp_syn_sent;	/* TCP, SYN seen, no reply yet */
	__u32 ct_tcp_established; /* TCP, reply seen */
	__u32 ct_tcp_fin_wait;	/* TCP, FIN seen */
	__u32 ct_tcp_close;	/* TCP, RST seen */
	__u32 ct_udp_unreplied;	/* UDP, no reply yet */
	__u32 ct_udp_replied;	/* UDP, reply seen */
	__u64 clock_tick_ns;	/* nanoseconds per jiffy; 0: read the clock with a helper */
	__u64 clock_offset;	/* jiffies * clock_tick_ns - CLOCK_MONOTONIC */
};
SLUICE_ASSERT_SIZE(struct config, 48);

/* Where a frontend is reachable from (struct frontend_key.scope). */
enum frontend_scope {
	SCOPE_EXTERNAL = 0,	/* from the external devices (LoadBalancer IP, externalIP) */
	SCOPE_INTERNAL = 1,	/* from inside the cluster (ClusterIP): the socket programs (sock.h) */
};

/*
 * Addresses are 16 bytes everywhere: IPv6 as is, IPv4 as IPv4-mapped IPv6
 * (::ffff:a.b.c.d), so one set of maps serves both families. Ports are in
 * network order (__be16). proto is the IP protocol number (6 TCP, 17 UDP).
 */

/* frontends map key: one Service port on one address. */
struct frontend_key {
	__u8 addr[16];
	__be16 port;
	__u8 proto;
	__u8 scope;		/* enum frontend_scope */
};
SLUICE_ASSERT_SIZE(struct frontend_key, 20);

/* struct frontend.flags */
#define FRONTEND_F_RANDOM (1U << 0)	/* random selection instead of Maglev */
#define FRONTEND_F_SOURCE_RANGES (1U << 1) /* new flows only from the service's source ranges */
#define FRONTEND_F_DSR (1U << 2)	/* remote backends over DSR (IPIP to their node) instead of SNAT */

/*
 * source_ranges map key (an LPM trie): the client prefixes a service admits
 * (loadBalancerSourceRanges). prefixlen counts the 32 bits of service_id
 * and then the address's: 32 + 96 + n for an IPv4 /n, 32 + n for IPv6.
 */
struct source_range_key {
	__u32 prefixlen;
	__u32 service_id;
	__u8 addr[16];
};
SLUICE_ASSERT_SIZE(struct source_range_key, 24);

/* frontends map value. */
struct frontend {
	__u32 service_id;	/* conntrack and affinity are keyed by it */
	__u32 maglev_base;	/* first slot of this frontend's range in the maglev map */
	__u32 maglev_size;	/* slots in the range; 0: no usable backend (reject) */
	__u32 affinity_timeout;	/* ClientIP affinity in seconds; 0: none */
	__u32 flags;		/* FRONTEND_F_* */
	__u32 _reserved;
};
SLUICE_ASSERT_SIZE(struct frontend, 24);

/* struct backend.state */
enum backend_state {
	BACKEND_ACTIVE = 0,
	BACKEND_TERMINATING = 1,	/* keeps its flows, takes no new ones */
};

/* struct backend.flags */
#define BACKEND_F_REMOTE (1U << 0)	/* on another node: new flows from outside are SNATed to it */

/* backends map value (key: __u32 backend id, never 0 by convention). */
struct backend {
	__u8 addr[16];
	__be16 port;
	__u8 state;		/* enum backend_state */
	__u8 flags;
	__u32 _reserved;
};
SLUICE_ASSERT_SIZE(struct backend, 24);

/* struct ct_key.dir */
enum ct_dir {
	CT_DIR_ORIGINAL = 0,	/* client -> frontend, as the client sent it */
	CT_DIR_REPLY = 1,	/* backend -> client, as the backend sent it */
};

/* TCP (and UDP) state of a flow, struct ct_entry.state. */
enum ct_state {
	CT_STATE_NONE = 0,
	CT_STATE_SYN_SENT,	/* TCP: SYN from the client, no reply yet */
	CT_STATE_ESTABLISHED,	/* TCP and UDP: the backend replied */
	CT_STATE_FIN_WAIT,	/* TCP: a FIN was seen */
	CT_STATE_CLOSE,		/* TCP: a RST was seen */
	CT_STATE_UNREPLIED,	/* UDP: no reply yet */
};

/* conntrack map key: a flow in one direction, addresses as on the wire. */
struct ct_key {
	__u8 saddr[16];
	__u8 daddr[16];
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 dir;		/* enum ct_dir */
	__u8 _pad[2];
};
SLUICE_ASSERT_SIZE(struct ct_key, 40);

/*
 * conntrack map value. A new flow writes two entries: the original one
 * (nat = the backend: the destination to rewrite to) and the reply one
 * (nat = the frontend: the source to rewrite replies to). Times are
 * clock_now() (CLOCK_MONOTONIC, clock.h). The forward path keeps the original
 * entry's last_seen and state; the reverse path both entries'. An entry is
 * expired when now - last_seen exceeds the timeout of its state (struct config).
 */
struct ct_entry {
	__u64 last_seen;
	__u64 created;
	__u32 backend_id;
	__u32 service_id;
	__u8 nat_addr[16];
	__be16 nat_port;
	__u8 state;		/* enum ct_state */
	__u8 flags;		/* CT_F_* */
	__be16 snat_port;	/* CT_F_SNAT: the source port the flow leaves with */
	__u16 _reserved;
	__u64 packets;		/* in this entry's direction (approximate, not atomic) */
	__u64 bytes;
};
SLUICE_ASSERT_SIZE(struct ct_entry, 64);

/* struct ct_entry.flags */
#define CT_F_SNAT (1U << 0)	/* to a remote backend, from snat_addrs and snat_port (original entry only) */
#define CT_F_DSR (1U << 1)	/* to a remote backend over DSR: IPIP to its node (backend_nodes) */

/*
 * snat map value, keyed by the struct ct_key of the replies of an SNATed flow
 * as the backend sends them (backend -> SNAT address and port, dir
 * CT_DIR_REPLY): what they are translated back to. The flow's original
 * conntrack entry (client -> frontend) holds its state; the agent deletes an
 * entry once that one is gone.
 */
struct snat_entry {
	__u8 client[16];
	__u8 frontend[16];
	__be16 client_port;
	__be16 frontend_port;
	__u32 backend_id;
};
SLUICE_ASSERT_SIZE(struct snat_entry, 40);

/* backend_nodes map value (key: backend id): the address of a remote backend's node. */
struct backend_node {
	__u8 addr[16];
};
SLUICE_ASSERT_SIZE(struct backend_node, 16);

/* snat_addrs map value: the node's SNAT source address of one family (zero: none). */
struct snat_addr {
	__u8 addr[16];
};
SLUICE_ASSERT_SIZE(struct snat_addr, 16);

/* affinity map key: ClientIP session affinity per service. */
struct affinity_key {
	__u32 service_id;
	__u8 client[16];
};
SLUICE_ASSERT_SIZE(struct affinity_key, 20);

/* affinity map value. */
struct affinity {
	__u32 backend_id;
	__u32 _reserved;
	__u64 last_used;	/* clock_now() of the last new flow */
};
SLUICE_ASSERT_SIZE(struct affinity, 16);

/*
 * sock_rev map key: a socket the socket programs sent to a backend, and that
 * backend (what recvmsg and getpeername report, to be turned back into the
 * frontend).
 */
struct sock_rev_key {
	__u64 cookie;		/* bpf_get_socket_cookie() */
	__u8 addr[16];		/* the backend */
	__be16 port;
	__u8 _pad[6];
};
SLUICE_ASSERT_SIZE(struct sock_rev_key, 32);

/* sock_rev map value: the frontend the socket asked for. */
struct sock_rev {
	__u8 addr[16];
	__be16 port;
	__u8 _pad[2];
	__u32 service_id;
};
SLUICE_ASSERT_SIZE(struct sock_rev, 24);

/* struct event.type */
enum event_type {
	EVENT_NO_BACKEND = 1,	/* rejected: the frontend has no usable backend */
	EVENT_MALFORMED = 2,	/* malformed packet aimed at a frontend, passed */
	EVENT_CT_CLASH = 3,	/* new flow dropped: its reply tuple is a live flow's to another frontend */
	EVENT_SOURCE_DENIED = 4, /* new flow dropped: its client is outside the frontend's source ranges */
};

/* One record in the events ring buffer. */
struct event {
	__u64 timestamp;	/* bpf_ktime_get_coarse_ns() */
	__u32 type;		/* enum event_type */
	__u32 service_id;
	__u32 ifindex;		/* where the packet came in */
	__u32 len;		/* frame length */
	__u8 saddr[16];
	__u8 daddr[16];
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 counter;		/* enum counter_id of the outcome */
	__u8 _pad[2];
};
SLUICE_ASSERT_SIZE(struct event, 64);

/*
 * BTF anchors. bpf2go can only emit Go for types the object's BTF holds, and
 * clang only puts a type there when a map, global or non-inlined function
 * uses it; enums used only as values are dropped. One unused pointer per such
 * type keeps it (cilium/ebpf's examples do the same for ring-buffer events).
 * They are const, so they sit in .rodata next to node_config instead of
 * adding a .bss map to every load.
 */
const enum counter_id *const _anchor_counter_id __attribute__((unused)) = 0;
const enum ct_state *const _anchor_ct_state __attribute__((unused)) = 0;
const enum event_type *const _anchor_event_type __attribute__((unused)) = 0;
const struct event *const _anchor_event __attribute__((unused)) = 0;

#endif /* __SLUICE_STRUCTS_H */
