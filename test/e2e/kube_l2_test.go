package e2e

import (
	"context"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sluice-lb/sluice/api/v1alpha1"
	"github.com/sluice-lb/sluice/test/kubeapi"
	"github.com/sluice-lb/sluice/test/traffic"
)

// newKubeL2 is the L2 topology in Kubernetes mode: a real API server that both nodes reach
// (relayed, lab.Forward), and a kubeconfig for it in the topology's directory.
func newKubeL2(t *testing.T) (x *l2Lab, dir string, env *kubeapi.Env, kubeconfig string) {
	t.Helper()
	x, dir = newL2Topology(t)
	env = kubeapi.Start(t, kubeapi.Options{})
	kubeconfig = env.KubeConfigFile(t, dir)
	for _, n := range x.nodes {
		relay := relayAPI(t, env, n.ns)
		t.Cleanup(func() { relay.Close() })
	}
	return x, dir, env, kubeconfig
}

// object is n's Node object, with labels.
func (n *labNode) object(labels map[string]string) *corev1.Node {
	return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n.name, Labels: labels},
		Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: n.addr}}}}
}

// endpointSlice is Service name's EndpointSlice with each node's backend: be-a behind
// node-a, be-b behind node-b.
func (x *l2Lab) endpointSlice(name string) *discoveryv1.EndpointSlice {
	var addrs []string
	for _, n := range x.nodes {
		addrs = append(addrs, netip.MustParsePrefix(n.backend).Addr().String())
	}
	es := endpointSlice(name, addrs...)
	for i := range es.Endpoints {
		es.Endpoints[i].NodeName = &x.nodes[i].name
	}
	return es
}

// routePods routes each node to the other's pods, as a CNI would: with traffic policy
// Cluster, a node's connections then spread over both nodes' backends.
func (x *l2Lab) routePods(t *testing.T, ctx context.Context) {
	t.Helper()
	for i, n := range x.nodes {
		other := x.nodes[1-i]
		pods := netip.MustParsePrefix(other.bridge).Masked().String()
		if out, err := n.ns.Exec(ctx, "ip", "route", "add", pods, "via", other.addr); err != nil {
			t.Fatalf("%s: route to %s: %v\n%s", n.name, pods, err, out)
		}
	}
}

// TestKubeTwoNodesL2: a two-node "cluster" in Kubernetes mode — a real API server, two node
// namespaces each running the agent (which reach the API server through lab.Forward), a client
// on their LAN. Nobody writes the Service's status but the agents: the leader-elected IPAM
// controller of one of them gives it an address from the IPPool; both agents agree on which of
// them answers ARP for it; the client finds it by ARP and reaches the owner's own endpoint
// (externalTrafficPolicy Local); the owner records an L2Announced Event on the Service.
func TestKubeTwoNodesL2(t *testing.T) {
	x, _, env, kubeconfig := newKubeL2(t)

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
		objs = append(objs, n.object(nil))
	}
	objs = append(objs, x.endpointSlice("web"))
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
