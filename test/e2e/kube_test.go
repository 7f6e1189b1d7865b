package e2e

import (
	"context"
	"net/url"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sluice-lb/sluice/test/kubeapi"
	"github.com/sluice-lb/sluice/test/lab"
	"github.com/sluice-lb/sluice/test/traffic"
)

// kubeNode is the single-node lab with its agent in Kubernetes mode: it reads Services,
// EndpointSlices and Nodes from a real API server through informers. The API server runs in
// the test's namespace; the node reaches it on the same address and port inside its own
// namespace, relayed (lab.Forward), so the relay can also be cut: an outage.
type kubeNode struct {
	*singleNode
	env   *kubeapi.Env
	relay *lab.Forwarder
}

func newKubeNode(t *testing.T, backends int) *kubeNode {
	k := &kubeNode{singleNode: newSingleNode(t, backends), env: kubeapi.Start(t, kubeapi.Options{})}
	k.connect(t)
	t.Cleanup(func() { k.disconnect(t) })
	k.env.KubeConfigFile(t, k.dir)
	return k
}

// relayAPI relays the connections made in ns to env's API server, at the server's own
// address: processes in ns use env's kubeconfig as it is. The caller closes the relay.
func relayAPI(t testing.TB, env *kubeapi.Env, ns *lab.Namespace) *lab.Forwarder {
	t.Helper()
	u, err := url.Parse(env.Host)
	must(t, err)
	relay, err := ns.Forward(u.Host, u.Host)
	must(t, err)
	return relay
}

// connect relays the node's connections to the API server; disconnect cuts them.
func (k *kubeNode) connect(t *testing.T) {
	t.Helper()
	k.relay = relayAPI(t, k.env, k.node)
}

func (k *kubeNode) disconnect(t *testing.T) {
	t.Helper()
	if k.relay != nil {
		must(t, k.relay.Close())
		k.relay = nil
	}
}

func (k *kubeNode) startKubeAgent(t *testing.T, flags ...string) {
	t.Helper()
	k.agent = startAgent(t, k.node, "node", k.dir, "", k.kubeFlags(flags...)...)
}

func (k *kubeNode) kubeFlags(flags ...string) []string {
	return append([]string{"--kubeconfig", filepath.Join(k.dir, "kubeconfig"), "--namespace", "sluice-system"}, flags...)
}

// endpointSlice is Service name's slice with the backends at addrs, port 8080.
func endpointSlice(name string, addrs ...string) *discoveryv1.EndpointSlice {
	port, proto, portName := int32(8080), corev1.ProtocolTCP, "tcp"
	es := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: "demo", Name: name, Labels: map[string]string{discoveryv1.LabelServiceName: name}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: &portName, Port: &port, Protocol: &proto}},
	}
	for _, a := range addrs {
		ready := true
		es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{Addresses: []string{a}, Conditions: discoveryv1.EndpointConditions{Ready: &ready}})
	}
	return es
}

// TestKubeAPIServerOutage: in Kubernetes mode the datapath follows the API server's Services
// and EndpointSlices; while the API server cannot be reached, the datapath keeps serving
// what it had (established connections and new ones), and once it is back the agent catches
// up with what changed meanwhile. An agent that starts while the API server is away waits for
// it: it neither exits nor prunes the datapath before its first sync.
func TestKubeAPIServerOutage(t *testing.T) {
	k := newKubeNode(t, 2)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := k.env.Client
	for _, o := range []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "demo"}},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "sluice-system"}},
		&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node"}},
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: "web"}, Spec: corev1.ServiceSpec{
			Type:  corev1.ServiceTypeLoadBalancer,
			Ports: []corev1.ServicePort{{Name: "tcp", Port: 80, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt32(8080)}},
		}},
		endpointSlice("web", "198.51.100.11"),
	} {
		must(t, c.Create(ctx, o))
	}
	var svc corev1.Service
	must(t, c.Get(ctx, client.ObjectKey{Namespace: "demo", Name: "web"}, &svc))
	svc.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: vip4}}
	must(t, c.Status().Update(ctx, &svc))

	k.startKubeAgent(t, "--ipam-controller=false")
	cl := traffic.NewClient(k.client)
	waitUpTo(t, 30*time.Second, "the Service from the API server served", func() bool {
		r := cl.Spread("tcp", tcp4, 10, 2)
		return r.Failed == 0 && r.ByServer["be1"] == 10
	})
	session, err := cl.Hold(tcp4, 100*time.Millisecond)
	must(t, err)

	// The API server goes away; the endpoint changes meanwhile.
	k.disconnect(t)
	var es discoveryv1.EndpointSlice
	must(t, c.Get(ctx, client.ObjectKey{Namespace: "demo", Name: "web"}, &es))
	es.Endpoints = endpointSlice("web", "198.51.100.12").Endpoints
	must(t, c.Update(ctx, &es))
	time.Sleep(2 * time.Second)
	if r := cl.Spread("tcp", tcp4, 10, 2); r.Failed != 0 || r.ByServer["be1"] != 10 {
		t.Fatalf("during the outage: %v; want every new connection answered as before, by be1", r)
	}
	if n, err := session.Stop(); err != nil {
		t.Fatalf("an established connection during the outage: %v", err)
	} else if n < 10 {
		t.Fatalf("only %d exchanges on the established connection", n)
	}
	select {
	case <-k.agent.Done():
		t.Fatalf("the agent exited during the outage: %v\n%s", k.agent.Err(), k.agent.Output())
	default:
	}

	// Back: the agent resyncs and the change reaches the datapath.
	k.connect(t)
	// client-go's reflectors retry with a backoff of seconds.
	waitUpTo(t, time.Minute, "the change made during the outage served", func() bool {
		r := cl.Spread("tcp", tcp4, 10, 2)
		return r.Failed == 0 && r.ByServer["be2"] == 10
	})

	// The agent dies and starts again, with its default settings (the IPAM controller too),
	// while the API server is away: it has nothing to go by, so it does not exit, prunes
	// nothing — the pinned datapath serves as it was — and is not ready; once the API server
	// is back it syncs, and then serves what changed.
	k.disconnect(t)
	must(t, syscall.Kill(k.agent.PID, syscall.SIGKILL))
	<-k.agent.Done()
	must(t, c.Get(ctx, client.ObjectKey{Namespace: "demo", Name: "web"}, &es))
	es.Endpoints = endpointSlice("web", "198.51.100.11").Endpoints
	must(t, c.Update(ctx, &es))
	k.agent, err = k.node.Start(agentBin, agentArgs(t, k.node, "node", k.dir, "", k.kubeFlags()...)...)
	must(t, err)
	time.Sleep(2 * time.Second)
	if r := cl.Spread("tcp", tcp4, 10, 2); r.Failed != 0 || r.ByServer["be2"] != 10 {
		t.Fatalf("a restarted agent without its API server: %v; want every connection answered as before, by be2\n%s", r, k.agent.Output())
	}
	select {
	case <-k.agent.Done():
		t.Fatalf("the restarted agent exited without its API server: %v\n%s", k.agent.Err(), k.agent.Output())
	default:
	}
	if got := k.metric(t, "sluice_datapath_writes_total"); got != "0" {
		t.Fatalf("the agent wrote %s map entries before it could sync", got)
	}
	ctxReady, cancelReady := context.WithTimeout(ctx, 2*time.Second)
	_, readyErr := k.node.Exec(ctxReady, "curl", "-sf", "http://127.0.0.1:9473/readyz")
	cancelReady()
	if readyErr == nil {
		t.Fatal("the agent says it is ready without having synced")
	}
	k.connect(t)
	waitUpTo(t, time.Minute, "the change made while the agent was down served", func() bool {
		r := cl.Spread("tcp", tcp4, 10, 2)
		return r.Failed == 0 && r.ByServer["be1"] == 10
	})
}
