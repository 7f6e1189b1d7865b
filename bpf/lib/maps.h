/*
 * maps.h: every BPF map of the datapath, in one place.
 *
 * Conventions:
 *  - BTF-defined maps in SEC(".maps");
 *  - pinning = LIBBPF_PIN_BY_NAME for every map whose state must survive an
 *    agent restart: the loader pins it as <pin dir>/<map name> and reuses the
 *    pinned map on the next load. A pinned map whose type, key, value,
 *    max_entries or flags changed fails the load with ErrMapIncompatible
 *    rather than being silently replaced, so a definition change needs a
 *    migration (or a new map name); leave headroom in fixed sizes;
 *  - names at most 15 characters (the kernel's BPF_OBJ_NAME_LEN - 1), no
 *    prefix: the pin directory already says "sluice";
 *  - key and value types come from structs.h.
 */
#ifndef __SLUICE_MAPS_H
#define __SLUICE_MAPS_H

#include "common.h"
#include "structs.h"

/*
 * Packets and bytes per enum counter_id, per CPU; summed by the agent. Sized
 * with headroom so that new counters keep the pinned map compatible.
 */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, COUNTERS_MAP_SIZE);
	__type(key, __u32);
	__type(value, struct counter);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} counters SEC(".maps");

#endif /* __SLUICE_MAPS_H */
