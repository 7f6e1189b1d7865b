package e2e

import (
	"context"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sluice-lb/sluice/api/v1alpha1"
	"github.com/sluice-lb/sluice/internal/testenv"
	"github.com/sluice-lb/sluice/test/kubeapi"
	"github.com/sluice-lb/sluice/test/peers"
	"github.com/sluice-lb/sluice/test/traffic"
)

// metallbCRDs serves MetalLB's kinds in the test's API server, schema-less: enough to hold a
// MetalLB user's objects as `kubectl get` returns them.
func metallbCRDs(t *testing.T, env *kubeapi.Env) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, k := range []struct{ kind, plural string }{
		{"IPAddressPool", "ipaddresspools"}, {"L2Advertisement", "l2advertisements"},
		{"BGPAdvertisement", "bgpadvertisements"}, {"BGPPeer", "bgppeers"}, {"Community", "communities"},
	} {
		version := func(name string, storage bool) map[string]any {
			return map[string]any{"name": name, "served": true, "storage": storage, "schema": map[string]any{
				"openAPIV3Schema": map[string]any{"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}
		}
		versions := []any{version("v1beta1", true)}
		if k.kind == "BGPPeer" {
			versions = []any{version("v1beta1", false), version("v1beta2", true)}
		}
		crd := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
			"metadata": map[string]any{"name": k.plural + ".metallb.io"},
			"spec": map[string]any{"group": "metallb.io", "scope": "Namespaced", "versions": versions,
				"names": map[string]any{"kind": k.kind, "plural": k.plural, "listKind": k.kind + "List", "singular": strings.ToLower(k.kind)}},
		}}
		must(t, env.Client.Create(ctx, crd))
	}
	waitUpTo(t, 30*time.Second, "MetalLB's CRDs served", func() bool {
		var l unstructured.UnstructuredList
		l.SetAPIVersion("metallb.io/v1beta2")
		l.SetKind("BGPPeerList")
		return env.Client.List(ctx, &l) == nil
	})
}

// metallbObjects is a MetalLB 0.14 user's configuration: a pool on the LAN announced by ARP
// and over BGP to the client's router, with a clear-text password and a community alias.
const metallbObjects = `
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {name: lan, namespace: metallb-system}
spec:
  addresses: [198.18.6.100-198.18.6.110]
---
apiVersion: metallb.io/v1beta1
kind: L2Advertisement
metadata: {name: lan, namespace: metallb-system}
spec:
  ipAddressPools: [lan]
---
apiVersion: metallb.io/v1beta1
kind: Community
metadata: {name: aliases, namespace: metallb-system}
spec:
  communities:
  - {name: lab, value: "64512:77"}
---
apiVersion: metallb.io/v1beta2
kind: BGPPeer
metadata: {name: router, namespace: metallb-system}
spec:
  myASN: 64513
  peerASN: 64512
  peerAddress: 198.18.6.2
  holdTime: 9s
  password: lab-secret
---
apiVersion: metallb.io/v1beta1
kind: BGPAdvertisement
metadata: {name: router, namespace: metallb-system}
spec:
  ipAddressPools: [lan]
  communities: [lab]
  peers: [router]
`

// TestMigrateFromMetalLB: a cluster configured for MetalLB, with Services that MetalLB
// addressed (one from an annotated pool, one at an address it asked for); sluicectl migrate
// metallb --from-cluster --apply writes Sluice's configuration into it; agents started on two
// nodes keep every Service's address, answer ARP for them, announce them to the router with
// the alias's community over a TCP-MD5 session, and serve them. Sluice is installed from
// manifests/sluice.yaml, and its agents and IPAM controller act as its ServiceAccounts.
func TestMigrateFromMetalLB(t *testing.T) {
	x, dir, env, kubeconfig := newKubeL2(t)
	metallbCRDs(t, env)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c := env.Client
	for _, ns := range []string{"metallb-system", "sluice-system", "demo"} {
		must(t, env.EnsureNamespace(ctx, ns))
	}
	mlb, err := kubeapi.DecodeObjects(strings.NewReader(metallbObjects))
	must(t, err)
	must(t, env.CreateObjects(ctx, mlb))

	// The Services as MetalLB left them: addressed, with its annotations.
	// grpc has the class MetalLB was run with (--lb-class metallb.io/lab): immutable, so
	// Sluice serves it with --lb-class.
	const class = "metallb.io/lab"
	want := map[string]string{"web": "198.18.6.105", "dns": "198.18.6.107", "grpc": "198.18.6.109"}
	for name, ann := range map[string]map[string]string{
		"web":  {"metallb.universe.tf/address-pool": "lan", "metallb.universe.tf/ip-allocated-from-pool": "lan"},
		"dns":  {"metallb.io/loadBalancerIPs": want["dns"], "metallb.io/allow-shared-ip": "dns"},
		"grpc": nil,
	} {
		svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: name, Annotations: ann}, Spec: corev1.ServiceSpec{
			Type:  corev1.ServiceTypeLoadBalancer,
			Ports: []corev1.ServicePort{{Name: "tcp", Port: 80, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt32(8080)}},
		}}
		if name == "grpc" {
			lbClass := class
			svc.Spec.LoadBalancerClass = &lbClass
		}
		must(t, c.Create(ctx, svc))
		svc.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: want[name]}}
		must(t, c.Status().Update(ctx, svc))
		must(t, c.Create(ctx, x.endpointSlice(name)))
	}
	x.routePods(t, ctx)
	for _, n := range x.nodes {
		must(t, c.Create(ctx, n.object(nil)))
	}

	// Convert, and write into the cluster.
	outFile := filepath.Join(dir, "sluice.yaml")
	cmd := exec.Command(ctlBin, "migrate", "metallb", "--from-cluster", "--apply", "--kubeconfig", kubeconfig, "-o", outFile)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("sluicectl migrate metallb: %v\n%s", err, out)
	}
	for _, s := range []string{"applied IPPool lan", "applied BGPPeer router", "applied Secret router-bgp-password",
		"moved into Secret sluice-system/router-bgp-password", "0 errors, 1 warnings",
		"warning: Service demo/grpc: spec.loadBalancerClass: class \"metallb.io/lab\" is not Sluice's default (sluice.dev/lb): run Sluice with --lb-class metallb.io/lab"} {
		if !strings.Contains(string(out), s) {
			t.Errorf("sluicectl migrate metallb says no %q:\n%s", s, out)
		}
	}
	written, err := os.ReadFile(outFile)
	must(t, err)
	if !strings.Contains(string(written), "kind: BGPAdvertisement") || !strings.Contains(string(written), "64512:77") {
		t.Errorf("%s:\n%s", outFile, written)
	}
	var peer v1alpha1.BGPPeer
	must(t, c.Get(ctx, client.ObjectKey{Name: "router"}, &peer))
	if peer.Spec.PasswordSecretRef == nil || peer.Spec.PeerASN != 64512 || peer.Spec.LocalASN != 64513 {
		t.Fatalf("BGPPeer router in the cluster: %+v", peer.Spec)
	}

	// Sluice installed from manifests/sluice.yaml (its RBAC and ServiceAccounts for real; no
	// kubelet runs its pods): the agents and the IPAM controller below act as their
	// ServiceAccounts, so they prove the Roles grant all they use.
	root, err := kubeapi.RepoRoot()
	must(t, err)
	kubectl := testenv.RequireAsset(t, "kubectl")
	if out, err := exec.Command(kubectl, "--kubeconfig", kubeconfig, "apply", "--server-side", "--force-conflicts",
		"-f", filepath.Join(root, "manifests", "sluice.yaml")).CombinedOutput(); err != nil {
		t.Fatalf("kubectl apply -f manifests/sluice.yaml: %v\n%s", err, out)
	}
	as := func(sa string) string {
		data, err := env.KubeConfigAs("sluice-system", sa)
		must(t, err)
		path := filepath.Join(dir, "kubeconfig-"+sa)
		must(t, os.WriteFile(path, data, 0o600))
		return path
	}
	agentKubeconfig, ipamKubeconfig := as("sluice-agent"), as("sluice-ipam")

	// The router, then Sluice on both nodes.
	var neighbors []peers.Neighbor
	for _, n := range x.nodes {
		neighbors = append(neighbors, peers.Neighbor{Address: netip.MustParseAddr(n.addr), ASN: 64513, Password: "lab-secret"})
	}
	frr := peers.StartForTest(t, peers.StartFRR, x.client.Name, peers.Config{
		RouterID: netip.MustParseAddr("198.18.6.2"), ASN: 64512, HoldTime: 9 * time.Second, Neighbors: neighbors})
	ipamCtl, err := x.nodes[0].ns.Start(agentBin, "--ipam-only", "--kubeconfig", ipamKubeconfig, "--namespace", "sluice-system", "--lb-class", class,
		"--metrics-addr", "127.0.0.1:19472", "--health-addr", "127.0.0.1:19473")
	must(t, err)
	waitFor(t, "the IPAM controller's /readyz", func() bool {
		ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		_, err := x.nodes[0].ns.Exec(ctx, "curl", "-sf", "http://127.0.0.1:19473/readyz")
		return err == nil
	})
	for _, n := range x.nodes {
		n.agent = startAgent(t, n.ns, n.name, n.dir, "", "--kubeconfig", agentKubeconfig, "--namespace", "sluice-system", "--ipam-controller=false", "--lb-class", class)
	}

	for name, ip := range want {
		prefix := netip.MustParsePrefix(ip + "/32")
		if _, err := frr.WaitRoute(ctx, prefix); err != nil {
			t.Fatalf("%s's %s at the router: %v\nnode-a:\n%s\nIPAM controller:\n%s", name, ip, err, x.nodes[0].agent.Output(), ipamCtl.Output())
		}
		a, err := frr.Attributes(ctx, prefix)
		must(t, err)
		if len(a.NextHops) == 0 || !slices.Equal(a.Communities, []string{"64512:77"}) {
			t.Errorf("%s at the router: %+v; want a next hop and the community 64512:77", prefix, a)
		}
	}
	// The leader's controller has run (the routes come from its allocation): the addresses
	// are still MetalLB's.
	for name, ip := range want {
		var svc corev1.Service
		must(t, c.Get(ctx, client.ObjectKey{Namespace: "demo", Name: name}, &svc))
		if ing := svc.Status.LoadBalancer.Ingress; len(ing) != 1 || ing[0].IP != ip {
			t.Errorf("Service %s: status %+v; want MetalLB's %s kept", name, ing, ip)
		}
	}
	// Nobody was refused anything: RBAC granted every call the components made.
	for _, p := range []interface{ Output() string }{x.nodes[0].agent, x.nodes[1].agent, ipamCtl} {
		if out := p.Output(); strings.Contains(out, "forbidden") {
			t.Errorf("a component was refused by RBAC:\n%s", out)
		}
	}
	cl := traffic.NewClient(x.client)
	cl.Timeout = 500 * time.Millisecond
	for name, ip := range want {
		if r := cl.Spread("tcp", ip+":80", 40, 4); r.Failed != 0 || len(r.ByServer) != 2 {
			t.Errorf("40 connections to %s (%s): %v; want all answered, by both endpoints", name, ip, r)
		}
	}
	ctxArp, cancelArp := context.WithTimeout(ctx, 10*time.Second)
	defer cancelArp()
	arp, _ := x.client.Exec(ctxArp, "arping", "-i", "eth0", "-c", "2", "-W", "0.2", want["web"])
	if !strings.Contains(string(arp), "bytes from") {
		t.Errorf("arping %s: no reply:\n%s", want["web"], arp)
	}
}
