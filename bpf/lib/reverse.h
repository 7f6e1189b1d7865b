/*
 * reverse.h: the reply path at TC egress on the external devices. A reply
 * backend -> client of a translated flow gets its source rewritten back to
 * the frontend (and marks the flow established); an ICMP error about a
 * client -> backend packet is translated back to the frontend. Everything
 * else passes untouched.
 */
#ifndef __SLUICE_REVERSE_H
#define __SLUICE_REVERSE_H

#include "common.h"
#include "structs.h"
#include "counters.h"
#include "forward.h"
#include "icmp.h"
#include "lb.h"
#include "nat.h"
#include "parse.h"

static __always_inline int tc_reverse(struct __sk_buff *skb)
{
	struct packet pkt = {};
	struct ct_entry *re;
	struct ct_key k;
	enum counter_id class;
	__u8 addr[16];
	__be16 port;

	if (tc_pull_headers(skb) < 0)
		return TCX_NEXT;
	class = parse_packet(&pkt, (void *)(long)skb->data, (void *)(long)skb->data_end, skb->len);
	switch (class) {
	case COUNTER_IPV4_TCP:
	case COUNTER_IPV4_UDP:
	case COUNTER_IPV6_TCP:
	case COUNTER_IPV6_UDP:
		break;
	case COUNTER_IPV4_OTHER:
	case COUNTER_IPV6_OTHER:
		if (pkt.l4_off && (pkt.l4_proto == IPPROTO_ICMP || pkt.l4_proto == IPPROTO_ICMPV6) &&
		    (pkt.l4_proto == IPPROTO_ICMP) == (class == COUNTER_IPV4_OTHER) && icmp_error_xlate(&pkt, 0))
			counter_add(COUNTER_ICMP_ERR_OUT, pkt.len);
		return TCX_NEXT;
	default:
		return TCX_NEXT;
	}

	if (ct_key_from_packet(&k, &pkt, pkt.data + pkt.l3_off) < 0)
		return TCX_NEXT;
	re = lb_reverse(&k, pkt.tcp_flags, pkt.len);
	if (!re)
		return TCX_NEXT;
	addr_copy(addr, re->nat_addr);
	port = re->nat_port;
	if (tc_nat(skb, &pkt, NAT_SRC, addr, port) == 0)
		counter_add(COUNTER_REV_NAT, pkt.len);
	return TCX_NEXT;
}

#endif /* __SLUICE_REVERSE_H */
