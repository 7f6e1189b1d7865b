/*
 * reply.h: answering a packet for a frontend without a usable backend, as
 * kube-proxy's REJECT does: TCP with a RST, UDP with an ICMP / ICMPv6
 * destination unreachable (port unreachable). The answer is built in place
 * in the XDP frame and sent back out the same device (XDP_TX): addresses and
 * MACs swapped, any VLAN tag kept.
 */
#ifndef __SLUICE_REPLY_H
#define __SLUICE_REPLY_H

#include "common.h"
#include "csum.h"
#include "parse.h"

#define REPLY_TTL 64
#define ICMP_DEST_UNREACH 3
#define ICMP_PORT_UNREACH 3
#define ICMPV6_DEST_UNREACH 1
#define ICMPV6_PORT_UNREACH 4
#define IPV6_MIN_MTU 1280

/* Swaps the Ethernet addresses at data (bounds checked by the caller). */
static __always_inline void swap_macs(struct ethhdr *eth)
{
	__u8 tmp[ETH_ALEN];

	__builtin_memcpy(tmp, eth->h_source, ETH_ALEN);
	__builtin_memcpy(eth->h_source, eth->h_dest, ETH_ALEN);
	__builtin_memcpy(eth->h_dest, tmp, ETH_ALEN);
}

/* Adds the __wsum w (from bpf_csum_diff) to the 32-bit accumulator s. */
static __always_inline __u32 csum_add_wsum(__u32 s, __u32 w)
{
	s += w;
	return s + (s < w);
}

/*
 * Sums len bytes (len <= IPV6_MIN_MTU) of the packet at offset off into s:
 * 64-byte blocks through bpf_csum_diff, then 16-bit words, then an odd byte.
 */
static __always_inline __u32 csum_packet(void *data, void *data_end, __u32 off, __u32 len, __u32 s)
{
	__u32 end = off + len;

	for (int i = 0; i < IPV6_MIN_MTU / 64; i++) {
		void *p = data + off;

		if (off + 64 > end || off > 0xffff || p + 64 > data_end)
			break;
		s = csum_add_wsum(s, bpf_csum_diff(0, 0, p, 64, 0));
		off += 64;
	}
	for (int i = 0; i < 32; i++) {
		__u16 *p = data + off;

		if (off + 2 > end || off > 0xffff || (void *)(p + 1) > data_end)
			break;
		s += *p;
		off += 2;
	}
	if (off < end && off <= 0xffff) {
		__u8 *p = data + off;

		if ((void *)(p + 1) <= data_end) {
			__u16 w = 0;

			*(__u8 *)&w = *p; /* the odd byte is the high byte of a word, padded */
			s += w;
		}
	}
	return s;
}

/*
 * Turns the TCP packet at pkt into a RST for its sender (RFC 9293 3.10.7.1:
 * seq = the segment's ACK if it had one, else seq 0 and ACK of everything it
 * occupied). Returns 0 (send with XDP_TX), or -1 to drop: never answer a RST.
 */
static __always_inline int xdp_reply_rst(struct xdp_md *ctx, struct packet *pkt)
{
	void *data = pkt->data, *data_end = pkt->data_end;
	struct ethhdr *eth = data;
	struct tcphdr *th = data + pkt->l4_off;
	__u32 seq, ack_seq, seglen, hlen, newlen, s;
	__u8 flags;
	__be16 sport, dport;
	struct tcphdr *nth;

	if ((void *)(eth + 1) > data_end || (void *)(th + 1) > data_end)
		return -1;
	flags = pkt->tcp_flags;
	if (flags & TCP_FLAG_RST)
		return -1;
	sport = th->source;
	dport = th->dest;
	seq = bpf_ntohl(th->seq);
	ack_seq = th->ack_seq;
	hlen = th->doff * 4;
	seglen = pkt->ip_len - (pkt->l4_off - pkt->l3_off) - hlen;
	seglen += !!(flags & TCP_FLAG_SYN) + !!(flags & TCP_FLAG_FIN);
	swap_macs(eth);

	if (pkt->l3_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip4 = data + pkt->l3_off;
		__be32 saddr, daddr;

		if ((void *)(ip4 + 1) > data_end)
			return -1;
		saddr = ip4->saddr;
		daddr = ip4->daddr;
		ip4->version = 4;
		ip4->ihl = 5;
		ip4->tos = 0;
		ip4->tot_len = bpf_htons(sizeof(*ip4) + sizeof(*th));
		ip4->id = 0;
		ip4->frag_off = bpf_htons(IPV4_DONT_FRAGMENT);
		ip4->ttl = REPLY_TTL;
		ip4->protocol = IPPROTO_TCP;
		ip4->check = 0;
		ip4->saddr = daddr;
		ip4->daddr = saddr;
		ip4->check = ~csum_fold32(csum_add_words(0, ip4, sizeof(*ip4)));
		nth = (void *)(ip4 + 1);
		s = csum_add_words(0, &ip4->saddr, 8);
		s += csum_be16(IPPROTO_TCP) + csum_be16(sizeof(*th));
		newlen = pkt->l3_off + sizeof(*ip4) + sizeof(*th);
	} else {
		struct ipv6hdr *ip6 = data + pkt->l3_off;
		struct in6_addr a;

		if ((void *)(ip6 + 1) > data_end)
			return -1;
		a = ip6->saddr;
		ip6->saddr = ip6->daddr;
		ip6->daddr = a;
		*(__be32 *)ip6 = bpf_htonl(0x60000000);
		ip6->payload_len = bpf_htons(sizeof(*th));
		ip6->nexthdr = IPPROTO_TCP;
		ip6->hop_limit = REPLY_TTL;
		nth = (void *)(ip6 + 1);
		s = csum_add_words(0, &ip6->saddr, 32);
		s += csum_be16(IPPROTO_TCP) + csum_be16(sizeof(*th));
		newlen = pkt->l3_off + sizeof(*ip6) + sizeof(*th);
	}

	if ((void *)(nth + 1) > data_end)
		return -1;
	__builtin_memset(nth, 0, sizeof(*nth));
	nth->source = dport;
	nth->dest = sport;
	nth->doff = 5;
	nth->rst = 1;
	if (flags & TCP_FLAG_ACK) {
		nth->seq = ack_seq;
	} else {
		nth->ack_seq = bpf_htonl(seq + seglen);
		nth->ack = 1;
	}
	nth->check = ~csum_fold32(csum_add_words(s, nth, sizeof(*nth)));

	if (newlen < pkt->len && bpf_xdp_adjust_tail(ctx, (int)newlen - (int)pkt->len) < 0)
		return -1;
	return 0;
}

/*
 * Turns the UDP packet at pkt into an ICMP (IPv4) or ICMPv6 port
 * unreachable for its sender, quoting the original IP header and 8 bytes
 * (IPv4) or as much of the original packet as fits in 1280 bytes (IPv6).
 * Returns 0 (send with XDP_TX) or -1 (drop: the frame may be half-built).
 */
static __always_inline int xdp_reply_unreach(struct xdp_md *ctx, struct packet *pkt)
{
	int v4 = pkt->l3_proto == bpf_htons(ETH_P_IP);
	__u32 l3 = pkt->l3_off, grow, quote, newlen, s = 0;
	void *data, *data_end;
	__u8 saddr[16], daddr[16];

	if (v4) {
		struct iphdr *ip4 = pkt->data + l3;

		if ((void *)(ip4 + 1) > pkt->data_end)
			return -1;
		__builtin_memcpy(saddr, &ip4->saddr, 4);
		__builtin_memcpy(daddr, &ip4->daddr, 4);
		grow = sizeof(struct iphdr) + 8;
		quote = pkt->l4_off - l3 + sizeof(struct udphdr);
	} else {
		struct ipv6hdr *ip6 = pkt->data + l3;

		if ((void *)(ip6 + 1) > pkt->data_end)
			return -1;
		__builtin_memcpy(saddr, &ip6->saddr, 16);
		__builtin_memcpy(daddr, &ip6->daddr, 16);
		grow = sizeof(struct ipv6hdr) + 8;
		quote = pkt->ip_len;
		if (quote > IPV6_MIN_MTU - grow)
			quote = IPV6_MIN_MTU - grow;
	}
	newlen = l3 + grow + quote;

	if (bpf_xdp_adjust_head(ctx, -(int)grow) < 0)
		return -1;
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	/* Move Ethernet (+ VLAN): 18 bytes always, the rest is rewritten below. */
	if (data + grow + 18 > data_end || l3 > 18)
		return -1;
	__builtin_memcpy(data, data + grow, 18);
	swap_macs(data);

	if (v4) {
		struct iphdr *ip4 = data + l3;
		__u8 *icmp = (void *)(ip4 + 1);

		if ((void *)(icmp + 8) > data_end)
			return -1;
		ip4->version = 4;
		ip4->ihl = 5;
		ip4->tos = 0xc0; /* internetwork control, as Linux sends ICMP */
		ip4->tot_len = bpf_htons(grow + quote);
		ip4->id = 0;
		ip4->frag_off = 0;
		ip4->ttl = REPLY_TTL;
		ip4->protocol = IPPROTO_ICMP;
		ip4->check = 0;
		__builtin_memcpy(&ip4->saddr, daddr, 4);
		__builtin_memcpy(&ip4->daddr, saddr, 4);
		ip4->check = ~csum_fold32(csum_add_words(0, ip4, sizeof(*ip4)));
		*(__u64 *)icmp = 0;
		icmp[0] = ICMP_DEST_UNREACH;
		icmp[1] = ICMP_PORT_UNREACH;
	} else {
		struct ipv6hdr *ip6 = data + l3;
		__u8 *icmp = (void *)(ip6 + 1);

		if ((void *)(icmp + 8) > data_end)
			return -1;
		*(__be32 *)ip6 = bpf_htonl(0x60000000);
		ip6->payload_len = bpf_htons(8 + quote);
		ip6->nexthdr = IPPROTO_ICMPV6;
		ip6->hop_limit = REPLY_TTL;
		__builtin_memcpy(&ip6->saddr, daddr, 16);
		__builtin_memcpy(&ip6->daddr, saddr, 16);
		*(__u64 *)icmp = 0;
		icmp[0] = ICMPV6_DEST_UNREACH;
		icmp[1] = ICMPV6_PORT_UNREACH;
		s = csum_add_words(0, &ip6->saddr, 32);
		s += csum_be16(8 + quote) + csum_be16(IPPROTO_ICMPV6);
	}

	/* Cut the frame after the quote before summing what remains. */
	if (bpf_xdp_adjust_tail(ctx, (int)newlen - (int)(pkt->len + grow)) < 0)
		return -1;
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	{
		__u32 icmp_off = l3 + grow - 8;
		__u16 *check = data + icmp_off + 2;

		s = csum_packet(data, data_end, icmp_off, 8 + quote, s);
		if ((void *)(check + 1) > data_end)
			return -1;
		*check = ~csum_fold32(s);
	}
	return 0;
}

#endif /* __SLUICE_REPLY_H */
