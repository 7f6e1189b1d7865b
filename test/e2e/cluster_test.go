package e2e

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sluice-lb/sluice/api/v1alpha1"
	"github.com/sluice-lb/sluice/test/kubeapi"
	"github.com/sluice-lb/sluice/test/lab"
	"github.com/sluice-lb/sluice/test/traffic"
)

// The Kubernetes-mode cluster of the sig-network suite: a real API server (which gives
// Services their cluster IPs and node ports), three node namespaces each running the agent in
// Kubernetes mode, two backend pods per node, and a client outside the cluster on the nodes'
// LAN. Nothing but the agents writes a Service's status; the test plays the EndpointSlice
// controller. Pods' processes run in their node's cgroup, as on a real node.
//
//	client 198.18.8.2 ──┬── 198.18.8.11 node-a ── pods a1 10.244.1.11, a2 10.244.1.12
//	    (LAN br)        ├── 198.18.8.12 node-b ── pods b1 10.244.2.11, b2 10.244.2.12
//	                    └── 198.18.8.13 node-c ── pods c1 10.244.3.11, c2 10.244.3.12
//
// Every address has an IPv6 twin (2001:db8:8::1N, fd00:244:N::1M); the pod networks route
// through their node, as a CNI sets them up.
type kubeCluster struct {
	env    *kubeapi.Env
	c      client.Client
	client *lab.Namespace
	nodes  []*clusterNode
	pods   map[string]*clusterPod
}

type clusterNode struct {
	name, addr4, addr6 string
	ns                 *lab.Namespace
	cg                 *lab.Cgroup
	dir                string
}

type clusterPod struct {
	name, addr4, addr6 string
	node               *clusterNode
	ns                 *lab.Namespace
}

// client is a process of the pod (its namespace, its node's cgroup).
func (p *clusterPod) client() *traffic.PodClient {
	return &traffic.PodClient{NS: p.ns, Cgroup: p.node.cg, Timeout: time.Second}
}

const clusterPool = "198.18.8.100"

func newKubeCluster(t *testing.T) *kubeCluster {
	l := lab.ForTest(t)
	dir := t.TempDir()
	k := &kubeCluster{env: kubeapi.Start(t, kubeapi.Options{}), pods: map[string]*clusterPod{}}
	k.c = k.env.Client
	lan, err := l.Namespace("lan")
	must(t, err)
	must(t, lan.AddBridge("br"))
	k.client, err = l.Namespace("client")
	must(t, err)
	must(t, l.Connect(lab.Endpoint{NS: lan, Name: "client", Bridge: "br"},
		lab.Endpoint{NS: k.client, Name: "eth0", Addrs: []string{"198.18.8.2/24", "2001:db8:8::2/64"}}))
	kubeconfig := k.env.KubeConfigFile(t, dir)
	for i, name := range []string{"node-a", "node-b", "node-c"} {
		n := &clusterNode{name: name, addr4: fmt.Sprintf("198.18.8.%d", 11+i), addr6: fmt.Sprintf("2001:db8:8::%d", 11+i),
			dir: filepath.Join(dir, name)}
		n.ns, err = l.Namespace(name)
		must(t, err)
		n.cg, err = n.ns.Cgroup()
		must(t, err)
		mountBPFFS(t, n.dir)
		must(t, l.Connect(lab.Endpoint{NS: lan, Name: name, Bridge: "br"},
			lab.Endpoint{NS: n.ns, Name: "eth0", Addrs: []string{n.addr4 + "/24", n.addr6 + "/64"}}))
		must(t, lan.ReceiveXDPFrames(name)) // the node's XDP answers (RST) come back through it
		must(t, n.ns.EnableForwarding())
		must(t, n.ns.AddBridge("pods", fmt.Sprintf("10.244.%d.1/24", i+1), fmt.Sprintf("fd00:244:%d::1/64", i+1)))
		for j := 1; j <= 2; j++ {
			p := &clusterPod{name: fmt.Sprintf("%c%d", name[len(name)-1], j), node: n,
				addr4: fmt.Sprintf("10.244.%d.%d", i+1, 10+j), addr6: fmt.Sprintf("fd00:244:%d::%d", i+1, 10+j)}
			p.ns, err = l.Namespace(p.name)
			must(t, err)
			must(t, l.Connect(lab.Endpoint{NS: p.ns, Name: "eth0", Addrs: []string{p.addr4 + "/24", p.addr6 + "/64"}},
				lab.Endpoint{NS: n.ns, Name: p.name, Bridge: "pods"}))
			must(t, p.ns.AddRoute("default", fmt.Sprintf("10.244.%d.1", i+1)))
			must(t, p.ns.AddRoute("default", fmt.Sprintf("fd00:244:%d::1", i+1)))
			srv, err := traffic.Serve(p.ns, p.name, 8080)
			must(t, err)
			t.Cleanup(func() { srv.Close() })
			k.pods[p.name] = p
		}
		relay := relayAPI(t, k.env, n.ns)
		t.Cleanup(func() { relay.Close() })
		k.nodes = append(k.nodes, n)
	}
	for i, n := range k.nodes {
		for j, o := range k.nodes {
			if i != j {
				must(t, n.ns.AddRoute(fmt.Sprintf("10.244.%d.0/24", j+1), o.addr4))
				must(t, n.ns.AddRoute(fmt.Sprintf("fd00:244:%d::/64", j+1), o.addr6))
			}
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	objs := []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "demo"}},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "sluice-system"}},
		&v1alpha1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: "lan"}, Spec: v1alpha1.IPPoolSpec{
			Blocks: []v1alpha1.IPBlock{{Start: clusterPool, Stop: "198.18.8.120"}}}},
		&v1alpha1.L2Advertisement{ObjectMeta: metav1.ObjectMeta{Name: "lan"}, Spec: v1alpha1.L2AdvertisementSpec{Pools: []string{"lan"}}},
	}
	for i, n := range k.nodes {
		objs = append(objs, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n.name},
			Spec: corev1.NodeSpec{PodCIDRs: []string{fmt.Sprintf("10.244.%d.0/24", i+1), fmt.Sprintf("fd00:244:%d::/64", i+1)}},
			Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{
				{Type: corev1.NodeInternalIP, Address: n.addr4}, {Type: corev1.NodeInternalIP, Address: n.addr6}}}})
	}
	for _, o := range objs {
		must(t, k.c.Create(ctx, o))
	}
	for _, n := range k.nodes {
		startAgent(t, n.ns, n.name, n.dir, "", "--kubeconfig", kubeconfig, "--namespace", "sluice-system")
	}
	return k
}

// service creates Service demo/name (TCP port 80 to the pods' 8080, UDP port 53 too) shaped
// by f, and returns it as the API server completed it (cluster IPs, node ports).
func (k *kubeCluster) service(t *testing.T, name string, f func(*corev1.Service)) *corev1.Service {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: name}, Spec: corev1.ServiceSpec{
		Type: corev1.ServiceTypeClusterIP,
		Ports: []corev1.ServicePort{{Name: "tcp", Port: 80, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt32(8080)},
			{Name: "udp", Port: 53, Protocol: corev1.ProtocolUDP, TargetPort: intstr.FromInt32(8080)}},
	}}
	if f != nil {
		f(svc)
	}
	must(t, k.c.Create(ctx, svc))
	return svc
}

// endpoint is a pod in an EndpointSlice, with its conditions.
type endpoint struct {
	pod                         string
	ready, serving, terminating bool
}

func ready(pod string) endpoint { return endpoint{pod: pod, ready: true, serving: true} }

// endpoints writes Service name's EndpointSlices (one per family), as the EndpointSlice
// controller would: the pods with their nodes and conditions.
func (k *kubeCluster) endpoints(t *testing.T, name string, eps ...endpoint) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, fam := range []discoveryv1.AddressType{discoveryv1.AddressTypeIPv4, discoveryv1.AddressTypeIPv6} {
		tcp, udp, port := "tcp", "udp", int32(8080)
		pTCP, pUDP := corev1.ProtocolTCP, corev1.ProtocolUDP
		es := &discoveryv1.EndpointSlice{
			ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: name + "-" + strings.ToLower(string(fam)),
				Labels: map[string]string{discoveryv1.LabelServiceName: name}},
			AddressType: fam,
			Ports:       []discoveryv1.EndpointPort{{Name: &tcp, Port: &port, Protocol: &pTCP}, {Name: &udp, Port: &port, Protocol: &pUDP}},
			Endpoints:   []discoveryv1.Endpoint{},
		}
		for _, e := range eps {
			p := k.pods[e.pod]
			addr := p.addr4
			if fam == discoveryv1.AddressTypeIPv6 {
				addr = p.addr6
			}
			es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{Addresses: []string{addr}, NodeName: &p.node.name,
				Conditions: discoveryv1.EndpointConditions{Ready: &e.ready, Serving: &e.serving, Terminating: &e.terminating}})
		}
		var cur discoveryv1.EndpointSlice
		err := k.c.Get(ctx, client.ObjectKeyFromObject(es), &cur)
		switch {
		case apierrors.IsNotFound(err):
			must(t, k.c.Create(ctx, es))
		case err == nil:
			es.ResourceVersion = cur.ResourceVersion
			must(t, k.c.Update(ctx, es))
		default:
			t.Fatal(err)
		}
	}
}

// lbAddress waits for the LoadBalancer Service's address, written by the agents' IPAM leader.
func (k *kubeCluster) lbAddress(t *testing.T, name string) string {
	t.Helper()
	var ip string
	waitUpTo(t, 30*time.Second, name+"'s address from the IPPool", func() bool {
		var svc corev1.Service
		must(t, k.c.Get(context.Background(), client.ObjectKey{Namespace: "demo", Name: name}, &svc))
		if ing := svc.Status.LoadBalancer.Ingress; len(ing) > 0 {
			ip = ing[0].IP
		}
		return ip != ""
	})
	return ip
}

// askPod asks from a pod n times; every answer must name want as the socket's peer (the
// Service address, as getpeername reports it). It returns the answers by server.
func askPod(t *testing.T, p *clusterPod, network string, want netip.AddrPort, n int) map[string]int {
	t.Helper()
	by := map[string]int{}
	answers, err := p.client().AskN(network, want.String(), n)
	if err != nil {
		t.Fatalf("pod %s: %s to %s: %v", p.name, network, want, err)
	}
	for _, a := range answers {
		if a.Remote != want {
			t.Fatalf("pod %s: %s to %s: the socket's peer is %s, want the Service address", p.name, network, want, a.Remote)
		}
		by[a.Server]++
	}
	return by
}

// waitPod waits until a pod's request to addr is answered (the agents have the Service).
func waitPod(t *testing.T, p *clusterPod, network string, addr netip.AddrPort) {
	t.Helper()
	waitFor(t, fmt.Sprintf("pod %s to reach %s", p.name, addr), func() bool {
		_, err := p.client().Ask(network, addr.String())
		return err == nil
	})
}

func clusterIP(svc *corev1.Service, fam corev1.IPFamily) netip.Addr {
	for _, s := range svc.Spec.ClusterIPs {
		if a := netip.MustParseAddr(s); a.Is4() == (fam == corev1.IPv4Protocol) {
			return a
		}
	}
	return netip.Addr{}
}

func servers(by map[string]int) []string {
	var out []string
	for s := range by {
		out = append(out, s)
	}
	slices.Sort(out)
	return out
}

// TestKubeCluster ports the behaviours of Kubernetes' sig-network Service e2e tests to a
// three-node cluster in Kubernetes mode, each subtest named after the behaviour it checks.
func TestKubeCluster(t *testing.T) {
	k := newKubeCluster(t)
	cl := traffic.NewClient(k.client)
	cl.Timeout = time.Second

	t.Run("ServeBasicEndpointFromPodsOverClusterIP", func(t *testing.T) {
		// "should serve a basic endpoint from pods": every endpoint, on any node, over
		// both families, TCP and UDP, from a pod on each node.
		svc := k.service(t, "basic", func(s *corev1.Service) {
			pol := corev1.IPFamilyPolicyRequireDualStack
			s.Spec.IPFamilyPolicy = &pol
		})
		k.endpoints(t, "basic", ready("a1"), ready("b1"), ready("c1"))
		v4, v6 := clusterIP(svc, corev1.IPv4Protocol), clusterIP(svc, corev1.IPv6Protocol)
		for _, from := range []string{"a2", "b2", "c2"} {
			p := k.pods[from]
			waitPod(t, p, traffic.TCP, netip.AddrPortFrom(v4, 80))
			for _, tc := range []struct {
				network string
				to      netip.AddrPort
			}{
				{traffic.TCP, netip.AddrPortFrom(v4, 80)},
				{traffic.TCP, netip.AddrPortFrom(v6, 80)},
				{traffic.UDPUnconnected, netip.AddrPortFrom(v4, 53)},
			} {
				if by := askPod(t, p, tc.network, tc.to, 24); len(by) != 3 {
					t.Errorf("pod %s: %s to %s answered by %v, want a1, b1 and c1", from, tc.network, tc.to, servers(by))
				}
			}
		}
	})

	t.Run("FunctioningNodePortService", func(t *testing.T) {
		// "should be able to create a functioning NodePort service": every node's address
		// serves the node port, also where the endpoint is on another node (SNAT).
		svc := k.service(t, "nodeport", func(s *corev1.Service) { s.Spec.Type = corev1.ServiceTypeNodePort })
		k.endpoints(t, "nodeport", ready("b1"))
		np := svc.Spec.Ports[0].NodePort
		for _, n := range k.nodes {
			addr := fmt.Sprintf("%s:%d", n.addr4, np)
			waitFor(t, "node port "+addr, func() bool { _, err := cl.Ask("tcp", addr); return err == nil })
			if r := cl.Spread("tcp", addr, 10, 2); r.Failed != 0 || r.ByServer["b1"] != 10 {
				t.Errorf("node port on %s: %v, want every connection answered by b1", n.name, r)
			}
		}
	})

	t.Run("FunctioningLoadBalancerService", func(t *testing.T) {
		// "should be able to create a functioning LoadBalancer service": the address LB-IPAM
		// gives it is announced (ARP) and reaches the endpoints on every node.
		k.service(t, "lb", func(s *corev1.Service) { s.Spec.Type = corev1.ServiceTypeLoadBalancer })
		k.endpoints(t, "lb", ready("a1"), ready("b1"), ready("c1"))
		vip := k.lbAddress(t, "lb") + ":80"
		waitFor(t, "the LoadBalancer address", func() bool { _, err := cl.Ask("tcp", vip); return err == nil })
		if r := cl.Spread("tcp", vip, 60, 4); r.Failed != 0 || len(r.ByServer) != 3 {
			t.Errorf("60 connections to %s: %v, want every one answered, by a1, b1 and c1", vip, r)
		}
	})

	t.Run("PreserveSourceIPExternalTrafficPolicyLocal", func(t *testing.T) {
		// "should only target nodes with endpoints" and "should work for type=NodePort" of
		// the ESIPP tests: the node with an endpoint serves with the client's address kept and
		// its health check node port says 200; the others refuse and say 503.
		svc := k.service(t, "local", func(s *corev1.Service) {
			s.Spec.Type = corev1.ServiceTypeLoadBalancer
			s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
		})
		k.endpoints(t, "local", ready("a1"))
		np, hc := svc.Spec.Ports[0].NodePort, svc.Spec.HealthCheckNodePort
		a := k.nodes[0]
		addr := fmt.Sprintf("%s:%d", a.addr4, np)
		waitFor(t, "node-a's node port", func() bool { _, err := cl.Ask("tcp", addr); return err == nil })
		server, peer, err := cl.Peer(addr)
		if err != nil || server != "a1" || peer != netip.MustParseAddr("198.18.8.2") {
			t.Errorf("node-a's node port: %s saw %s (%v), want a1 to see the client 198.18.8.2", server, peer, err)
		}
		for _, n := range k.nodes[1:] {
			if _, err := cl.Ask("tcp", fmt.Sprintf("%s:%d", n.addr4, np)); err == nil {
				t.Errorf("%s, without an endpoint, answered on the node port", n.name)
			}
		}
		for _, n := range k.nodes {
			want := 503
			if n == a {
				want = 200
			}
			waitFor(t, fmt.Sprintf("%s's health check node port to say %d", n.name, want), func() bool {
				return httpStatus(t, k.client, fmt.Sprintf("http://%s:%d/", n.addr4, hc)) == want
			})
		}
	})

	t.Run("InternalTrafficPolicyLocal", func(t *testing.T) {
		// "should respect internalTrafficPolicy=Local Pod to Pod": a pod reaches only its
		// own node's endpoints; on a node without one, the connection is refused.
		svc := k.service(t, "itp", func(s *corev1.Service) {
			pol := corev1.ServiceInternalTrafficPolicyLocal
			s.Spec.InternalTrafficPolicy = &pol
		})
		k.endpoints(t, "itp", ready("a1"), ready("b1"))
		to := netip.AddrPortFrom(clusterIP(svc, corev1.IPv4Protocol), 80)
		for from, want := range map[string]string{"a2": "a1", "b2": "b1"} {
			waitPod(t, k.pods[from], traffic.TCP, to)
			if by := askPod(t, k.pods[from], traffic.TCP, to, 10); by[want] != 10 {
				t.Errorf("pod %s: answered by %v, want only %s", from, by, want)
			}
		}
		if _, err := k.pods["c2"].client().Ask(traffic.TCP, to.String()); !errors.Is(err, traffic.ErrRefused) {
			t.Errorf("pod c2 on a node without an endpoint: %v, want connection refused", err)
		}
	})

	t.Run("SessionAffinityClientIP", func(t *testing.T) {
		// "should have session affinity work for service with type clusterIP" and "for
		// NodePort service": every connection of a client goes to one endpoint.
		svc := k.service(t, "affinity", func(s *corev1.Service) {
			s.Spec.Type = corev1.ServiceTypeNodePort
			s.Spec.SessionAffinity = corev1.ServiceAffinityClientIP
		})
		k.endpoints(t, "affinity", ready("a1"), ready("b1"), ready("c1"))
		to := netip.AddrPortFrom(clusterIP(svc, corev1.IPv4Protocol), 80)
		waitPod(t, k.pods["a2"], traffic.TCP, to)
		if by := askPod(t, k.pods["a2"], traffic.TCP, to, 12); len(by) != 1 {
			t.Errorf("pod a2 over the cluster IP: answered by %v, want one endpoint", servers(by))
		}
		addr := fmt.Sprintf("%s:%d", k.nodes[1].addr4, svc.Spec.Ports[0].NodePort)
		waitFor(t, "the node port", func() bool { _, err := cl.Ask("tcp", addr); return err == nil })
		if r := cl.Spread("tcp", addr, 12, 1); r.Failed != 0 || len(r.ByServer) != 1 {
			t.Errorf("the client over node-b's node port: %v, want one endpoint for every connection", r)
		}
	})

	t.Run("EndpointsChangingUnderLoad", func(t *testing.T) {
		// Endpoints come and go (one added, one terminating and then removed) while a client
		// opens a connection every 20 ms and a pod keeps connecting: no connection fails.
		svc := k.service(t, "churn", func(s *corev1.Service) { s.Spec.Type = corev1.ServiceTypeLoadBalancer })
		k.endpoints(t, "churn", ready("a1"), ready("b1"))
		vip := k.lbAddress(t, "churn") + ":80"
		to := netip.AddrPortFrom(clusterIP(svc, corev1.IPv4Protocol), 80)
		waitFor(t, "the LoadBalancer address", func() bool { _, err := cl.Ask("tcp", vip); return err == nil })
		waitPod(t, k.pods["c2"], traffic.TCP, to)

		probe := cl.Probe("tcp", vip, 20*time.Millisecond)
		// The pod's process opens 100 connections a run (50 bare, 50 with a request, 2 at a
		// time), run after run; a run with a failed connection fails.
		podConns, podErrs := 0, []error{}
		stop := make(chan struct{})
		done := make(chan struct{})
		go func() {
			defer close(done)
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := k.pods["c2"].client().Connects(to.String(), 50, 2); err != nil {
					podErrs = append(podErrs, err)
				}
				podConns += 100
			}
		}()
		for _, eps := range [][]endpoint{
			{ready("a1"), ready("b1"), ready("c1")},
			{{pod: "a1", serving: true, terminating: true}, ready("b1"), ready("c1")},
			{ready("b1"), ready("c1")},
			{ready("b1"), ready("c1"), ready("a2")},
		} {
			k.endpoints(t, "churn", eps...)
			time.Sleep(time.Second)
		}
		close(stop)
		<-done
		r := probe.Stop()
		if len(r.Answers) != r.Sent || r.Sent < 100 {
			t.Errorf("client: %d of %d connections answered, want all (and at least 100)", len(r.Answers), r.Sent)
		}
		if len(podErrs) != 0 || podConns < 100 {
			t.Errorf("pod: %d connections, failures %v; want none (and at least 100 connections)", podConns, podErrs)
		}
		late := map[string]int{}
		for _, a := range r.Answers[len(r.Answers)*3/4:] {
			late[a.Server]++
		}
		if late["a1"] != 0 {
			t.Errorf("the removed endpoint a1 still took new connections at the end: %v", late)
		}
	})

	t.Run("ServiceDeleted", func(t *testing.T) {
		// "should release NodePorts on delete" and "should stop serving a deleted Service":
		// once the Service is gone, its node port and cluster IP no longer lead anywhere.
		svc := k.service(t, "gone", func(s *corev1.Service) { s.Spec.Type = corev1.ServiceTypeNodePort })
		k.endpoints(t, "gone", ready("a1"))
		addr := fmt.Sprintf("%s:%d", k.nodes[2].addr4, svc.Spec.Ports[0].NodePort)
		to := netip.AddrPortFrom(clusterIP(svc, corev1.IPv4Protocol), 80)
		waitFor(t, "the node port", func() bool { _, err := cl.Ask("tcp", addr); return err == nil })
		waitPod(t, k.pods["b2"], traffic.TCP, to)
		must(t, k.c.Delete(context.Background(), svc))
		waitFor(t, "the node port to stop answering", func() bool { _, err := cl.Ask("tcp", addr); return err != nil })
		waitFor(t, "the cluster IP to lead nowhere", func() bool {
			_, err := k.pods["b2"].client().Ask(traffic.TCP, to.String())
			return err != nil
		})
	})
}

// httpStatus is the status code of GET url from namespace ns (0 if it failed).
func httpStatus(t *testing.T, ns *lab.Namespace, url string) int {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	out, err := ns.Exec(ctx, "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", url)
	if err != nil {
		return 0
	}
	return atoi(t, strings.TrimSpace(string(out)))
}
