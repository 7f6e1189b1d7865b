/*
 * redirect.h: sending a rewritten packet from TC straight out of the device
 * the route to its new destination takes, past the kernel's input path (which
 * drops a packet from one of the node's own addresses as a martian, and would
 * not route a packet it has to tunnel): bpf_fib_lookup picks the device,
 * bpf_redirect_neigh resolves the next hop's link-layer address.
 */
#ifndef __SLUICE_REDIRECT_H
#define __SLUICE_REDIRECT_H

#include "common.h"
#include "ct.h"

#ifndef AF_INET
#define AF_INET 2
#define AF_INET6 10
#endif

/*
 * Redirects the packet (destination daddr, source saddr, l4proto) out of the
 * route to daddr. Returns the TC verdict (TC_ACT_REDIRECT), or -1 without a
 * route. The lookup is the forwarding one: the node forwards (IPv4 and IPv6
 * forwarding on, as a Kubernetes node has them).
 */
static __always_inline long tc_redirect_route(struct __sk_buff *skb, __u8 l4proto, const __u8 *daddr, const __u8 *saddr)
{
	struct bpf_fib_lookup fib = {};
	long ret;

	fib.ifindex = skb->ingress_ifindex;
	fib.l4_protocol = l4proto;
	/*
	 * tot_len stays 0: with a length the kernel compares it to the route's
	 * MTU and refuses a full-size frame or a GRO aggregate; without one it
	 * checks the skb itself on the way out (GSO included).
	 */
	if (addr_is_v4(daddr)) {
		fib.family = AF_INET;
		fib.ipv4_src = ((const __u32 *)saddr)[3];
		fib.ipv4_dst = ((const __u32 *)daddr)[3];
	} else {
		fib.family = AF_INET6;
		__builtin_memcpy(fib.ipv6_src, saddr, 16);
		__builtin_memcpy(fib.ipv6_dst, daddr, 16);
	}
	ret = bpf_fib_lookup(skb, &fib, sizeof(fib), 0);
	if (ret != BPF_FIB_LKUP_RET_SUCCESS && ret != BPF_FIB_LKUP_RET_NO_NEIGH)
		return -1;
	return bpf_redirect_neigh(fib.ifindex, 0, 0, 0);
}

#endif /* __SLUICE_REDIRECT_H */
