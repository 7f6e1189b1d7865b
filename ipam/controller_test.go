package ipam

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sluice-lb/sluice/api/v1alpha1"
	"github.com/sluice-lb/sluice/test/kubeapi"
)

func TestMain(m *testing.M) { os.Exit(kubeapi.Main(m)) }

// The controller tests run against a real kube-apiserver and etcd, each test on its own
// (pools are cluster-wide, and the allocator reads them all).

type cluster struct {
	t   *testing.T
	env *kubeapi.Env
	ctx context.Context
}

func newCluster(t *testing.T) *cluster {
	env := kubeapi.Start(t, kubeapi.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	c := &cluster{t: t, env: env, ctx: ctx}
	for _, ns := range []string{"demo", "other", "sluice-system"} {
		if err := env.EnsureNamespace(ctx, ns); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

func (c *cluster) create(objs ...client.Object) {
	c.t.Helper()
	for _, o := range objs {
		if err := c.env.Client.Create(c.ctx, o); err != nil {
			c.t.Fatalf("create %T %s: %v", o, o.GetName(), err)
		}
	}
}

// run starts a controller until the returned stop is called (or the test ends).
func (c *cluster) run(opts ControllerOptions) (*Controller, func()) {
	c.t.Helper()
	opts.Config = c.env.Config
	opts.Log = slog.New(slog.NewTextHandler(c.t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	ctl, err := NewController(opts)
	if err != nil {
		c.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(c.ctx)
	done := make(chan error, 1)
	go func() { done <- ctl.Start(ctx) }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			c.t.Errorf("controller: %v", err)
		}
	}
	c.t.Cleanup(stop)
	return ctl, stop
}

func (c *cluster) service(ns, name string) *corev1.Service {
	c.t.Helper()
	var s corev1.Service
	if err := c.env.Client.Get(c.ctx, client.ObjectKey{Namespace: ns, Name: name}, &s); err != nil {
		c.t.Fatal(err)
	}
	return &s
}

func ingressOf(s *corev1.Service) string {
	var ips []string
	for _, in := range s.Status.LoadBalancer.Ingress {
		ips = append(ips, in.IP)
	}
	return strings.Join(ips, " ")
}

// waitService waits until Service ns/name satisfies cond, and returns it.
func (c *cluster) waitService(ns, name, what string, cond func(*corev1.Service) bool) *corev1.Service {
	c.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		s := c.service(ns, name)
		if cond(s) {
			return s
		}
		if time.Now().After(deadline) {
			cnd := meta.FindStatusCondition(s.Status.Conditions, ConditionAllocated)
			c.t.Fatalf("%s/%s: timed out waiting for %s; status %q, condition %+v, annotations %v", ns, name, what, ingressOf(s), cnd, s.Annotations)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitAllocated waits for Service ns/name's condition to have reason and its status ips.
func (c *cluster) waitAllocated(ns, name, ips string, status metav1.ConditionStatus, reason Reason) *corev1.Service {
	c.t.Helper()
	return c.waitService(ns, name, fmt.Sprintf("%q %s %s", ips, status, reason), func(s *corev1.Service) bool {
		cnd := meta.FindStatusCondition(s.Status.Conditions, ConditionAllocated)
		return ingressOf(s) == ips && cnd != nil && cnd.Status == status && cnd.Reason == string(reason)
	})
}

func (c *cluster) waitPool(name, what string, cond func(*v1alpha1.IPPool) bool) *v1alpha1.IPPool {
	c.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var p v1alpha1.IPPool
		if err := c.env.Client.Get(c.ctx, client.ObjectKey{Name: name}, &p); err != nil {
			c.t.Fatal(err)
		}
		if cond(&p) {
			return &p
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("pool %s: timed out waiting for %s; status %+v", name, what, p.Status)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitEvent waits for an Event about Service ns/name that match accepts (Events are sent
// asynchronously, after the write they report).
func (c *cluster) waitEvent(ns, name, what string, match func(eventsv1.Event) bool) {
	c.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		evs := c.eventsOf(ns, name)
		if slices.ContainsFunc(evs, match) {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("%s/%s: no event %s among %+v", ns, name, what, evs)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// eventsOf lists the events.k8s.io Events about Service ns/name.
func (c *cluster) eventsOf(ns, name string) []eventsv1.Event {
	var list eventsv1.EventList
	if err := c.env.Client.List(c.ctx, &list, client.InNamespace(ns)); err != nil {
		c.t.Fatal(err)
	}
	var out []eventsv1.Event
	for _, e := range list.Items {
		if e.Regarding.Kind == "Service" && e.Regarding.Name == name {
			out = append(out, e)
		}
	}
	return out
}

func kpool(name string, blocks string, opts ...poolOpt) *v1alpha1.IPPool {
	p := pool(name, 0, blocks, opts...)
	p.CreationTimestamp = metav1.Time{}
	return p
}

func ksvc(key string, opts ...svcOpt) *corev1.Service {
	s := service(key, 0, opts...)
	s.CreationTimestamp = metav1.Time{}
	s.Status = corev1.ServiceStatus{}
	return s
}

// TestController: Services get addresses, conditions, the pool annotation and events; pools
// get their status; a taken address, an overlapping pool and a shrunk pool are each reported
// where they belong and break nothing else; a deleted Service's address goes to a later one.
func TestController(t *testing.T) {
	c := newCluster(t)
	c.create(kpool("lab", "203.0.113.0/29 2001:db8:100::1-2001:db8:100::ff", avoidBuggy))
	c.create(ksvc("demo/s1", policy(corev1.IPFamilyPolicyPreferDualStack)))
	time.Sleep(1100 * time.Millisecond) // creation timestamps have 1 s resolution: s1 is older
	c.create(ksvc("demo/s2"), ksvc("demo/s3", annotated("metallb.io/loadBalancerIPs", "203.0.113.5")))
	c.run(ControllerOptions{})

	s1 := c.waitAllocated("demo", "s1", "203.0.113.1 2001:db8:100::1", metav1.ConditionTrue, Allocated)
	if s1.Annotations[AnnotationAllocatedPool] != "lab" {
		t.Errorf("s1 annotations %v", s1.Annotations)
	}
	c.waitAllocated("demo", "s2", "203.0.113.2", metav1.ConditionTrue, Allocated)
	c.waitAllocated("demo", "s3", "203.0.113.5", metav1.ConditionTrue, Allocated)
	c.waitEvent("demo", "s1", "AddressesAllocated", func(e eventsv1.Event) bool {
		return e.Reason == "AddressesAllocated" && strings.Contains(e.Note, "203.0.113.1 from pool lab")
	})
	c.waitPool("lab", "use counted", func(p *v1alpha1.IPPool) bool {
		v := meta.FindStatusCondition(p.Status.Conditions, PoolConditionValid)
		return v != nil && v.Status == metav1.ConditionTrue && slices.Equal(p.Status.Addresses, []v1alpha1.AddressCount{
			{Family: "IPv4", Used: 3, Free: "4"}, {Family: "IPv6", Used: 1, Free: "254"}})
	})

	// A taken address: the Service is told why, with a warning event; nothing else moves.
	c.create(ksvc("other/wants-5", annotated("sluice.dev/ips", "203.0.113.5")))
	s := c.waitAllocated("other", "wants-5", "", metav1.ConditionFalse, RequestedUnavailable)
	if cnd := meta.FindStatusCondition(s.Status.Conditions, ConditionAllocated); !strings.Contains(cnd.Message, "used by Service demo/s3") {
		t.Errorf("condition message %q", cnd.Message)
	}
	c.waitEvent("other", "wants-5", "a RequestedUnavailable warning", func(e eventsv1.Event) bool {
		return e.Type == corev1.EventTypeWarning && e.Reason == string(RequestedUnavailable)
	})

	// An overlapping pool: a conflict on the later pool, which gives out nothing.
	time.Sleep(1100 * time.Millisecond)
	c.create(kpool("late", "203.0.113.4/30"))
	c.waitPool("late", "the conflict", func(p *v1alpha1.IPPool) bool {
		v := meta.FindStatusCondition(p.Status.Conditions, PoolConditionValid)
		k := meta.FindStatusCondition(p.Status.Conditions, PoolConditionConflict)
		return v != nil && v.Status == metav1.ConditionFalse && v.Reason == "Conflict" &&
			k != nil && k.Status == metav1.ConditionTrue && strings.Contains(k.Message, "older IPPool lab")
	})
	c.create(ksvc("demo/in-late", annotated("sluice.dev/pool", "late")))
	c.waitAllocated("demo", "in-late", "", metav1.ConditionFalse, UnknownPool)

	// The pool shrinks below s1's address: s1 keeps it and is told.
	c.setBlock("lab", "203.0.113.4/30")
	s1 = c.waitAllocated("demo", "s1", "203.0.113.1 2001:db8:100::1", metav1.ConditionTrue, OutsidePools)
	if cnd := meta.FindStatusCondition(s1.Status.Conditions, ConditionAllocated); !strings.Contains(cnd.Message, "203.0.113.1 kept: it is in use but in no pool now") {
		t.Errorf("s1 condition after the shrink: %q", cnd.Message)
	}
	c.setBlock("lab", "203.0.113.0/29")
	c.waitAllocated("demo", "s1", "203.0.113.1 2001:db8:100::1", metav1.ConditionTrue, Allocated)

	// s2 goes: nobody moves to its address; the next new Service gets it.
	if err := c.env.Client.Delete(c.ctx, c.service("demo", "s2")); err != nil {
		t.Fatal(err)
	}
	c.create(ksvc("demo/s4"))
	c.waitAllocated("demo", "s4", "203.0.113.2", metav1.ConditionTrue, Allocated)
	c.waitAllocated("demo", "s3", "203.0.113.5", metav1.ConditionTrue, Allocated)

	// A Service that stops being ours loses what the controller wrote.
	s4 := c.service("demo", "s4")
	s4.Spec.LoadBalancerClass = nil
	s4.Spec.Type = corev1.ServiceTypeClusterIP
	s4.Spec.Ports[0].NodePort = 0
	if err := c.env.Client.Update(c.ctx, s4); err != nil {
		t.Fatal(err)
	}
	c.waitService("demo", "s4", "release", func(s *corev1.Service) bool {
		_, annotated := s.Annotations[AnnotationAllocatedPool]
		return ingressOf(s) == "" && !annotated && meta.FindStatusCondition(s.Status.Conditions, ConditionAllocated) == nil
	})
}

// TestControllerRestartAndLeaderElection: a controller stopped in the middle of a run and
// another taking over the Lease: every address already written stays, the rest are
// allocated, none twice.
func TestControllerRestartAndLeaderElection(t *testing.T) {
	c := newCluster(t)
	c.create(kpool("big", "10.96.100.0/24"))
	for i := range 60 {
		c.create(ksvc(fmt.Sprintf("demo/svc-%02d", i)))
	}
	opts := ControllerOptions{LeaderElection: true, LeaseNamespace: "sluice-system",
		LeaseDuration: 2 * time.Second, RenewDeadline: 1500 * time.Millisecond, RetryPeriod: 200 * time.Millisecond}
	a, stopA := c.run(opts)
	<-a.Elected()
	b, _ := c.run(opts)
	// Stop a as soon as it has written some addresses: in the middle of its run.
	before := map[string]string{}
	deadline := time.Now().Add(30 * time.Second)
	for len(before) < 10 {
		before = c.addresses()
		if time.Now().After(deadline) {
			t.Fatalf("the leader wrote %d addresses in 30s", len(before))
		}
		time.Sleep(5 * time.Millisecond)
	}
	select {
	case <-b.Elected():
		t.Fatal("both controllers lead")
	default:
	}
	stopA()
	before = c.addresses() // whatever a wrote before it stopped
	t.Logf("the first leader wrote %d of 60 addresses before it stopped", len(before))
	for i := 60; i < 80; i++ {
		c.create(ksvc(fmt.Sprintf("demo/svc-%02d", i)))
	}
	select {
	case <-b.Elected():
	case <-time.After(20 * time.Second):
		t.Fatal("the second controller did not take the Lease over")
	}
	deadline = time.Now().Add(60 * time.Second)
	var after map[string]string
	for {
		after = c.addresses()
		if len(after) == 80 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of 80 Services have addresses", len(after))
		}
		time.Sleep(50 * time.Millisecond)
	}
	seen := map[string]string{}
	for svc, ip := range after {
		if was, ok := before[svc]; ok && was != ip {
			t.Errorf("%s moved from %s to %s across the restart", svc, was, ip)
		}
		if other, dup := seen[ip]; dup {
			t.Errorf("%s given to %s and %s", ip, svc, other)
		}
		seen[ip] = svc
	}
}

// setBlock sets the first block of pool name to cidr.
func (c *cluster) setBlock(name, cidr string) {
	c.t.Helper()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		var p v1alpha1.IPPool
		if err := c.env.Client.Get(c.ctx, client.ObjectKey{Name: name}, &p); err != nil {
			return err
		}
		p.Spec.Blocks[0] = v1alpha1.IPBlock{CIDR: cidr}
		return c.env.Client.Update(c.ctx, &p)
	})
	if err != nil {
		c.t.Fatal(err)
	}
}

// addresses returns the status address of every Service that has one.
func (c *cluster) addresses() map[string]string {
	var list corev1.ServiceList
	if err := c.env.Client.List(c.ctx, &list, client.InNamespace("demo")); err != nil {
		c.t.Fatal(err)
	}
	out := map[string]string{}
	for _, s := range list.Items {
		if ip := ingressOf(&s); ip != "" {
			out[s.Name] = ip
		}
	}
	return out
}
