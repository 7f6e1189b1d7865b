/*
 * forward.h: the forward path, client -> frontend, for XDP and for its TC
 * ingress twin (packets XDP did not handle). Traffic that is not for a
 * frontend passes untouched; a flow to a frontend gets its destination
 * rewritten to the selected backend and is passed on for the kernel to
 * route; a frontend without a usable backend rejects (XDP answers, TC
 * drops). ICMP errors about our replies are translated back to the backend.
 */
#ifndef __SLUICE_FORWARD_H
#define __SLUICE_FORWARD_H

#include "common.h"
#include "structs.h"
#include "counters.h"
#include "events.h"
#include "icmp.h"
#include "lb.h"
#include "nat.h"
#include "parse.h"
#include "redirect.h"
#include "reply.h"
#include "dsr.h"

/* What the shared part decided. */
enum fwd_action {
	FWD_PASS = 0,		/* untouched (or already translated in place) */
	FWD_NAT,		/* rewrite the destination to res (and, res.snat, the source: TC only) */
	FWD_SNAT_REV,		/* a reply of an SNATed flow (TC only): source to res.snat_addr/port, destination to res.addr/port */
	FWD_REJECT,		/* no usable backend */
	FWD_DROP,		/* counted and reported already: drop */
};

/*
 * The attach-independent part: classifies the parsed packet, runs the load
 * balancer, counts, and translates ICMP errors in place (direct access).
 */
static __always_inline enum fwd_action forward_decide(struct packet *pkt, enum counter_id class, struct ct_key *k,
						      struct lb_result *res, __u32 ifindex, int tc, int internal)
{
	enum lb_verdict v;

	switch (class) {
	case COUNTER_IPV4_TCP:
	case COUNTER_IPV4_UDP:
	case COUNTER_IPV6_TCP:
	case COUNTER_IPV6_UDP:
		break;
	case COUNTER_IPV4_OTHER:
	case COUNTER_IPV6_OTHER:
		if (pkt->l4_off && (pkt->l4_proto == IPPROTO_ICMP || pkt->l4_proto == IPPROTO_ICMPV6) &&
		    (pkt->l4_proto == IPPROTO_ICMP) == (class == COUNTER_IPV4_OTHER) && icmp_error_xlate(pkt, 1))
			counter_add(COUNTER_ICMP_ERR_IN, pkt->len);
		return FWD_PASS;
	case COUNTER_MALFORMED_L4:
		/* Aimed at a frontend? Tell the agent; the kernel will drop it anyway. */
		if (pkt->ports && ct_key_from_packet(k, pkt, pkt->data + pkt->l3_off) == 0) {
			struct frontend *fe = lb_frontend(k, internal);

			if (fe)
				event_emit(EVENT_MALFORMED, COUNTER_MALFORMED_L4, k, fe->service_id, ifindex, pkt->len);
		}
		return FWD_PASS;
	default:
		return FWD_PASS;
	}

	if (ct_key_from_packet(k, pkt, pkt->data + pkt->l3_off) < 0)
		return FWD_PASS;
	v = lb_forward(k, pkt->tcp_flags, pkt->len, res, internal);
	if (v == LB_NOT_OURS && lb_snat_port(k->dport)) {
		struct snat_entry *e;

		/*
		 * Only TC translates replies of SNATed flows: their new source,
		 * the frontend, may be one of the node's own addresses (a node
		 * port), which the kernel's input path drops as a martian.
		 */
		if (!tc)
			return FWD_PASS;
		e = lb_snat_reverse(k, pkt->tcp_flags);
		if (!e)
			return FWD_PASS;
		addr_copy(res->addr, e->client);
		res->port = e->client_port;
		res->snat_addr = e->frontend;
		res->snat_port = e->frontend_port;
		counter_add(COUNTER_SNAT_REV, pkt->len);
		return FWD_SNAT_REV;
	}
	if (res->expired)
		counter_add(COUNTER_CT_EXPIRED, pkt->len);
	switch (v) {
	case LB_NEW:
		counter_add(COUNTER_FWD_NEW, pkt->len);
		return FWD_NAT;
	case LB_ESTABLISHED:
		counter_add(COUNTER_FWD_ESTABLISHED, pkt->len);
		return FWD_NAT;
	case LB_NO_BACKEND:
		return FWD_REJECT;
	case LB_CLASH:
		counter_add(COUNTER_CT_CLASH, pkt->len);
		event_emit(EVENT_CT_CLASH, COUNTER_CT_CLASH, k, res->service_id, ifindex, pkt->len);
		return FWD_DROP;
	case LB_SNAT_NO_PORT:
		counter_add(COUNTER_SNAT_NO_PORT, pkt->len);
		return FWD_DROP;
	case LB_DENIED:
		counter_add(COUNTER_SOURCE_DENIED, pkt->len);
		event_emit(EVENT_SOURCE_DENIED, COUNTER_SOURCE_DENIED, k, res->service_id, ifindex, pkt->len);
		return FWD_DROP;
	default:
		return FWD_PASS;
	}
}

static __always_inline int xdp_forward(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct lb_result res = {};
	struct packet pkt = {};
	struct ct_key k;
	enum counter_id class;
	enum counter_id outcome;
	__u32 len;

	class = parse_packet(&pkt, data, data_end, data_end - data);
	counter_add(class, pkt.len);
	switch (forward_decide(&pkt, class, &k, &res, ctx->ingress_ifindex, 0, 0)) {
	case FWD_NAT:
		/*
		 * A flow SNATed to a remote backend leaves with a source address
		 * of this node, which the kernel's input path drops as a martian,
		 * and a DSR flow in a tunnel: TC ingress translates and redirects
		 * them (their conntrack entry is written now).
		 */
		if (!res.snat && !res.dsr)
			xdp_nat(&pkt, NAT_DST, res.addr, res.port);
		return XDP_PASS;

	case FWD_REJECT:
		break;
	case FWD_DROP:
		return XDP_DROP;
	default:
		return XDP_PASS;
	}

	len = pkt.len;
	if (pkt.l4_proto == IPPROTO_TCP)
		outcome = xdp_reply_rst(ctx, &pkt) == 0 ? COUNTER_NO_BACKEND_RST : COUNTER_NO_BACKEND_DROP;
	else
		outcome = xdp_reply_unreach(ctx, &pkt) == 0 ? COUNTER_NO_BACKEND_ICMP : COUNTER_NO_BACKEND_DROP;
	counter_add(outcome, len);
	event_emit(EVENT_NO_BACKEND, outcome, &k, res.service_id, ctx->ingress_ifindex, len);
	return outcome == COUNTER_NO_BACKEND_DROP ? XDP_DROP : XDP_TX;
}

/*
 * TC ingress: like XDP, for what XDP did not handle or left to it (flows
 * SNATed to remote backends, both ways); rejects are dropped. internal: on a
 * pod's interface, for pod traffic the socket programs did not translate
 * (cluster IPs too, never SNATed).
 */
static __always_inline int tc_forward(struct __sk_buff *skb, int internal)
{
	long ret;
	struct lb_result res = {};
	struct packet pkt = {};
	struct ct_key k;
	enum counter_id class;
	/*
	 * Read once, up front: clang would otherwise merge the reads on the
	 * paths below into one through a ctx pointer plus offset, which the
	 * verifier rejects.
	 */
	__u32 ifindex = *(volatile __u32 *)&skb->ifindex;

	if (tc_pull_headers(skb) < 0)
		return TCX_NEXT;
	class = parse_packet(&pkt, (void *)(long)skb->data, (void *)(long)skb->data_end, skb->len);
	if (!internal && pkt.l4_off &&
	    ((class == COUNTER_IPV4_OTHER && pkt.l4_proto == IPPROTO_IPIP) ||
	     (class == COUNTER_IPV6_OTHER && pkt.l4_proto == IPPROTO_IPV6)))
		return tc_dsr_decap(skb, &pkt) < 0 ? TCX_DROP : TCX_NEXT;
	switch (forward_decide(&pkt, class, &k, &res, ifindex, 1, internal)) {
	case FWD_NAT:
		if (tc_nat(skb, &pkt, NAT_DST, res.addr, res.port) < 0 || !(res.snat || res.dsr))
			return TCX_NEXT;
		if (res.dsr) {
			/* k is the flow as the client sent it: the frontend is its destination. */
			if (tc_dsr_encap(skb, &pkt, k.daddr, k.dport, res.dsr_node) < 0)
				return TCX_DROP;
			ret = tc_redirect_route(skb, addr_is_v4(res.dsr_node) ? IPPROTO_IPIP : IPPROTO_IPV6, res.dsr_node, k.daddr);
			counter_add(ret < 0 ? COUNTER_NO_ROUTE : COUNTER_DSR_ENCAP, pkt.len);
			return ret < 0 ? TCX_DROP : ret;
		}
		if (tc_nat(skb, &pkt, NAT_SRC, res.snat_addr, res.snat_port) < 0)
			return TCX_DROP;
		ret = tc_redirect_route(skb, pkt.l4_proto, res.addr, res.snat_addr);
		counter_add(ret < 0 ? COUNTER_NO_ROUTE : COUNTER_SNAT_FWD, pkt.len);
		return ret < 0 ? TCX_DROP : ret;
	case FWD_SNAT_REV:
		if (tc_nat(skb, &pkt, NAT_DST, res.addr, res.port) < 0 ||
		    tc_nat(skb, &pkt, NAT_SRC, res.snat_addr, res.snat_port) < 0)
			return TCX_DROP;
		ret = tc_redirect_route(skb, pkt.l4_proto, res.addr, res.snat_addr);
		if (ret < 0)
			counter_add(COUNTER_NO_ROUTE, pkt.len);
		return ret < 0 ? TCX_DROP : ret;
	case FWD_REJECT:
		counter_add(COUNTER_NO_BACKEND_DROP, pkt.len);
		event_emit(EVENT_NO_BACKEND, COUNTER_NO_BACKEND_DROP, &k, res.service_id, ifindex, pkt.len);
		return TCX_DROP;
	case FWD_DROP:
		return TCX_DROP;
	default:
		return TCX_NEXT;
	}
}

#endif /* __SLUICE_FORWARD_H */
