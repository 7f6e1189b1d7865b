//go:build ignore

/*
 * xdp.c: the XDP program for the external devices, the forward path
 * (lib/forward.h). Compiled as part of datapath.c.
 */
#include "lib/common.h"
#include "lib/forward.h"

SEC("xdp")
int sluice_xdp(struct xdp_md *ctx)
{
	return xdp_forward(ctx);
}
