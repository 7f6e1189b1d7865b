/*
 * counters.h: counting packets in the per-CPU counters map.
 */
#ifndef __SLUICE_COUNTERS_H
#define __SLUICE_COUNTERS_H

#include "common.h"
#include "config.h"
#include "maps.h"

/* Adds one packet of len bytes to counter id (per CPU, so no atomics). */
static __always_inline void counter_add(__u32 id, __u64 len)
{
	struct counter *c;

	if (!node_config.counters)
		return;

	c = bpf_map_lookup_elem(&counters, &id);
	if (!c)
		return;
	c->packets++;
	c->bytes += len;
}

#endif /* __SLUICE_COUNTERS_H */
