package e2e

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sluice-lb/sluice/api/v1alpha1"
	"github.com/sluice-lb/sluice/test/kubeapi"
	"github.com/sluice-lb/sluice/test/traffic"
)

// TestKubeTwoNodesL2: a two-node "cluster" in Kubernetes mode — a real API server, two node
// namespaces each running the agent (which reach the API server through lab.Forward), a client
// on their LAN. Nobody writes the Service's status but the agents: the leader-elected IPAM
// controller of one of them gives it an address from the IPPool; both agents agree on which of
// them answers ARP for it; the client finds it by ARP and reaches the owner's own endpoint
// (externalTrafficPolicy Local); the owner records an L2Announced Event on the Service.
func TestKubeTwoNodesL2(t *testing.T) {
	x, dir := newL2Topology(t)
	env := kubeapi.Start(t, kubeapi.Options{})
	kubeconfig := kubeconfigIn(t, env, dir)
	for _, n := range x.nodes {
		relay := relayAPI(t, env, n.ns)
		t.Cleanup(func() { relay.Close() })
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := env.Client
	objs := []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "demo"}},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "sluice-system"}},
		&v1alpha1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: "lan"}, Spec: v1alpha1.IPPoolSpec{
			Blocks: []v1alpha1.IPBlock{{Start: "198.18.6.100", Stop: "198.18.6.110"}}}},
		&v1alpha1.L2Advertisement{ObjectMeta: metav1.ObjectMeta{Name: "lan"}, Spec: v1alpha1.L2AdvertisementSpec{Pools: []string{"lan"}}},
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: "web"}, Spec: corev1.ServiceSpec{
			Type: corev1.ServiceTypeLoadBalancer, ExternalTrafficPolicy: corev1.ServiceExternalTrafficPolicyLocal,
			Ports: []corev1.ServicePort{{Name: "tcp", Port: 80, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt32(8080)}},
		}},
	}
	for _, n := range x.nodes {
		objs = append(objs, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n.name},
			Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: n.addr}}}})
	}
	es := endpointSlice("web", "198.51.100.11", "198.51.100.139") // be-a behind node-a, be-b behind node-b
	for i := range es.Endpoints {
		es.Endpoints[i].NodeName = &x.nodes[i].name
	}
	objs = append(objs, es)
	for _, o := range objs {
		must(t, c.Create(ctx, o))
	}
	for _, n := range x.nodes {
		n.agent = startAgent(t, n.ns, n.name, n.dir, "", "--kubeconfig", kubeconfig, "--namespace", "sluice-system")
	}

	waitUpTo(t, time.Minute, "the Service's address from the IPPool, written by the leader", func() bool {
		var svc corev1.Service
		must(t, c.Get(ctx, client.ObjectKey{Namespace: "demo", Name: "web"}, &svc))
		ing := svc.Status.LoadBalancer.Ingress
		return len(ing) == 1 && ing[0].IP == l2VIP
	})
	owner := x.owner(t)
	time.Sleep(600 * time.Millisecond) // the takeover's announcement burst is over
	if macs := x.arping(t, 3); len(macs) != 3 || slices.ContainsFunc(macs, func(m string) bool { return m != owner.mac }) {
		t.Fatalf("arping %s: replies from %v, want 3, all from the owner %s (%s)", l2VIP, macs, owner.name, owner.mac)
	}
	cl := traffic.NewClient(x.client)
	cl.Timeout = 500 * time.Millisecond
	backend := "be-" + owner.name[len("node-"):]
	if r := cl.Spread("tcp", l2VIP+":80", 50, 4); r.Failed != 0 || r.ByServer[backend] != 50 {
		t.Fatalf("50 connections to %s: %v; want all answered by the owner's own endpoint %s", l2VIP, r, backend)
	}
	waitUpTo(t, 30*time.Second, "the owner's L2Announced Event on the Service", func() bool {
		var events eventsv1.EventList
		must(t, c.List(ctx, &events, client.InNamespace("demo")))
		return slices.ContainsFunc(events.Items, func(e eventsv1.Event) bool {
			return e.Reason == "L2Announced" && e.Regarding.Name == "web" && strings.HasPrefix(e.Note, owner.name+" answers ARP/NDP for "+l2VIP)
		})
	})
}
