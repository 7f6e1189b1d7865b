/*
 * parse.h: Ethernet (+ one VLAN tag) -> IPv4 / IPv6 -> TCP / UDP parsing,
 * shared by every attach point that sees whole frames (XDP, TC).
 *
 * Every header is bounds-checked against data_end before it is read, and
 * every length field against the bytes that are really there, so a parse
 * never reads past the packet whatever the bytes say. The parser only reads:
 * it never writes to the packet.
 */
#ifndef __SLUICE_PARSE_H
#define __SLUICE_PARSE_H

#include "common.h"
#include "config.h"
#include "structs.h"

/* 802.1Q / 802.1ad tag following the MAC addresses (not in the UAPI). */
struct vlan_hdr {
	__be16 tci;
	__be16 encap_proto;
};

/* Fragment offset bits of iphdr.frag_off (host order). */
#define IPV4_FRAG_OFFSET 0x1fff
#define IPV4_MORE_FRAGMENTS 0x2000
#define IPV4_DONT_FRAGMENT 0x4000

/* What parse_packet found. Offsets are from the start of the frame. */
struct packet {
	void *data;
	void *data_end;
	__u32 len;		/* frame length in bytes */
	__be16 l3_proto;	/* EtherType after any VLAN tag */
	__u16 l3_off;		/* IP header */
	__u16 l4_off;		/* TCP / UDP / ICMP header; 0 if not parsed or a fragment */
	__u16 ip_len;		/* IP packet length (header included), within the frame */
	__u8 l4_proto;		/* IP protocol / IPv6 next header; 0 if not IP */
	__u8 tcp_flags;		/* TCP flags byte (FIN 0x01, SYN 0x02, RST 0x04, ACK 0x10) */
	__u8 ports;		/* sport/dport are valid, even if the L4 header is malformed */
	__u8 _pad[3];
	__be16 sport;		/* TCP / UDP ports, network order */
	__be16 dport;
};

#define TCP_FLAG_FIN 0x01
#define TCP_FLAG_SYN 0x02
#define TCP_FLAG_RST 0x04
#define TCP_FLAG_ACK 0x10

/*
 * Parses the TCP or UDP header at l4, which has room bytes of IP payload
 * behind it (room never reaches past the frame). Returns 0, or -1 when the
 * header does not fit.
 */
static __always_inline int parse_l4(struct packet *pkt, void *l4, __u32 room)
{
	/* The ports come first in both: keep them for events about malformed packets. */
	if (l4 + 4 <= pkt->data_end && room >= 4) {
		pkt->sport = ((__be16 *)l4)[0];
		pkt->dport = ((__be16 *)l4)[1];
		pkt->ports = 1;
	}
	if (pkt->l4_proto == IPPROTO_TCP) {
		struct tcphdr *th = l4;
		__u32 hlen;

		if ((void *)(th + 1) > pkt->data_end || room < sizeof(*th))
			return -1;
		hlen = th->doff * 4;
		if (hlen < sizeof(*th) || hlen > room)
			return -1;
		pkt->tcp_flags = ((__u8 *)th)[13];
		return 0;
	}

	/* IPPROTO_UDP */
	struct udphdr *uh = l4;

	if ((void *)(uh + 1) > pkt->data_end || room < sizeof(*uh))
		return -1;
	return 0;
}

static __always_inline enum counter_id parse_ipv4(struct packet *pkt)
{
	struct iphdr *ip4 = pkt->data + pkt->l3_off;
	__u32 hlen, tot_len;

	if ((void *)(ip4 + 1) > pkt->data_end)
		return COUNTER_MALFORMED_L3;
	if (ip4->version != 4 || ip4->ihl < 5)
		return COUNTER_MALFORMED_L3;
	hlen = ip4->ihl * 4;
	tot_len = bpf_ntohs(ip4->tot_len);
	/* tot_len may be shorter than the frame (Ethernet padding), not longer. */
	if (tot_len < hlen || pkt->l3_off + tot_len > pkt->len)
		return COUNTER_MALFORMED_L3;

	pkt->l4_proto = ip4->protocol;
	pkt->ip_len = tot_len;
	/*
	 * Fragments are not ours: only the first carries the L4 header, and
	 * the others could not follow it to the same backend.
	 */
	if (ip4->frag_off & bpf_htons(IPV4_FRAG_OFFSET | IPV4_MORE_FRAGMENTS))
		return COUNTER_IPV4_OTHER;
	pkt->l4_off = pkt->l3_off + hlen;
	if (pkt->l4_proto != IPPROTO_TCP && pkt->l4_proto != IPPROTO_UDP)
		return COUNTER_IPV4_OTHER;

	if (parse_l4(pkt, (void *)ip4 + hlen, tot_len - hlen) < 0)
		return COUNTER_MALFORMED_L4;
	return pkt->l4_proto == IPPROTO_TCP ? COUNTER_IPV4_TCP : COUNTER_IPV4_UDP;
}

/* Extension headers are not walked yet: they count as COUNTER_IPV6_OTHER. */
static __always_inline enum counter_id parse_ipv6(struct packet *pkt)
{
	struct ipv6hdr *ip6 = pkt->data + pkt->l3_off;
	__u32 payload;

	if ((void *)(ip6 + 1) > pkt->data_end)
		return COUNTER_MALFORMED_L3;
	if (ip6->version != 6)
		return COUNTER_MALFORMED_L3;
	payload = bpf_ntohs(ip6->payload_len);
	if (pkt->l3_off + sizeof(*ip6) + payload > pkt->len)
		return COUNTER_MALFORMED_L3;

	pkt->l4_proto = ip6->nexthdr;
	pkt->ip_len = sizeof(*ip6) + payload;
	pkt->l4_off = pkt->l3_off + sizeof(*ip6);
	if (pkt->l4_proto != IPPROTO_TCP && pkt->l4_proto != IPPROTO_UDP)
		return COUNTER_IPV6_OTHER;

	if (parse_l4(pkt, ip6 + 1, payload) < 0)
		return COUNTER_MALFORMED_L4;
	return pkt->l4_proto == IPPROTO_TCP ? COUNTER_IPV6_TCP : COUNTER_IPV6_UDP;
}

/*
 * Parses the frame starting at data into *pkt and says which counter the
 * packet belongs to. len is the whole frame's length: data_end - data in XDP,
 * skb->len in TC, where only [data, data_end) is directly readable and every
 * header read is checked against data_end. Never fails: anything it cannot
 * make sense of is one of the COUNTER_MALFORMED_* or COUNTER_NON_IP outcomes.
 */
static __always_inline enum counter_id parse_packet(struct packet *pkt, void *data, void *data_end, __u32 len)
{
	struct ethhdr *eth = data;
	__be16 proto;
	__u16 off = sizeof(*eth);

	pkt->data = data;
	pkt->data_end = data_end;
	pkt->len = len;

	if ((void *)(eth + 1) > data_end)
		return COUNTER_MALFORMED_L2;
	proto = eth->h_proto;

	if (node_config.vlan &&
	    (proto == bpf_htons(ETH_P_8021Q) || proto == bpf_htons(ETH_P_8021AD))) {
		struct vlan_hdr *vh = (void *)(eth + 1);

		if ((void *)(vh + 1) > data_end)
			return COUNTER_MALFORMED_L2;
		proto = vh->encap_proto;
		off += sizeof(*vh);
	}

	pkt->l3_proto = proto;
	pkt->l3_off = off;
	if (proto == bpf_htons(ETH_P_IP))
		return parse_ipv4(pkt);
	if (proto == bpf_htons(ETH_P_IPV6))
		return parse_ipv6(pkt);
	return COUNTER_NON_IP;
}

/*
 * Makes the first bytes of the skb (headers) directly accessible. Returns 0,
 * or -1 if that failed.
 */
static __always_inline int tc_pull_headers(struct __sk_buff *skb)
{
	__u32 want = skb->len < 128 ? skb->len : 128;

	if ((void *)(long)skb->data + want <= (void *)(long)skb->data_end)
		return 0;
	return bpf_skb_pull_data(skb, want) < 0 ? -1 : 0;
}

#endif /* __SLUICE_PARSE_H */
