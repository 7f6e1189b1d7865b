/*
 * dsr.h: direct server return to backends on other nodes, over IPIP (IPv6 in
 * IPv6 for IPv6).
 *
 * The node that receives a client's packet for a DSR frontend (FRONTEND_F_DSR)
 * and picks a backend on another node DNATs it to that backend as usual and
 * tunnels it to the backend's node (backend_nodes): the outer source is the
 * frontend's address and the outer IPv4 ID (IPv6 flow label) its port — what
 * the backend's node needs to answer as the frontend. That node decapsulates
 * at TC ingress, records the flow in its conntrack (original: client ->
 * frontend, reply: backend -> client), and lets the kernel deliver the inner
 * packet to the backend; the reply leaves through its own TC egress, rewritten
 * to come from the frontend, straight to the client. The network must carry
 * packets from the frontend's address out of every node (no strict
 * anti-spoofing), and the path must take the 20 (40) bytes of the outer
 * header.
 */
#ifndef __SLUICE_DSR_H
#define __SLUICE_DSR_H

#include "common.h"
#include "structs.h"
#include "maps.h"
#include "counters.h"
#include "csum.h"
#include "ct.h"
#include "lb.h"
#include "parse.h"

#ifndef BPF_F_ADJ_ROOM_ENCAP_L3_IPV4
#define BPF_F_ADJ_ROOM_ENCAP_L3_IPV4 (1ULL << 1)
#define BPF_F_ADJ_ROOM_ENCAP_L3_IPV6 (1ULL << 2)
#endif

/*
 * Puts the (DNATed) packet in an IPIP / IPv6-in-IPv6 header to node, from
 * frontend fe with its port fport in the IPv4 ID / IPv6 flow label. Returns 0,
 * or -1 (nothing sent: drop).
 */
static __always_inline int tc_dsr_encap(struct __sk_buff *skb, const struct packet *pkt, const __u8 *fe, __be16 fport,
					const __u8 *node)
{
	__u32 inner = skb->len - sizeof(struct ethhdr);

	if (pkt->l3_off != sizeof(struct ethhdr) || addr_is_v4(node) != addr_is_v4(fe))
		return -1; /* a VLAN tag, or mixed families */
	if (addr_is_v4(node)) {
		struct iphdr ip = {};

		ip.version = 4;
		ip.ihl = 5;
		ip.ttl = 64;
		ip.protocol = IPPROTO_IPIP;
		ip.tot_len = bpf_htons(inner + sizeof(ip));
		ip.id = fport;
		ip.saddr = ((const __u32 *)fe)[3];
		ip.daddr = ((const __u32 *)node)[3];
		ip.check = ~csum_fold32(csum_add_words(0, &ip, sizeof(ip)));
		if (bpf_skb_adjust_room(skb, sizeof(ip), BPF_ADJ_ROOM_MAC, BPF_F_ADJ_ROOM_ENCAP_L3_IPV4))
			return -1;
		return bpf_skb_store_bytes(skb, sizeof(struct ethhdr), &ip, sizeof(ip), 0) ? -1 : 0;
	}

	struct ipv6hdr ip6 = {};

	ip6.version = 6;
	ip6.flow_lbl[1] = ((const __u8 *)&fport)[0];
	ip6.flow_lbl[2] = ((const __u8 *)&fport)[1];
	ip6.payload_len = bpf_htons(inner);
	ip6.nexthdr = IPPROTO_IPV6;
	ip6.hop_limit = 64;
	__builtin_memcpy(&ip6.saddr, fe, 16);
	__builtin_memcpy(&ip6.daddr, node, 16);
	if (bpf_skb_adjust_room(skb, sizeof(ip6), BPF_ADJ_ROOM_MAC, BPF_F_ADJ_ROOM_ENCAP_L3_IPV6))
		return -1;
	return bpf_skb_store_bytes(skb, sizeof(struct ethhdr), &ip6, sizeof(ip6), 0) ? -1 : 0;
}

/*
 * Decides on and records the DSR flow of the tunnelled packet k (the inner
 * client -> backend, as on the wire), whose outer header names frontend
 * fe:fport. An established flow is found by its reply entry (backend ->
 * client, nat = its frontend), which needs nothing of the outer header: only a
 * flow's first packet, never a GSO aggregate, relies on fport (GSO may have
 * counted the outer IPv4 ID up). A new flow must be to a DSR frontend, and
 * its reply tuple free or already its own; it gets an original entry (client ->
 * frontend, nat = the backend) and a reply entry (nat = the frontend), which
 * the reply path (reverse.h) translates with. Returns 1 to decapsulate, 0 if
 * it is no DSR flow of ours (left alone), -1 to drop (the reply tuple is a
 * live flow's).
 */
static __attribute__((noinline)) int dsr_record(const struct ct_key *k, const __u8 *fe, __be16 fport, __u8 flags,
						 __u32 len)
{
	struct lb_scratch *s = bpf_map_lookup_elem(&lb_scratch, &(__u32){0});
	struct ct_entry *re, *oe;
	struct frontend *f;
	__u64 now;

	if (!s)
		return 0;
	now = clock_now();
	ct_reply_key(&s->snat_key, k, k->daddr, k->dport);
	re = bpf_map_lookup_elem(&conntrack, &s->snat_key);
	if (re && !ct_expired(re, k->proto, now) && !ct_reopened(re, k->proto, flags)) {
		s->snat_key = *k;
		addr_copy(s->snat_key.daddr, re->nat_addr);
		s->snat_key.dport = re->nat_port;
		s->snat_key.dir = CT_DIR_ORIGINAL;
		oe = bpf_map_lookup_elem(&conntrack, &s->snat_key);
		if (oe && addr_equal(oe->nat_addr, k->daddr) && oe->nat_port == k->dport) {
			ct_touch(oe, k->proto, flags, 0, now, len);
			return 1;
		}
		if (ct_live(re, k->proto, now) && (!addr_equal(re->nat_addr, fe) || re->nat_port != fport))
			return -1; /* another live flow's reply tuple: its replies must not change source */
	}

	f = lb_frontend_of(fe, fport, k->proto, SCOPE_EXTERNAL);
	if (!f || !(f->flags & FRONTEND_F_DSR))
		return 0;
	__builtin_memset(&s->entry, 0, sizeof(s->entry));
	s->entry.last_seen = now;
	s->entry.created = now;
	s->entry.state = ct_new_state(k->proto, flags);
	s->entry.service_id = f->service_id;
	addr_copy(s->entry.nat_addr, k->daddr);
	s->entry.nat_port = k->dport;
	s->entry.packets = 1;
	s->entry.bytes = len;
	s->snat_key = *k;
	addr_copy(s->snat_key.daddr, fe);
	s->snat_key.dport = fport;
	s->snat_key.dir = CT_DIR_ORIGINAL;
	bpf_map_update_elem(&conntrack, &s->snat_key, &s->entry, BPF_ANY);

	ct_reply_key(&s->snat_key, k, k->daddr, k->dport);
	addr_copy(s->entry.nat_addr, fe);
	s->entry.nat_port = fport;
	s->entry.packets = 0;
	s->entry.bytes = 0;
	bpf_map_update_elem(&conntrack, &s->snat_key, &s->entry, BPF_ANY);
	return 1;
}

/*
 * TC ingress of an external device: decapsulates an IPIP (IPv6-in-IPv6)
 * packet that another node's DSR sent to this one, after recording its flow
 * (dsr_record). Returns 1 (decapsulated: continue with the inner packet), 0
 * (not DSR for this node: untouched, the kernel's tunnels may have it) or -1
 * (drop).
 */
static __always_inline int tc_dsr_decap(struct __sk_buff *skb, const struct packet *pkt)
{
	__u8 fe[16] __attribute__((aligned(4))), node[16] __attribute__((aligned(4)));
	const __u8 *own;
	struct packet in = {};
	enum counter_id class;
	struct ct_key k;
	__be16 fport;
	__u32 hlen;
	int v4 = pkt->l3_proto == bpf_htons(ETH_P_IP), ret;

	if (pkt->l3_off != sizeof(struct ethhdr))
		return 0;
	if (v4) {
		struct iphdr *ip4 = pkt->data + pkt->l3_off;

		if ((void *)(ip4 + 1) > pkt->data_end || ip4->ihl != 5)
			return 0;
		addr_from_v4(fe, ip4->saddr);
		addr_from_v4(node, ip4->daddr);
		fport = ip4->id;
		hlen = sizeof(*ip4);
	} else {
		struct ipv6hdr *ip6 = pkt->data + pkt->l3_off;

		if ((void *)(ip6 + 1) > pkt->data_end)
			return 0;
		__builtin_memcpy(fe, &ip6->saddr, 16);
		__builtin_memcpy(node, &ip6->daddr, 16);
		((__u8 *)&fport)[0] = ip6->flow_lbl[1];
		((__u8 *)&fport)[1] = ip6->flow_lbl[2];
		hlen = sizeof(*ip6);
	}
	own = lb_node_addr(node);
	if (!own || !addr_equal(own, node))
		return 0;

	/* The inner headers, in place: outer Ethernet and IP, inner IP and L4. */
	if (bpf_skb_pull_data(skb, skb->len < 200 ? skb->len : 200) < 0)
		return 0;
	in.data = (void *)(long)skb->data;
	in.data_end = (void *)(long)skb->data_end;
	in.len = skb->len;
	in.l3_proto = pkt->l3_proto;
	in.l3_off = pkt->l3_off + hlen;
	class = v4 ? parse_ipv4(&in) : parse_ipv6(&in);
	if (class != (v4 ? COUNTER_IPV4_TCP : COUNTER_IPV6_TCP) && class != (v4 ? COUNTER_IPV4_UDP : COUNTER_IPV6_UDP))
		return 0;
	if (ct_key_from_packet(&k, &in, in.data + in.l3_off) < 0)
		return 0;
	ret = dsr_record(&k, fe, fport, in.tcp_flags, in.len - hlen);
	if (ret <= 0)
		return ret;
	if (bpf_skb_adjust_room(skb, -(__s32)hlen, BPF_ADJ_ROOM_MAC, 0))
		return -1;
	counter_add(COUNTER_DSR_DECAP, in.len - hlen);
	return 1;
}

#endif /* __SLUICE_DSR_H */
