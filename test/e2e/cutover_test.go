package e2e

import (
	"context"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sluice-lb/sluice/api/v1alpha1"
	"github.com/sluice-lb/sluice/test/peers"
	"github.com/sluice-lb/sluice/test/traffic"
)

// TestCutOverKeepsAddressAnnounced follows docs/migration-from-metallb.md's node-by-node
// cut-over for BGP: node-a's address is still announced by another speaker (gobgpd stands in
// for MetalLB's), node-b's already by Sluice, whose BGPPeer selects the nodes labelled for it.
// Then node-a's speaker stops and node-a is labelled: Sluice's agent there opens its session.
// Throughout, the router (FRR with zebra) always has a route to the Service's address, the
// client's connections through it are answered, and the Service keeps the address it had.
// (Both nodes run Sluice's datapath throughout, standing in for kube-proxy on node-a.)
func TestCutOverKeepsAddressAnnounced(t *testing.T) {
	x, _, env, kubeconfig := newKubeL2(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c := env.Client
	const vip = "203.0.113.5"
	prefix := netip.MustParsePrefix(vip + "/32")
	for _, ns := range []string{"sluice-system", "demo"} {
		must(t, env.EnsureNamespace(ctx, ns))
	}
	objs := []client.Object{
		&v1alpha1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: "vip"}, Spec: v1alpha1.IPPoolSpec{Blocks: []v1alpha1.IPBlock{{CIDR: "203.0.113.0/28"}}}},
		&v1alpha1.BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: "router"}, Spec: v1alpha1.BGPPeerSpec{
			PeerAddress: "198.18.6.2", PeerASN: 64512, LocalASN: 64513, HoldTime: &metav1.Duration{Duration: 9 * time.Second},
			NodeSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"speaker": "sluice"}}}},
		&v1alpha1.BGPAdvertisement{ObjectMeta: metav1.ObjectMeta{Name: "vip"}, Spec: v1alpha1.BGPAdvertisementSpec{Pools: []string{"vip"}}},
	}
	for _, o := range objs {
		must(t, c.Create(ctx, o))
	}
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: "web"}, Spec: corev1.ServiceSpec{
		Type:  corev1.ServiceTypeLoadBalancer,
		Ports: []corev1.ServicePort{{Name: "tcp", Port: 80, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt32(8080)}},
	}}
	must(t, c.Create(ctx, svc))
	svc.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: vip}} // as MetalLB left it
	must(t, c.Status().Update(ctx, svc))
	must(t, c.Create(ctx, x.endpointSlice("web")))
	for i, n := range x.nodes {
		speaker := map[int]string{0: "metallb", 1: "sluice"}[i]
		must(t, c.Create(ctx, n.object(map[string]string{"speaker": speaker})))
	}
	x.routePods(t, ctx)

	var neighbors []peers.Neighbor
	for _, n := range x.nodes {
		neighbors = append(neighbors, peers.Neighbor{Address: netip.MustParseAddr(n.addr), ASN: 64513})
	}
	router := peers.StartForTest(t, peers.StartFRR, x.client.Name, peers.Config{
		RouterID: netip.MustParseAddr("198.18.6.2"), ASN: 64512, HoldTime: 9 * time.Second, InstallRoutes: true, Neighbors: neighbors})
	speaker := peers.StartForTest(t, peers.StartGoBGP, x.nodes[0].ns.Name, peers.Config{
		RouterID: netip.MustParseAddr(x.nodes[0].addr), ASN: 64513, HoldTime: 9 * time.Second,
		Neighbors: []peers.Neighbor{{Address: netip.MustParseAddr("198.18.6.2"), ASN: 64512}}, Networks: []netip.Prefix{prefix}})
	for _, n := range x.nodes {
		n.agent = startAgent(t, n.ns, n.name, n.dir, "", "--kubeconfig", kubeconfig, "--namespace", "sluice-system")
	}
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := router.VTY(context.Background(), "show bgp ipv4 unicast")
			t.Logf("router:\n%s\nnode-a:\n%s\nnode-b:\n%s", out, x.nodes[0].agent.Output(), x.nodes[1].agent.Output())
		}
	})
	bothNodes := func() bool {
		hops, err := router.KernelNextHops(ctx, prefix)
		return err == nil && len(hops) == 2
	}
	waitUpTo(t, time.Minute, "the router's ECMP route via node-a (the other speaker) and node-b (Sluice)", bothNodes)

	// Watch the router's route while the client keeps connecting.
	var mu sync.Mutex
	var samples, empty int
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			// The router's forwarding table itself, as zebra installed it: what traffic uses.
			out, err := x.client.Exec(ctx, "ip", "-4", "route", "show", "exact", prefix.String())
			if err != nil {
				continue // no sample
			}
			mu.Lock()
			samples++
			if !strings.Contains(string(out), prefix.Addr().String()) {
				empty++
			}
			mu.Unlock()
		}
	}()
	cl := traffic.NewClient(x.client)
	cl.Timeout = 500 * time.Millisecond
	probe := cl.Probe("tcp", vip+":80", 10*time.Millisecond)
	time.Sleep(time.Second)

	// node-a moves: its speaker leaves, then it is labelled for Sluice.
	must(t, speaker.Stop())
	waitFor(t, "the router's route via node-b alone", func() bool {
		hops, err := router.KernelNextHops(ctx, prefix)
		return err == nil && slices.Equal(hops, []netip.Addr{netip.MustParseAddr(x.nodes[1].addr)})
	})
	var node corev1.Node
	must(t, c.Get(ctx, client.ObjectKey{Name: "node-a"}, &node))
	node.Labels["speaker"] = "sluice"
	must(t, c.Update(ctx, &node))
	waitUpTo(t, 30*time.Second, "node-a's path back, now from Sluice", bothNodes)
	time.Sleep(time.Second)
	res := probe.Stop()
	close(stop)
	wg.Wait()

	mu.Lock()
	defer mu.Unlock()
	if samples < 20 || empty > 0 {
		t.Errorf("the router had no route to %s in %d of %d samples; want one throughout", prefix, empty, samples)
	}
	// A connection in flight when its path moves from node-a to node-b may be lost (node-b
	// has no state for it); every new one must be answered.
	if lost := res.Sent - len(res.Answers); lost > 2 || res.MaxGap() > 300*time.Millisecond {
		t.Errorf("client -> %s:80 through the cut-over: %d of %d answered, longest gap %v", vip, len(res.Answers), res.Sent, res.MaxGap())
	}
	var got corev1.Service
	must(t, c.Get(ctx, client.ObjectKey{Namespace: "demo", Name: "web"}, &got))
	if ing := got.Status.LoadBalancer.Ingress; len(ing) != 1 || ing[0].IP != vip {
		t.Errorf("Service web: status %+v; want %s kept", ing, vip)
	}
	if out := x.nodes[0].agent.Output(); !strings.Contains(out, "bgp peer added") {
		t.Errorf("node-a's agent never added the router once labelled:\n%s", out)
	}
	t.Logf("cut-over: %d of %d connections answered, longest gap %v; %d route samples, none empty", len(res.Answers), res.Sent, res.MaxGap(), samples)
}
