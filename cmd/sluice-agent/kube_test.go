package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sluice-lb/sluice/api/v1alpha1"
	"github.com/sluice-lb/sluice/internal/testenv"
	"github.com/sluice-lb/sluice/test/kubeapi"
)

// kubeLab starts an API server of the test's own with namespaces sluice-system and demo,
// and returns it with a temporary directory holding its kubeconfig.
func kubeLab(t *testing.T) (env *kubeapi.Env, dir, kubeconfig string) {
	t.Helper()
	env = kubeapi.Start(t, kubeapi.Options{})
	dir = t.TempDir()
	kubeconfig = filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(kubeconfig, env.KubeConfig, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, ns := range []string{"sluice-system", "demo"} {
		if err := env.EnsureNamespace(t.Context(), ns); err != nil {
			t.Fatal(err)
		}
	}
	return env, dir, kubeconfig
}

// TestBinaryKubernetesIPAM runs the real binary twice against a real API server: an agent
// (its IPAM controller on) and an --ipam-only instance. One of them leads and gives the
// LoadBalancer Service its address; stopped, the other takes the Lease over and serves the
// next Service.
func TestBinaryKubernetesIPAM(t *testing.T) {
	env, dir, kubeconfig := kubeLab(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	mustCreate := func(o client.Object) {
		t.Helper()
		if err := env.Client.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	mustCreate(&v1alpha1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: "lab"}, Spec: v1alpha1.IPPoolSpec{
		AvoidBuggyIPs: true, Blocks: []v1alpha1.IPBlock{{CIDR: "203.0.113.0/28"}}}})
	lbService := func(name string) *corev1.Service {
		return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: name}, Spec: corev1.ServiceSpec{
			Type: corev1.ServiceTypeLoadBalancer, Ports: []corev1.ServicePort{{Port: 80}}}}
	}
	mustCreate(lbService("first"))

	bin := filepath.Join(dir, "sluice-agent")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	type proc struct {
		name string
		cmd  *exec.Cmd
		logs *testenv.Buffer
		done chan error
	}
	start := func(name string, args ...string) *proc {
		p := &proc{name: name, logs: &testenv.Buffer{}, done: make(chan error, 1)}
		p.cmd = exec.Command(bin, append([]string{"--kubeconfig", kubeconfig, "--namespace", "sluice-system"}, args...)...)
		p.cmd.Stderr = p.logs
		if err := p.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() { p.done <- p.cmd.Wait() }()
		t.Cleanup(func() {
			if p.cmd.ProcessState == nil {
				_ = p.cmd.Process.Kill()
				<-p.done
			}
		})
		return p
	}
	agentProc := start("agent", "--node-name", "node-1", "--state-dir", filepath.Join(dir, "state"),
		"--metrics-addr", "127.0.0.1:0", "--health-addr", "127.0.0.1:0")
	onlyProc := start("ipam-only", "--ipam-only")

	waitIngress := func(name, want string) {
		t.Helper()
		deadline := time.Now().Add(45 * time.Second)
		for {
			var s corev1.Service
			if err := env.Client.Get(ctx, client.ObjectKey{Namespace: "demo", Name: name}, &s); err != nil {
				t.Fatal(err)
			}
			if len(s.Status.LoadBalancer.Ingress) == 1 && s.Status.LoadBalancer.Ingress[0].IP == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("Service %s: status %+v, want %s\nagent:\n%s\nipam-only:\n%s", name, s.Status, want, agentProc.logs, onlyProc.logs)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	waitIngress("first", "203.0.113.1")

	var lease coordinationv1.Lease
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: "sluice-system", Name: "sluice-ipam"}, &lease); err != nil || lease.Spec.HolderIdentity == nil {
		t.Fatalf("Lease sluice-system/sluice-ipam: %+v, %v", lease.Spec, err)
	}
	leader, other := agentProc, onlyProc
	if !strings.Contains(leader.logs.String(), "Successfully acquired lease") {
		leader, other = onlyProc, agentProc
	}
	if !strings.Contains(leader.logs.String(), "Successfully acquired lease") || strings.Contains(other.logs.String(), "Successfully acquired lease") {
		t.Fatalf("not exactly one leader\nagent:\n%s\nipam-only:\n%s", agentProc.logs, onlyProc.logs)
	}
	t.Logf("%s leads; stopping it", leader.name)
	if err := leader.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-leader.done:
		if err != nil {
			t.Fatalf("%s after SIGTERM: %v\n%s", leader.name, err, leader.logs)
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("%s still running 15s after SIGTERM", leader.name)
	}
	mustCreate(lbService("second"))
	waitIngress("second", "203.0.113.2")
	waitIngress("first", "203.0.113.1")
	if !strings.Contains(other.logs.String(), "Successfully acquired lease") {
		t.Errorf("%s served without saying it leads:\n%s", other.name, other.logs)
	}
}
