/*
 * sock.h: socket-level load balancing, for the cgroup sock_addr programs
 * (sock.c). A connect() or an unconnected sendmsg() to a frontend gets the
 * selected backend as its destination before the kernel routes anything, so
 * the flow's packets carry the backend's address from the first one: no
 * per-packet translation, no conntrack. recvmsg() and getpeername() report the
 * frontend again (the sock_rev map), so the application sees the address it
 * asked for.
 *
 * Frontends are looked up in the internal scope (cluster IPs) and then the
 * external one (load-balancer and external IPs, node ports), as kube-proxy
 * serves all of them to pods and host processes. A frontend with source
 * ranges is left to the packet path, which checks them.
 *
 * The backend is chosen per socket: the Maglev slot from a hash of the socket
 * cookie, so every datagram of an unconnected UDP socket goes to one backend;
 * ClientIP affinity is kept per network namespace (one per pod; the host's
 * for host processes), under the service id with SOCK_AFFINITY_NETNS set.
 */
#ifndef __SLUICE_SOCK_H
#define __SLUICE_SOCK_H

#include "common.h"
#include "structs.h"
#include "maps.h"
#include "clock.h"
#include "counters.h"
#include "ct.h"
#include "hash.h"
#include "lb.h"

#ifndef ECONNREFUSED
#define ECONNREFUSED 111
#endif

/* Marks socket-path affinity entries: their client is a netns cookie, not an address. */
#define SOCK_AFFINITY_NETNS (1U << 31)

/* The cgroup programs' verdicts. */
#define SOCK_ALLOW 1
#define SOCK_REFUSE 0

/* The destination of ctx as a 16-byte address (IPv4-mapped for connect4 / sendmsg4). */
static __always_inline void sock_addr_get(struct bpf_sock_addr *ctx, int v4, __u8 *addr)
{
	__u32 *w = (__u32 *)addr;

	if (v4) {
		addr_from_v4(addr, ctx->user_ip4);
		return;
	}
	w[0] = ctx->user_ip6[0];
	w[1] = ctx->user_ip6[1];
	w[2] = ctx->user_ip6[2];
	w[3] = ctx->user_ip6[3];
}

static __always_inline void sock_addr_set(struct bpf_sock_addr *ctx, int v4, const __u8 *addr, __be16 port)
{
	const __u32 *w = (const __u32 *)addr;

	if (v4) {
		ctx->user_ip4 = w[3];
	} else {
		ctx->user_ip6[0] = w[0];
		ctx->user_ip6[1] = w[1];
		ctx->user_ip6[2] = w[2];
		ctx->user_ip6[3] = w[3];
	}
	ctx->user_port = (__u32)port;
}

/* The socket's protocol, as a frontend's (TCP or UDP); 0 for any other. */
static __always_inline __u8 sock_proto(struct bpf_sock_addr *ctx)
{
	__u32 proto = ctx->protocol;

	if (proto == IPPROTO_TCP || proto == IPPROTO_UDP)
		return proto;
	return 0;
}

/*
 * connect() and sendmsg(): points the socket at a backend if its destination
 * is a frontend. v4: the family of the hook (an IPv6 socket may still ask for
 * an IPv4-mapped address, which the frontends hold as such).
 */
static __always_inline int sock_forward(struct bpf_sock_addr *ctx, int v4)
{
	__u8 addr[16] __attribute__((aligned(8)));
	__u8 hashed[16] __attribute__((aligned(8))) = {};
	__u8 client[16] __attribute__((aligned(8))) = {}; /* the affinity client: the netns cookie */
	struct sock_rev_key rk = {};
	struct sock_rev rv = {};
	struct lb_client c;
	struct frontend *fe;
	struct backend *be;
	__u64 cookie, netns, now;
	__be16 port = (__be16)ctx->user_port;
	__u8 proto = sock_proto(ctx);
	__u32 id = 0;

	if (!proto)
		return SOCK_ALLOW;
	sock_addr_get(ctx, v4, addr);
	fe = lb_frontend_of(addr, port, proto, SCOPE_INTERNAL);
	if (!fe)
		fe = lb_frontend_of(addr, port, proto, SCOPE_EXTERNAL);
	if (!fe || (fe->flags & FRONTEND_F_SOURCE_RANGES))
		return SOCK_ALLOW;
	if (fe->maglev_size == 0)
		goto refuse;

	cookie = bpf_get_socket_cookie(ctx);
	netns = bpf_get_netns_cookie(ctx);
	*(__u64 *)hashed = cookie;
	*(__u64 *)(hashed + 8) = netns;
	*(__u64 *)client = netns;
	c.client = client;
	c.daddr = addr;
	c.affinity_id = fe->service_id | SOCK_AFFINITY_NETNS;
	c.hash = flow_hash(hashed, 0, port, proto);
	now = clock_now();
	be = lb_select(fe, &c, now, &id);
	if (!be)
		goto refuse;
	lb_affinity_record(fe, &c, id, now);

	rk.cookie = cookie;
	addr_copy(rk.addr, be->addr);
	rk.port = be->port;
	addr_copy(rv.addr, addr);
	rv.port = port;
	rv.service_id = fe->service_id;
	bpf_map_update_elem(&sock_rev, &rk, &rv, BPF_ANY);

	sock_addr_set(ctx, v4, be->addr, be->port);
	counter_add(COUNTER_SOCK_XLATE, 0);
	return SOCK_ALLOW;

refuse:
	counter_add(COUNTER_SOCK_NO_BACKEND, 0);
	bpf_set_retval(-ECONNREFUSED);
	return SOCK_REFUSE;
}

/*
 * recvmsg() and getpeername(): reports the frontend instead of the backend
 * the socket was pointed at.
 */
static __always_inline int sock_reverse(struct bpf_sock_addr *ctx, int v4)
{
	struct sock_rev_key rk = {};
	struct sock_rev *rv;

	if (!sock_proto(ctx))
		return SOCK_ALLOW;
	rk.cookie = bpf_get_socket_cookie(ctx);
	sock_addr_get(ctx, v4, rk.addr);
	rk.port = (__be16)ctx->user_port;
	rv = bpf_map_lookup_elem(&sock_rev, &rk);
	if (rv)
		sock_addr_set(ctx, v4, rv->addr, rv->port);
	return SOCK_ALLOW;
}

#endif /* __SLUICE_SOCK_H */
