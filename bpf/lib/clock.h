/*
 * clock.h: the datapath's clock, CLOCK_MONOTONIC in nanoseconds (see struct
 * config). From jiffies when the loader measured the tick: bpf_jiffies64 is
 * inlined by the verifier, where bpf_ktime_get_coarse_ns is a call into the
 * kernel on every packet.
 */
#ifndef __SLUICE_CLOCK_H
#define __SLUICE_CLOCK_H

#include "common.h"
#include "config.h"

static __always_inline __u64 clock_now(void)
{
	__u64 tick = node_config.clock_tick_ns;

	if (tick)
		return bpf_jiffies64() * tick - node_config.clock_offset;
	return bpf_ktime_get_coarse_ns();
}

/*
 * Whether more than timeout nanoseconds passed from then to now. Signed: a
 * timestamp a little ahead of now (written against another calibration of
 * the clock) is not ancient.
 */
static __always_inline int clock_older_than(__u64 now, __u64 then, __u64 timeout)
{
	return (__s64)(now - then) > (__s64)timeout;
}

#endif /* __SLUICE_CLOCK_H */
