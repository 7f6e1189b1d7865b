/*
 * events.h: drop and trace events to the events ring buffer (struct event).
 * Best effort: when the agent reads too slowly the ring fills and events are
 * lost; the counters still count every packet.
 */
#ifndef __SLUICE_EVENTS_H
#define __SLUICE_EVENTS_H

#include "common.h"
#include "config.h"
#include "maps.h"
#include "structs.h"

static __always_inline void event_emit(__u32 type, __u8 counter, const struct ct_key *k, __u32 service_id,
				       __u32 ifindex, __u32 len)
{
	struct event *ev;

	if (!node_config.events)
		return;
	ev = bpf_ringbuf_reserve(&events, sizeof(*ev), 0);
	if (!ev)
		return;
	ev->timestamp = bpf_ktime_get_coarse_ns();
	ev->type = type;
	ev->service_id = service_id;
	ev->ifindex = ifindex;
	ev->len = len;
	__builtin_memcpy(ev->saddr, k->saddr, 16);
	__builtin_memcpy(ev->daddr, k->daddr, 16);
	ev->sport = k->sport;
	ev->dport = k->dport;
	ev->proto = k->proto;
	ev->counter = counter;
	ev->_pad[0] = 0;
	ev->_pad[1] = 0;
	bpf_ringbuf_submit(ev, 0);
}

#endif /* __SLUICE_EVENTS_H */
