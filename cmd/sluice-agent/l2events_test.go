package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sluice-lb/sluice/api/v1alpha1"
	"github.com/sluice-lb/sluice/internal/testenv"
)

// TestBinaryKubernetesL2Event: in Kubernetes mode the node that starts answering ARP/NDP for a
// Service's address records an Event on the Service saying so (reason L2Announced), and
// sluicectl l2 owners names it. The address comes from the agent's own LB-IPAM controller; the
// advertisement names an interface the test makes (a veth pair with no addresses, both ends
// in this namespace: nothing is listening on the other end), since
// the agent must reach the API server on loopback.
func TestBinaryKubernetesL2Event(t *testing.T) {
	testenv.RequirePrivileged(t)
	dummy := fmt.Sprintf("sltest%d", os.Getpid()%100000)
	link := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: dummy}, PeerName: dummy + "p"} // both ends here, no addresses
	if err := netlink.LinkAdd(link); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = netlink.LinkDel(link) })
	if err := netlink.LinkSetUp(link); err != nil {
		t.Fatal(err)
	}
	env, dir, kubeconfig := kubeLab(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, o := range []client.Object{
		&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-1"}},
		&v1alpha1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: "lan"}, Spec: v1alpha1.IPPoolSpec{Blocks: []v1alpha1.IPBlock{{CIDR: "203.0.113.0/28"}}}},
		&v1alpha1.L2Advertisement{ObjectMeta: metav1.ObjectMeta{Name: "lan"}, Spec: v1alpha1.L2AdvertisementSpec{Pools: []string{"lan"}, Interfaces: []string{dummy}}},
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: "web"}, Spec: corev1.ServiceSpec{
			Type: corev1.ServiceTypeLoadBalancer, Ports: []corev1.ServicePort{{Port: 80}}}},
	} {
		if err := env.Client.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	bin := filepath.Join(dir, "sluice-agent")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	stateDir := filepath.Join(dir, "state")
	logs := &testenv.Buffer{}
	cmd := exec.Command(bin, "--kubeconfig", kubeconfig, "--namespace", "sluice-system", "--node-name", "node-1",
		"--state-dir", stateDir, "--metrics-addr", "", "--health-addr", "", "--l2-heartbeat-port", fmt.Sprint(freePort(t, "127.0.0.1")))
	cmd.Stderr = logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })

	deadline := time.Now().Add(45 * time.Second)
	for {
		var list eventsv1.EventList
		if err := env.Client.List(ctx, &list, client.InNamespace("demo")); err != nil {
			t.Fatal(err)
		}
		found := false
		for _, e := range list.Items {
			if e.Reason == "L2Announced" && e.Regarding.Kind == "Service" && e.Regarding.Name == "web" && e.Regarding.UID != "" &&
				strings.Contains(e.Note, "node-1 answers ARP/NDP for 203.0.113.") && strings.Contains(e.Note, "on "+dummy) {
				t.Logf("Event: %s %s: %s", e.Type, e.Reason, e.Note)
				found = true
			}
		}
		if found {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no L2Announced Event on demo/web: %+v\nagent:\n%s", list.Items, logs)
		}
		time.Sleep(200 * time.Millisecond)
	}
	out, err := exec.Command("go", "run", "../sluicectl", "l2", "owners", "--state-dir", stateDir).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "demo/web") || !strings.Contains(string(out), "node-1") {
		t.Fatalf("sluicectl l2 owners: %v\n%s", err, out)
	}
	t.Logf("sluicectl l2 owners:\n%s", out)
}
