//go:build ignore

/*
 * tc.c: the TCX programs for the external devices: ingress runs the forward
 * path for what XDP did not handle (lib/forward.h), egress the reply path
 * (lib/reverse.h); and the ingress of pods' interfaces. Compiled as part of
 * datapath.c.
 */
#include "lib/common.h"
#include "lib/forward.h"
#include "lib/reverse.h"

SEC("tcx/ingress")
int sluice_tc_ingress(struct __sk_buff *skb)
{
	return tc_forward(skb, 0);
}

/*
 * Ingress of a pod's interface (what the pod sends): the fallback for pod
 * traffic the socket programs did not translate (a pod outside
 * --cgroup-root, raw sockets): cluster IPs and the external frontends.
 * The replies are translated back by sluice_tc_egress on the same interface.
 */
SEC("tcx/ingress")
int sluice_tc_pod_ingress(struct __sk_buff *skb)
{
	return tc_forward(skb, 1);
}

SEC("tcx/egress")
int sluice_tc_egress(struct __sk_buff *skb)
{
	return tc_reverse(skb);
}
