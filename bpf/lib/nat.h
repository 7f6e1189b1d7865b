/*
 * nat.h: rewriting a packet's source or destination address and port.
 *
 * XDP sees complete frames from the wire, so it updates the checksums by
 * hand (RFC 1624). TC uses the kernel's checksum helpers instead: a reply
 * from a local veth is often CHECKSUM_PARTIAL (the L4 field holds only the
 * pseudo-header sum) and the helpers do the right thing for every
 * skb->ip_summed state.
 */
#ifndef __SLUICE_NAT_H
#define __SLUICE_NAT_H

#include "common.h"
#include "csum.h"
#include "parse.h"

#define NAT_SRC 1
#define NAT_DST 0

/*
 * Rewrites the source (which == NAT_SRC) or destination address of the
 * parsed TCP/UDP packet to addr (16 bytes; the last 4 for IPv4) and its port
 * to port, in an XDP frame. Returns 0, or -1 if a header is out of bounds
 * (nothing written then).
 */
static __always_inline int xdp_nat(struct packet *pkt, int which, const __u8 *addr, __be16 port)
{
	void *data = pkt->data, *data_end = pkt->data_end;
	__u16 *l4csum, *pfield;
	__u32 diff;
	void *l4 = data + pkt->l4_off;

	if (pkt->l4_proto == IPPROTO_TCP) {
		struct tcphdr *th = l4;

		if ((void *)(th + 1) > data_end)
			return -1;
		l4csum = &th->check;
		pfield = which == NAT_SRC ? &th->source : &th->dest;
	} else {
		struct udphdr *uh = l4;

		if ((void *)(uh + 1) > data_end)
			return -1;
		l4csum = &uh->check;
		pfield = which == NAT_SRC ? &uh->source : &uh->dest;
	}

	if (pkt->l3_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip4 = data + pkt->l3_off;
		__be32 *afield, new = ((const __u32 *)addr)[3];

		if ((void *)(ip4 + 1) > data_end)
			return -1;
		afield = which == NAT_SRC ? &ip4->saddr : &ip4->daddr;
		diff = csum_diff_words(0, afield, &new, 2);
		*afield = new;
		ip4->check = csum_update(ip4->check, diff);
	} else {
		struct ipv6hdr *ip6 = data + pkt->l3_off;
		__u32 *afield;
		const __u32 *w = (const __u32 *)addr;

		if ((void *)(ip6 + 1) > data_end)
			return -1;
		afield = which == NAT_SRC ? (__u32 *)&ip6->saddr : (__u32 *)&ip6->daddr;
		diff = csum_diff_words(0, afield, addr, 8);
		afield[0] = w[0];
		afield[1] = w[1];
		afield[2] = w[2];
		afield[3] = w[3];
	}

	diff = csum_diff16(diff, *pfield, port);
	*pfield = port;
	if (pkt->l4_proto == IPPROTO_UDP) {
		__u16 c;

		/* Over IPv4, 0 means "no checksum": keep it so. */
		if (*l4csum == 0 && pkt->l3_proto == bpf_htons(ETH_P_IP))
			return 0;
		c = csum_update(*l4csum, diff);
		*l4csum = c ? c : 0xffff;
	} else {
		*l4csum = csum_update(*l4csum, diff);
	}
	return 0;
}

/*
 * The same for a TC program, with the checksum helpers. Returns 0 or a
 * negative error; packet pointers are invalid afterwards.
 */
static __always_inline int tc_nat(struct __sk_buff *skb, struct packet *pkt, int which, const __u8 *addr, __be16 port)
{
	__u32 l3 = pkt->l3_off, l4 = pkt->l4_off;
	__u32 csum_off, port_off;
	__u64 l4flags = 0;
	__be16 old_port;
	int ret;

	if (pkt->l4_proto == IPPROTO_TCP) {
		csum_off = l4 + offsetof(struct tcphdr, check);
	} else {
		csum_off = l4 + offsetof(struct udphdr, check);
		l4flags = BPF_F_MARK_MANGLED_0;
	}
	port_off = l4 + (which == NAT_SRC ? 0 : 2);
	old_port = which == NAT_SRC ? pkt->sport : pkt->dport;

	if (pkt->l3_proto == bpf_htons(ETH_P_IP)) {
		__u32 addr_off = l3 + (which == NAT_SRC ? offsetof(struct iphdr, saddr) : offsetof(struct iphdr, daddr));
		__be32 old, new = ((const __u32 *)addr)[3];

		if (bpf_skb_load_bytes(skb, addr_off, &old, 4) < 0)
			return -1;
		ret = bpf_l4_csum_replace(skb, csum_off, old, new, l4flags | BPF_F_PSEUDO_HDR | 4);
		if (ret < 0)
			return ret;
		ret = bpf_l3_csum_replace(skb, l3 + offsetof(struct iphdr, check), old, new, 4);
		if (ret < 0)
			return ret;
		ret = bpf_skb_store_bytes(skb, addr_off, &new, 4, 0);
		if (ret < 0)
			return ret;
	} else {
		__u32 addr_off = l3 + (which == NAT_SRC ? offsetof(struct ipv6hdr, saddr) : offsetof(struct ipv6hdr, daddr));
		__u8 old[16], new[16];
		__s64 diff;

		if (bpf_skb_load_bytes(skb, addr_off, old, 16) < 0)
			return -1;
		__builtin_memcpy(new, addr, 16);
		diff = bpf_csum_diff((__be32 *)old, 16, (__be32 *)new, 16, 0);
		ret = bpf_l4_csum_replace(skb, csum_off, 0, diff, l4flags | BPF_F_PSEUDO_HDR);
		if (ret < 0)
			return ret;
		ret = bpf_skb_store_bytes(skb, addr_off, new, 16, 0);
		if (ret < 0)
			return ret;
	}

	ret = bpf_l4_csum_replace(skb, csum_off, old_port, port, l4flags | 2);
	if (ret < 0)
		return ret;
	return bpf_skb_store_bytes(skb, port_off, &port, 2, 0);
}

#endif /* __SLUICE_NAT_H */
