/*
 * config.h: the per-node constants (struct config in structs.h).
 *
 * "volatile const" puts the value in .rodata, which the loader rewrites before
 * loading (CollectionSpec.Variables["node_config"].Set) and the kernel freezes;
 * volatile stops clang from folding the default below into the code. The
 * default only matters to a loader that does not set it.
 */
#ifndef __SLUICE_CONFIG_H
#define __SLUICE_CONFIG_H

#include "common.h"
#include "structs.h"

volatile const struct config node_config = {
	.counters = 1,
	.vlan = 1,
	.events = 1,
	/* the kernel's nf_conntrack defaults */
	.ct_tcp_syn_sent = 120,
	.ct_tcp_established = 432000,
	.ct_tcp_fin_wait = 120,
	.ct_tcp_close = 10,
	.ct_udp_unreplied = 30,
	.ct_udp_replied = 120,
};

#endif /* __SLUICE_CONFIG_H */
