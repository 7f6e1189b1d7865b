package source

import (
	"context"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sluice-lb/sluice/api/v1alpha1"
	"github.com/sluice-lb/sluice/internal/model"
	"github.com/sluice-lb/sluice/internal/testenv"
	"github.com/sluice-lb/sluice/test/kubeapi"
)

func TestMain(m *testing.M) { os.Exit(kubeapi.Main(m)) }

// TestKubeSource runs the Kubernetes source against a real API server: the initial objects
// arrive before Synced, changes and deletions follow, Secrets are read only in the agent's
// namespace, and the result builds into a model.
func TestKubeSource(t *testing.T) {
	env := kubeapi.Shared(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	name := kubeapi.UniqueName(t)
	agentNS, otherNS := name+"-sys", name+"-other"
	for _, ns := range []string{agentNS, otherNS} {
		if err := env.EnsureNamespace(ctx, ns); err != nil {
			t.Fatal(err)
		}
	}
	pool := &v1alpha1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1alpha1.IPPoolSpec{Blocks: []v1alpha1.IPBlock{{CIDR: "203.0.113.0/28"}}}}
	peer := &v1alpha1.BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1alpha1.BGPPeerSpec{
		PeerAddress: "198.51.100.1", PeerASN: 64512, LocalASN: 64513, PasswordSecretRef: &v1alpha1.SecretReference{Name: "md5"}}}
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: agentNS, Name: "md5"}, StringData: map[string]string{"password": "s3cret"}}
	foreign := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: otherNS, Name: "md5"}, StringData: map[string]string{"password": "nope"}}
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: otherNS, Name: "web"}, Spec: corev1.ServiceSpec{
		Type: corev1.ServiceTypeLoadBalancer, Ports: []corev1.ServicePort{{Port: 80}}}}
	for _, o := range []client.Object{pool, peer, secret, foreign, svc} {
		if err := env.Client.Create(ctx, o); err != nil {
			t.Fatalf("create %s: %v", o.GetName(), err)
		}
	}
	t.Cleanup(func() {
		for _, o := range []client.Object{pool, peer} {
			_ = env.Client.Delete(context.Background(), o)
		}
	})

	events := make(chan Event, 1024)
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- (&Kube{Config: env.Config, Namespace: agentNS}).Run(runCtx, events) }()
	store := NewStore()
	has := func(k Key) bool {
		objs, _ := store.List()
		for _, o := range objs {
			if KeyOf(o) == k {
				return true
			}
		}
		return false
	}
	until := func(what string, cond func() bool) {
		t.Helper()
		for !cond() {
			select {
			case ev := <-events:
				if err := store.Apply(ev); err != nil {
					t.Fatal(err)
				}
			case <-ctx.Done():
				t.Fatalf("timed out waiting for %s", what)
			}
		}
	}
	until("synced", store.Synced)
	for _, k := range []Key{{"IPPool", "", name}, {"BGPPeer", "", name}, {"Secret", agentNS, "md5"}, {"Service", otherNS, "web"}, {"Namespace", "", agentNS}} {
		if !has(k) {
			t.Fatalf("%s was not delivered before Synced", k)
		}
	}
	if has(Key{"Secret", otherNS, "md5"}) {
		t.Fatal("Secrets outside the agent's namespace must not be read")
	}

	// The objects build into a model, with the password read from the Secret.
	objs, _ := store.List()
	in, errs := model.Collect(objs)
	if len(errs) != 0 {
		t.Fatal(errs)
	}
	m, _ := model.Build(in, model.Options{Namespace: agentNS})
	var found bool
	for _, p := range m.Peers {
		if p.Name == name {
			found = p.Password == "s3cret"
		}
	}
	if m.Pool(name) == nil || !found {
		t.Fatalf("model lacks the pool or the peer's password: pools %v", m.Pools)
	}

	// Changes and deletions arrive.
	pool.Spec.Blocks[0].CIDR = "203.0.113.16/28"
	if err := env.Client.Update(ctx, pool); err != nil {
		t.Fatal(err)
	}
	until("pool update", func() bool {
		objs, _ := store.List()
		for _, o := range objs {
			if p, ok := o.(*v1alpha1.IPPool); ok && p.Name == name {
				return p.Spec.Blocks[0].CIDR == "203.0.113.16/28"
			}
		}
		return false
	})
	if err := env.Client.Delete(ctx, svc); err != nil {
		t.Fatal(err)
	}
	until("service deletion", func() bool { return !has(Key{"Service", otherNS, "web"}) })

	stop()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}

// TestKubeSourceSaysWhyItWaits: without one of the sluice.dev CRDs the informers cannot sync;
// the source says so, naming the CRD, and sends no Synced.
func TestKubeSourceSaysWhyItWaits(t *testing.T) {
	env := kubeapi.Start(t, kubeapi.Options{}) // its own: a CRD is deleted
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	crd := &unstructured.Unstructured{}
	crd.SetAPIVersion("apiextensions.k8s.io/v1")
	crd.SetKind("CustomResourceDefinition")
	crd.SetName("l2advertisements.sluice.dev")
	if err := env.Client.Delete(ctx, crd); err != nil {
		t.Fatal(err)
	}
	var logs testenv.Buffer
	k := &Kube{Config: env.Config, Namespace: "default", WaitReport: 100 * time.Millisecond,
		Log: slog.New(slog.NewTextHandler(&logs, nil))}
	events := make(chan Event, 1024)
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- k.Run(runCtx, events) }()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(logs.String(), "CRDs not installed: l2advertisements.sluice.dev") {
		if time.Now().After(deadline) {
			t.Fatalf("no word of the missing CRD; the log:\n%s", logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	close(events)
	for ev := range events {
		if ev.Type == Synced {
			t.Fatal("synced without the L2Advertisement CRD")
		}
	}
}
