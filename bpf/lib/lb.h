/*
 * lb.h: the load-balancing decision for a packet towards a frontend:
 * frontend lookup, then conntrack, then ClientIP affinity, then Maglev (or
 * random). It decides and records (conntrack, affinity); it does not touch
 * the packet, so XDP and TC share it.
 */
#ifndef __SLUICE_LB_H
#define __SLUICE_LB_H

#include "common.h"
#include "structs.h"
#include "maps.h"
#include "config.h"
#include "ct.h"
#include "hash.h"

enum lb_verdict {
	LB_NOT_OURS = 0,	/* no such frontend: pass untouched */
	LB_NEW,			/* new flow: rewrite the destination to res.addr/port */
	LB_ESTABLISHED,		/* conntrack hit: rewrite the destination to res.addr/port */
	LB_NO_BACKEND,		/* frontend without a usable backend: reject */
	LB_CLASH,		/* new flow whose reply tuple a live flow to another frontend holds: drop */
	LB_DENIED,		/* new flow from a client outside the frontend's source ranges: drop */
	LB_SNAT_NO_PORT,	/* new flow to a remote backend without a free SNAT port: drop */
};

struct lb_result {
	__u8 addr[16];		/* backend */
	const __u8 *snat_addr;	/* snat: the source to rewrite to (in a map value) */
	const __u8 *dsr_node;	/* dsr: the backend's node, to tunnel to (in a map value) */
	__be16 port;
	__be16 snat_port;
	__u8 expired;		/* a conntrack entry was found but expired or stale */
	__u8 snat;		/* to a remote backend: rewrite the source to snat_addr/port too */
	__u8 dsr;		/* to a remote backend over DSR: tunnel to dsr_node */
	__u8 _pad;
	__u32 service_id;
	__u32 backend_id;
};

/* Whether port (network order) is in the SNAT port range. */
static __always_inline int lb_snat_port(__be16 port)
{
	__u16 p = bpf_ntohs(port);

	return node_config.snat_port_max && p >= node_config.snat_port_min && p <= node_config.snat_port_max;
}

/*
 * The node's own address of the family of addr (snat_addrs: the source of
 * SNATed flows, where DSR tunnels end), or NULL if it has none.
 */
static __always_inline const __u8 *lb_node_addr(const __u8 *addr)
{
	__u32 i = addr_is_v4(addr) ? 0 : 1;
	struct snat_addr *a = bpf_map_lookup_elem(&snat_addrs, &i);
	const __u32 *w;

	if (!a)
		return 0;
	w = (const __u32 *)a->addr;
	if ((w[0] | w[1] | w[2] | w[3]) == 0)
		return 0;
	return a->addr;
}

/* The node's SNAT source address of the family of addr, or NULL if it has none or SNAT is off. */
static __always_inline const __u8 *lb_snat_addr(const __u8 *addr)
{
	return node_config.snat_port_max ? lb_node_addr(addr) : 0;
}

/* The node of remote backend id (DSR), or NULL if unknown. */
static __always_inline const __u8 *lb_backend_node(__u32 id)
{
	struct backend_node *n = bpf_map_lookup_elem(&backend_nodes, &id);

	return n ? n->addr : 0;
}

#define SNAT_TRIES 8

/*
 * Claims a SNAT source port for the new flow k (original direction) to
 * backend be (id) from address sa: the first of SNAT_TRIES ports, from a hash
 * of the flow, whose reply tuple (backend -> sa:port) is free, or already
 * this flow's. Returns the port (network order), or 0 if none is free.
 */
static __attribute__((noinline)) __be16 lb_snat_claim(const struct ct_key *k, const struct backend *be, __u32 id,
							 const __u8 *sa)
{
	__u32 range = (__u32)node_config.snat_port_max - node_config.snat_port_min + 1;
	__u32 h = flow_hash(k->saddr, k->sport, k->dport, k->proto);
	struct lb_scratch *s;
	struct snat_entry *cur;
	__u32 zero = 0, i;

	s = bpf_map_lookup_elem(&lb_scratch, &zero);
	if (!s)
		return 0;
	__builtin_memset(&s->snat_key, 0, sizeof(s->snat_key));
	__builtin_memset(&s->snat, 0, sizeof(s->snat));
	addr_copy(s->snat_key.saddr, be->addr);
	addr_copy(s->snat_key.daddr, sa);
	s->snat_key.sport = be->port;
	s->snat_key.proto = k->proto;
	s->snat_key.dir = CT_DIR_REPLY;
	addr_copy(s->snat.client, k->saddr);
	addr_copy(s->snat.frontend, k->daddr);
	s->snat.client_port = k->sport;
	s->snat.frontend_port = k->dport;
	s->snat.backend_id = id;
	for (i = 0; i < SNAT_TRIES; i++) {
		s->snat_key.dport = bpf_htons((__u16)(node_config.snat_port_min + (h + i) % range));
		if (bpf_map_update_elem(&snat, &s->snat_key, &s->snat, BPF_NOEXIST) == 0)
			return s->snat_key.dport;
		cur = bpf_map_lookup_elem(&snat, &s->snat_key);
		if (cur && addr_equal(cur->client, k->saddr) && cur->client_port == k->sport &&
		    addr_equal(cur->frontend, k->daddr) && cur->frontend_port == k->dport) {
			cur->backend_id = id; /* this flow, reopened */
			return s->snat_key.dport;
		}
	}
	return 0;
}

/* Looks up the frontend (addr, port, proto) of the given scope. */
static __always_inline struct frontend *lb_frontend_of(const __u8 *addr, __be16 port, __u8 proto, __u8 scope)
{
	struct frontend_key fk = {};

	addr_copy(fk.addr, addr);
	fk.port = port;
	fk.proto = proto;
	fk.scope = scope;
	return bpf_map_lookup_elem(&frontends, &fk);
}

/*
 * Looks up the frontend the flow key k (original direction) is addressed to:
 * external only, or, for traffic from pods (internal), internal first.
 */
static __always_inline struct frontend *lb_frontend(const struct ct_key *k, int internal)
{
	struct frontend *fe;

	if (internal) {
		fe = lb_frontend_of(k->daddr, k->dport, k->proto, SCOPE_INTERNAL);
		if (fe)
			return fe;
	}
	return lb_frontend_of(k->daddr, k->dport, k->proto, SCOPE_EXTERNAL);
}

/* Whether fe admits a new flow from the client of k (its source ranges). */
static __always_inline int lb_source_allowed(const struct frontend *fe, const struct ct_key *k)
{
	struct source_range_key rk = { .prefixlen = 32 + 128, .service_id = fe->service_id };

	if (!(fe->flags & FRONTEND_F_SOURCE_RANGES))
		return 1;
	addr_copy(rk.addr, k->saddr);
	return bpf_map_lookup_elem(&source_ranges, &rk) != 0;
}

/* A backend usable for a flow of the family of daddr: same family as the frontend. */
static __always_inline struct backend *lb_backend(__u32 id, const __u8 *daddr)
{
	struct backend *be = bpf_map_lookup_elem(&backends, &id);

	if (!be || addr_is_v4(be->addr) != addr_is_v4(daddr))
		return 0;
	return be;
}

/*
 * Who a new flow of fe is from, for the choice of its backend: client is the
 * key of its ClientIP affinity (with affinity_id for the service id: the
 * packet path uses the service's own, the socket path a marked one), hash
 * picks its Maglev slot, daddr is the frontend address (its family).
 */
struct lb_client {
	const __u8 *client;
	const __u8 *daddr;
	__u32 affinity_id;
	__u32 hash;
};

/* Picks a backend for a new flow of fe: affinity, else Maglev / random. */
static __always_inline struct backend *lb_select(const struct frontend *fe, const struct lb_client *c, __u64 now,
						 __u32 *id_out)
{
	struct backend *be;
	__u32 slot, *id;

	if (fe->affinity_timeout) {
		struct affinity_key ak = { .service_id = c->affinity_id };
		struct affinity *a;

		addr_copy(ak.client, c->client);
		a = bpf_map_lookup_elem(&affinity, &ak);
		if (a && !clock_older_than(now, a->last_used, (__u64)fe->affinity_timeout * NSEC_PER_SEC)) {
			be = lb_backend(a->backend_id, c->daddr);
			if (be && be->state == BACKEND_ACTIVE) {
				*id_out = a->backend_id;
				return be;
			}
		}
	}

	slot = fe->maglev_base + c->hash % fe->maglev_size;
	id = bpf_map_lookup_elem(&maglev, &slot);
	if (!id)
		return 0;
	*id_out = *id;
	return lb_backend(*id, c->daddr);
}

/* Records that the client of c was given backend id (ClientIP affinity), if fe has affinity. */
static __always_inline void lb_affinity_record(const struct frontend *fe, const struct lb_client *c, __u32 id, __u64 now)
{
	struct affinity_key ak = { .service_id = c->affinity_id };
	struct affinity av = { .backend_id = id, .last_used = now };

	if (!fe->affinity_timeout)
		return;
	addr_copy(ak.client, c->client);
	bpf_map_update_elem(&affinity, &ak, &av, BPF_ANY);
}

/*
 * Whether the flow of reply entry re (key rk) is still a connection: the
 * entry and its original entry (which the client's FIN or RST finishes) both
 * live.
 */
static __attribute__((noinline)) int lb_reply_live(const struct ct_entry *re, const struct ct_key *rk, __u64 now)
{
	struct ct_entry *oe;
	struct ct_key ok;

	if (!ct_live(re, rk->proto, now))
		return 0;
	ct_original_key(&ok, rk, re->nat_addr, re->nat_port);
	oe = bpf_map_lookup_elem(&conntrack, &ok);
	return oe && oe->backend_id == re->backend_id && ct_live(oe, rk->proto, now);
}

/*
 * Decides where the packet with flow key k (original direction, as on the
 * wire), TCP flags and length len goes. On LB_NEW and LB_ESTABLISHED, res
 * holds the backend to rewrite the destination to; on LB_NO_BACKEND, the
 * service.
 */
static __always_inline enum lb_verdict lb_forward(struct ct_key *k, __u8 flags, __u32 len, struct lb_result *res,
						  int internal)
{
	struct ct_entry *ct, *re, *entry;
	struct lb_scratch *scratch;
	struct frontend *fe;
	struct backend *be;
	struct lb_client c;
	struct ct_key rk;
	int same_frontend;
	__u32 id = 0;
	__u64 now;

	fe = lb_frontend(k, internal);
	if (!fe)
		return LB_NOT_OURS;
	res->service_id = fe->service_id;

	now = clock_now();
	k->dir = CT_DIR_ORIGINAL;
	ct = bpf_map_lookup_elem(&conntrack, k);
	if (ct) {
		/*
		 * An established flow keeps its backend, even a terminating one.
		 * TCP keeps it even once the backend is removed (its entry
		 * holds the address), as kube-proxy's conntrack does: a pod
		 * that left the endpoints but still runs finishes its
		 * connections. UDP moves to a live backend, as kube-proxy
		 * flushes UDP conntrack on endpoint removal.
		 */
		const __u8 *sa = ct->flags & CT_F_SNAT ? lb_snat_addr(k->daddr) : 0;
		const __u8 *node = ct->flags & CT_F_DSR ? lb_backend_node(ct->backend_id) : 0;

		if (ct->service_id == fe->service_id && !ct_expired(ct, k->proto, now) &&
		    !ct_reopened(ct, k->proto, flags) &&
		    (k->proto == IPPROTO_TCP || lb_backend(ct->backend_id, k->daddr)) &&
		    (!(ct->flags & CT_F_SNAT) || sa) && (!(ct->flags & CT_F_DSR) || node)) {
			ct_touch(ct, k->proto, flags, 0, now, len);
			addr_copy(res->addr, ct->nat_addr);
			res->port = ct->nat_port;
			res->backend_id = ct->backend_id;
			if (sa) {
				res->snat = 1;
				res->snat_addr = sa;
				res->snat_port = ct->snat_port;
			}
			if (node) {
				res->dsr = 1;
				res->dsr_node = node;
			}
			return LB_ESTABLISHED;
		}
		res->expired = 1;
	}

	/*
	 * Source ranges are checked for new flows only, as kube-proxy does:
	 * a connection made while its client was admitted lives on.
	 */
	if (!lb_source_allowed(fe, k))
		return LB_DENIED;
	if (fe->maglev_size == 0)
		return LB_NO_BACKEND;
	c.client = k->saddr;
	c.daddr = k->daddr;
	c.affinity_id = fe->service_id;
	c.hash = fe->flags & FRONTEND_F_RANDOM ? bpf_get_prandom_u32() : flow_hash(k->saddr, k->sport, k->dport, k->proto);
	be = lb_select(fe, &c, now, &id);
	if (!be)
		return LB_NO_BACKEND;

	addr_copy(res->addr, be->addr);
	res->port = be->port;
	res->backend_id = id;

	scratch = bpf_map_lookup_elem(&lb_scratch, &(__u32){0});
	if (!scratch)
		return LB_NO_BACKEND;
	entry = &scratch->entry;
	__builtin_memset(entry, 0, sizeof(*entry));
	entry->last_seen = now;
	entry->created = now;
	entry->backend_id = id;
	entry->service_id = fe->service_id;
	entry->state = ct_new_state(k->proto, flags);
	entry->packets = 1;
	entry->bytes = len;
	addr_copy(entry->nat_addr, be->addr);
	entry->nat_port = be->port;

	if ((be->flags & BACKEND_F_REMOTE) && !internal) {
		/*
		 * The backend is on another node (and the client outside the
		 * cluster: a pod's replies find it through the pod network): its
		 * replies must come back
		 * through this one, so the flow leaves with this node's address
		 * and a port of its own (the snat map translates replies back).
		 * The reply tuple is unique by construction: no clash check, no
		 * reply conntrack entry.
		 */
		const __u8 *node = fe->flags & FRONTEND_F_DSR ? lb_backend_node(id) : 0;
		const __u8 *sa = node ? 0 : lb_snat_addr(k->daddr);

		if (node && addr_is_v4(node) == addr_is_v4(k->daddr)) {
			/*
			 * DSR: the packet goes to the backend's node in an IPIP
			 * tunnel (dsr.h) and the reply from there straight to the
			 * client: no reply entry here.
			 */
			entry->flags = CT_F_DSR;
			bpf_map_update_elem(&conntrack, k, entry, BPF_ANY);
			lb_affinity_record(fe, &c, id, now);
			res->dsr = 1;
			res->dsr_node = node;
			return LB_NEW;
		}
		if (sa) {
			__be16 port = lb_snat_claim(k, be, id, sa);

			if (!port)
				return LB_SNAT_NO_PORT;
			entry->flags = CT_F_SNAT;
			entry->snat_port = port;
			bpf_map_update_elem(&conntrack, k, entry, BPF_ANY);
			lb_affinity_record(fe, &c, id, now);
			res->snat = 1;
			res->snat_addr = sa;
			res->snat_port = port;
			return LB_NEW;
		}
	}

	/*
	 * The reply entry is keyed by what the backend sends back: backend ->
	 * client address and port. Two frontends sharing a backend, reached
	 * from one client address and port (a client may reuse a source port
	 * towards another destination), would share it, and the replies of one
	 * would be translated to the other's address. The kernel's NAT would
	 * move the second flow to another source port; DNAT alone cannot, so
	 * the flow that is already live keeps the tuple and the new one is
	 * dropped until that one ends (the client retries its SYN).
	 */
	ct_reply_key(&rk, k, be->addr, be->port);
	re = bpf_map_lookup_elem(&conntrack, &rk);
	same_frontend = re && addr_equal(re->nat_addr, k->daddr) && re->nat_port == k->dport;
	if (re && !same_frontend && lb_reply_live(re, &rk, now))
		return LB_CLASH;

	bpf_map_update_elem(&conntrack, k, entry, BPF_ANY);

	if (same_frontend) {
		/*
		 * The same flow again (a reopened connection): refresh the
		 * entry in place, cheaper than replacing it. The addresses it
		 * holds do not change, so a reader on another CPU sees no torn
		 * translation.
		 */
		re->last_seen = now;
		re->created = now;
		re->backend_id = id;
		re->service_id = fe->service_id;
		re->state = entry->state;
		re->packets = 0;
		re->bytes = 0;
	} else {
		addr_copy(entry->nat_addr, k->daddr);
		entry->nat_port = k->dport;
		entry->packets = 0;
		entry->bytes = 0;
		bpf_map_update_elem(&conntrack, &rk, entry, BPF_ANY);
	}

	lb_affinity_record(fe, &c, id, now);
	return LB_NEW;
}

/*
 * Looks up the reply entry for key r (a packet backend -> client as on the
 * wire, dir set here) and, on a hit, refreshes both entries with the packet's
 * flags. Returns the reply entry (nat = the frontend) or NULL.
 */
static __always_inline struct ct_entry *lb_reverse(struct ct_key *r, __u8 flags, __u32 len)
{
	struct ct_entry *re, *oe;
	struct ct_key ok;
	__u64 now;

	r->dir = CT_DIR_REPLY;
	re = bpf_map_lookup_elem(&conntrack, r);
	if (!re)
		return 0;
	now = clock_now();
	ct_touch(re, r->proto, flags, 1, now, len);
	ct_original_key(&ok, r, re->nat_addr, re->nat_port);
	oe = bpf_map_lookup_elem(&conntrack, &ok);
	if (oe && oe->backend_id == re->backend_id) {
		__u8 next = ct_next_state(r->proto, oe->state, flags, 1);

		oe->last_seen = now;
		if (oe->state != next)
			oe->state = next;
	}
	return re;
}

/*
 * Looks up the SNATed flow whose reply r is (a packet backend -> SNAT
 * address and port, as on the wire, dir set here) and, on a hit, refreshes
 * the flow's original conntrack entry with the packet's flags. Returns the
 * snat entry (client and frontend) or NULL.
 */
static __always_inline struct snat_entry *lb_snat_reverse(struct ct_key *r, __u8 flags)
{
	struct snat_entry *e;
	struct ct_entry *oe;
	struct ct_key ok = {};

	r->dir = CT_DIR_REPLY;
	e = bpf_map_lookup_elem(&snat, r);
	if (!e)
		return 0;
	addr_copy(ok.saddr, e->client);
	addr_copy(ok.daddr, e->frontend);
	ok.sport = e->client_port;
	ok.dport = e->frontend_port;
	ok.proto = r->proto;
	ok.dir = CT_DIR_ORIGINAL;
	oe = bpf_map_lookup_elem(&conntrack, &ok);
	if (oe && oe->backend_id == e->backend_id && (oe->flags & CT_F_SNAT) && oe->snat_port == r->dport) {
		__u8 next = ct_next_state(r->proto, oe->state, flags, 1);

		oe->last_seen = clock_now();
		if (oe->state != next)
			oe->state = next;
	}
	return e;
}

#endif /* __SLUICE_LB_H */
