//go:build ignore

/*
 * xdp.c: the XDP program for the external devices.
 *
 * For now it parses every frame, counts it by outcome and passes it on
 * untouched; frontend lookup and backend selection come next. It must never
 * drop or alter traffic it does not own.
 */
#include "lib/common.h"
#include "lib/structs.h"
#include "lib/maps.h"
#include "lib/config.h"
#include "lib/counters.h"
#include "lib/parse.h"

SEC("xdp")
int sluice_xdp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct packet pkt = {};
	enum counter_id id;

	id = parse_packet(&pkt, data, data_end);
	counter_add(id, pkt.len);
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
