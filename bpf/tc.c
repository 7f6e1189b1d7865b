//go:build ignore

/*
 * tc.c: the TCX programs for the external devices: ingress runs the forward
 * path for what XDP did not handle (lib/forward.h), egress the reply path
 * (lib/reverse.h). Compiled as part of datapath.c.
 */
#include "lib/common.h"
#include "lib/forward.h"
#include "lib/reverse.h"

SEC("tcx/ingress")
int sluice_tc_ingress(struct __sk_buff *skb)
{
	return tc_forward(skb);
}

SEC("tcx/egress")
int sluice_tc_egress(struct __sk_buff *skb)
{
	return tc_reverse(skb);
}
