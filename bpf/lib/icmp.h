/*
 * icmp.h: translating ICMP / ICMPv6 errors that belong to a translated flow,
 * so that Path MTU discovery (and traceroute, unreachables) work through the
 * load balancer. The error quotes the offending packet; both the quote and
 * the outer header are rewritten to what the other side knows:
 *
 *  - inbound (XDP, TC ingress): an error about a reply we sent as
 *    frontend -> client, addressed to the frontend. The quote's source
 *    becomes the backend again, and the outer destination too when it is
 *    the frontend, so the kernel routes the error to the backend.
 *  - outbound (TC egress): an error about a client -> backend packet (from
 *    the backend, or the node itself). The quote's destination becomes the
 *    frontend, and the outer source too when it is the backend.
 *
 * Checksums are updated by hand over direct packet access (the quote is
 * ICMP payload, not something the checksum helpers know): outer IPv4
 * header, ICMP (ICMPv6 with its pseudo-header), the quoted IPv4 header, and
 * the quoted TCP/UDP checksum when the quote holds it.
 */
#ifndef __SLUICE_ICMP_H
#define __SLUICE_ICMP_H

#include "common.h"
#include "csum.h"
#include "ct.h"
#include "maps.h"
#include "parse.h"

#define ICMP_TIME_EXCEEDED 11
#define ICMP_PARAMETERPROB 12
#define ICMPV6_PKT_TOOBIG 2
#define ICMPV6_TIME_EXCEED 3
#define ICMPV6_PARAMPROB 4

static __always_inline int icmp_is_error(int v4, __u8 type)
{
	if (v4)
		return type == 3 || type == ICMP_TIME_EXCEEDED || type == ICMP_PARAMETERPROB;
	return type >= 1 && type <= 4;
}

/*
 * Translates the ICMP error in pkt (l4_off at the ICMP header) if it belongs
 * to a flow in conntrack. Returns 1 if it was translated, 0 if not ours.
 */
static __always_inline int icmp_error_xlate(struct packet *pkt, int inbound)
{
	void *data = pkt->data, *data_end = pkt->data_end;
	int v4 = pkt->l3_proto == bpf_htons(ETH_P_IP);
	__u32 ioff = pkt->l4_off + 8, il4off, ip_end = pkt->l3_off + pkt->ip_len;
	__u8 *icmp = data + pkt->l4_off;
	__u8 iproto, *iaddr, *oaddr, naddr[16], match[16];
	__u16 *iport, *ipcsum = 0, *il4csum = 0, *ocsum = 0;
	__u32 diff_a, diff_p, diff_icmp, diff_o = 0;
	struct ct_key k = {};
	struct ct_entry *e;
	__be16 nport;

	if ((void *)(icmp + 8) > data_end || !icmp_is_error(v4, icmp[0]))
		return 0;

	if (v4) {
		struct iphdr *outer = data + pkt->l3_off;
		struct iphdr *inner = data + ioff;

		if ((void *)(outer + 1) > data_end || (void *)(inner + 1) > data_end)
			return 0;
		if (inner->version != 4 || inner->ihl < 5 || (inner->frag_off & bpf_htons(IPV4_FRAG_OFFSET)))
			return 0;
		iproto = inner->protocol;
		il4off = ioff + inner->ihl * 4;
		addr_from_v4(k.saddr, inner->saddr);
		addr_from_v4(k.daddr, inner->daddr);
		iaddr = inbound ? (__u8 *)&inner->saddr : (__u8 *)&inner->daddr;
		oaddr = inbound ? (__u8 *)&outer->daddr : (__u8 *)&outer->saddr;
		ipcsum = &inner->check;
		ocsum = &outer->check;
	} else {
		struct ipv6hdr *outer = data + pkt->l3_off;
		struct ipv6hdr *inner = data + ioff;

		if ((void *)(outer + 1) > data_end || (void *)(inner + 1) > data_end)
			return 0;
		iproto = inner->nexthdr;
		il4off = ioff + sizeof(*inner);
		__builtin_memcpy(k.saddr, &inner->saddr, 16);
		__builtin_memcpy(k.daddr, &inner->daddr, 16);
		iaddr = inbound ? (__u8 *)&inner->saddr : (__u8 *)&inner->daddr;
		oaddr = inbound ? (__u8 *)&outer->daddr : (__u8 *)&outer->saddr;
	}
	if (iproto != IPPROTO_TCP && iproto != IPPROTO_UDP)
		return 0;
	if (il4off + 8 > ip_end || il4off > 0xff)
		return 0;
	{
		__be16 *ports = data + il4off;

		if ((void *)(ports + 4) > data_end)
			return 0;
		/* The flow as the quote's sender saw it, reversed: the other direction's key. */
		{
			struct ct_key q = {};

			addr_copy(q.saddr, k.daddr);
			addr_copy(q.daddr, k.saddr);
			q.sport = ports[1];
			q.dport = ports[0];
			q.proto = iproto;
			q.dir = inbound ? CT_DIR_ORIGINAL : CT_DIR_REPLY;
			e = bpf_map_lookup_elem(&conntrack, &q);
			if (!e)
				return 0;
			/* inbound: the frontend (quote source); outbound: the backend (quote destination) */
			addr_copy(match, inbound ? q.daddr : q.saddr);
		}
		iport = inbound ? &ports[0] : &ports[1];
		if (iproto == IPPROTO_UDP)
			il4csum = &ports[3];
	}
	if (iproto == IPPROTO_TCP && il4off + 18 <= ip_end) {
		__u16 *c = data + il4off + 16;

		if ((void *)(c + 1) <= data_end)
			il4csum = c;
	}
	addr_copy(naddr, e->nat_addr);
	nport = e->nat_port;

	/* The quoted packet: address, port, its IPv4 header and L4 checksums. */
	if (v4) {
		__u32 *a = (__u32 *)iaddr;

		if ((void *)(a + 1) > data_end)
			return 0;
		diff_a = csum_diff_words(0, a, &naddr[12], 2);
		*a = *(__u32 *)&naddr[12];
	} else {
		__u32 *a = (__u32 *)iaddr;

		if ((void *)(a + 4) > data_end)
			return 0;
		diff_a = csum_diff_words(0, a, naddr, 8);
		__builtin_memcpy(a, naddr, 16);
	}
	diff_p = csum_diff16(0, *iport, nport);
	*iport = nport;
	diff_icmp = diff_a + diff_p;
	if (ipcsum) {
		__u16 old = *ipcsum, new = csum_update(old, diff_a);

		*ipcsum = new;
		diff_icmp = csum_diff16(diff_icmp, old, new);
	}
	if (il4csum && (iproto == IPPROTO_TCP || *il4csum || !v4)) {
		__u16 old = *il4csum, new = csum_update(old, diff_a + diff_p);

		if (iproto == IPPROTO_UDP && !new)
			new = 0xffff;
		*il4csum = new;
		diff_icmp = csum_diff16(diff_icmp, old, new);
	}

	/* The outer header, when it is addressed to (or from) the translated side. */
	if (v4) {
		__u32 *a = (__u32 *)oaddr;

		if ((void *)(a + 1) > data_end)
			return 0;
		if (*a == *(__u32 *)&match[12] && ocsum) {
			diff_o = csum_diff_words(0, a, &naddr[12], 2);
			*a = *(__u32 *)&naddr[12];
			*ocsum = csum_update(*ocsum, diff_o);
		}
	} else {
		__u32 *a = (__u32 *)oaddr;

		if ((void *)(a + 4) > data_end)
			return 0;
		if (addr_equal(oaddr, match)) {
			diff_o = csum_diff_words(0, a, naddr, 8);
			__builtin_memcpy(a, naddr, 16);
			diff_icmp += diff_o; /* the ICMPv6 pseudo-header */
		}
	}
	{
		__u16 *c = (__u16 *)(icmp + 2);

		*c = csum_update(*c, diff_icmp);
	}
	return 1;
}

#endif /* __SLUICE_ICMP_H */
