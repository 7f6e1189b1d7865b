/*
 * ct.h: connection tracking for translated flows (the conntrack map).
 *
 * A flow has an original entry (client -> frontend) and a reply entry
 * (backend -> client), written together when the flow is new. Expiry follows
 * the state, with the kernel's timeouts (struct config): an expired entry is a
 * miss, and the new selection overwrites it. The LRU evicts under pressure;
 * the agent's garbage collector removes expired entries.
 */
#ifndef __SLUICE_CT_H
#define __SLUICE_CT_H

#include "common.h"
#include "structs.h"
#include "maps.h"
#include "config.h"
#include "clock.h"
#include "parse.h"

#define NSEC_PER_SEC 1000000000ULL

/* The timeout of an entry of protocol proto in state, in nanoseconds. */
static __always_inline __u64 ct_timeout(__u8 proto, __u8 state)
{
	__u32 s;

	if (proto == IPPROTO_TCP) {
		switch (state) {
		case CT_STATE_ESTABLISHED:
			s = node_config.ct_tcp_established;
			break;
		case CT_STATE_FIN_WAIT:
			s = node_config.ct_tcp_fin_wait;
			break;
		case CT_STATE_CLOSE:
			s = node_config.ct_tcp_close;
			break;
		default:
			s = node_config.ct_tcp_syn_sent;
			break;
		}
	} else {
		s = state == CT_STATE_ESTABLISHED ? node_config.ct_udp_replied : node_config.ct_udp_unreplied;
	}
	return (__u64)s * NSEC_PER_SEC;
}

static __always_inline int ct_expired(const struct ct_entry *e, __u8 proto, __u64 now)
{
	return clock_older_than(now, e->last_seen, ct_timeout(proto, e->state));
}

/* The state of a new flow whose first packet has flags (TCP) . */
static __always_inline __u8 ct_new_state(__u8 proto, __u8 flags)
{
	if (proto != IPPROTO_TCP)
		return CT_STATE_UNREPLIED;
	if (flags & TCP_FLAG_RST)
		return CT_STATE_CLOSE;
	if (flags & TCP_FLAG_FIN)
		return CT_STATE_FIN_WAIT;
	if (flags & TCP_FLAG_SYN)
		return CT_STATE_SYN_SENT;
	/* picked up mid-stream (e.g. the entry was evicted): */
	return CT_STATE_ESTABLISHED;
}

/*
 * The state after a packet with flags; reply says whether it came from the
 * backend (a reply establishes the flow).
 */
static __always_inline __u8 ct_next_state(__u8 proto, __u8 state, __u8 flags, int reply)
{
	if (proto != IPPROTO_TCP)
		return reply ? CT_STATE_ESTABLISHED : state;
	if (flags & TCP_FLAG_RST)
		return CT_STATE_CLOSE;
	if (state == CT_STATE_CLOSE)
		return state;
	if (flags & TCP_FLAG_FIN)
		return CT_STATE_FIN_WAIT;
	if (reply && state == CT_STATE_SYN_SENT)
		return CT_STATE_ESTABLISHED;
	return state;
}

/*
 * A SYN (without ACK) on a tuple whose last connection ended starts a new
 * connection: select again instead of following the old one.
 */
static __always_inline int ct_reopened(const struct ct_entry *e, __u8 proto, __u8 flags)
{
	return proto == IPPROTO_TCP && (flags & (TCP_FLAG_SYN | TCP_FLAG_ACK)) == TCP_FLAG_SYN &&
	       (e->state == CT_STATE_FIN_WAIT || e->state == CT_STATE_CLOSE);
}

/*
 * Whether entry e still stands for a connection: not expired, and for TCP not
 * finished (FIN or RST seen).
 */
static __always_inline int ct_live(const struct ct_entry *e, __u8 proto, __u64 now)
{
	return !ct_expired(e, proto, now) &&
	       (proto != IPPROTO_TCP || (e->state != CT_STATE_FIN_WAIT && e->state != CT_STATE_CLOSE));
}

/* Marks entry e as having seen a packet of len bytes with flags now. */
static __always_inline void ct_touch(struct ct_entry *e, __u8 proto, __u8 flags, int reply, __u64 now, __u32 len)
{
	__u8 next = ct_next_state(proto, e->state, flags, reply);

	if (e->last_seen != now)
		e->last_seen = now;
	if (e->state != next)
		e->state = next;
	e->packets++;
	e->bytes += len;
}

/* Sets addr (16 bytes) from the 4-byte IPv4 address v4, IPv4-mapped. */
static __always_inline void addr_from_v4(__u8 *addr, __be32 v4)
{
	__u32 *w = (__u32 *)addr;

	w[0] = 0;
	w[1] = 0;
	w[2] = bpf_htonl(0x0000ffff);
	w[3] = v4;
}

static __always_inline void addr_copy(__u8 *dst, const __u8 *src)
{
	__u32 *d = (__u32 *)dst;
	const __u32 *s = (const __u32 *)src;

	d[0] = s[0];
	d[1] = s[1];
	d[2] = s[2];
	d[3] = s[3];
}

static __always_inline int addr_equal(const __u8 *a, const __u8 *b)
{
	const __u32 *x = (const __u32 *)a, *y = (const __u32 *)b;

	return ((x[0] ^ y[0]) | (x[1] ^ y[1]) | (x[2] ^ y[2]) | (x[3] ^ y[3])) == 0;
}

/* Whether addr is IPv4-mapped (::ffff:0:0/96). */
static __always_inline int addr_is_v4(const __u8 *addr)
{
	const __u32 *w = (const __u32 *)addr;

	return w[0] == 0 && w[1] == 0 && w[2] == bpf_htonl(0x0000ffff);
}

/*
 * Fills the flow key of the packet as it is on the wire (dir left 0):
 * addresses from the IP header at l3, ports from pkt. Returns -1 if the IP
 * header is not within the packet.
 */
static __always_inline int ct_key_from_packet(struct ct_key *k, const struct packet *pkt, void *l3)
{
	__builtin_memset(k, 0, sizeof(*k));
	if (pkt->l3_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip4 = l3;

		if ((void *)(ip4 + 1) > pkt->data_end)
			return -1;
		addr_from_v4(k->saddr, ip4->saddr);
		addr_from_v4(k->daddr, ip4->daddr);
	} else {
		struct ipv6hdr *ip6 = l3;

		if ((void *)(ip6 + 1) > pkt->data_end)
			return -1;
		__builtin_memcpy(k->saddr, &ip6->saddr, 16);
		__builtin_memcpy(k->daddr, &ip6->daddr, 16);
	}
	k->sport = pkt->sport;
	k->dport = pkt->dport;
	k->proto = pkt->l4_proto;
	return 0;
}

/*
 * The reply entry's key for the original key orig whose flow went to backend
 * (addr, port): what the backend sends back.
 */
static __always_inline void ct_reply_key(struct ct_key *r, const struct ct_key *orig, const __u8 *baddr, __be16 bport)
{
	__builtin_memset(r, 0, sizeof(*r));
	addr_copy(r->saddr, baddr);
	addr_copy(r->daddr, orig->saddr);
	r->sport = bport;
	r->dport = orig->sport;
	r->proto = orig->proto;
	r->dir = CT_DIR_REPLY;
}

/* The original entry's key for a reply key r whose entry says frontend (addr, port). */
static __always_inline void ct_original_key(struct ct_key *o, const struct ct_key *r, const __u8 *faddr, __be16 fport)
{
	__builtin_memset(o, 0, sizeof(*o));
	addr_copy(o->saddr, r->daddr);
	addr_copy(o->daddr, faddr);
	o->sport = r->dport;
	o->dport = fport;
	o->proto = r->proto;
	o->dir = CT_DIR_ORIGINAL;
}

#endif /* __SLUICE_CT_H */
