package ipam

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/sluice-lb/sluice/api/v1alpha1"
	"github.com/sluice-lb/sluice/internal/model"
)

// The test fixture: objects built in Go, run through the real model.Build, then Allocate.

var epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

type poolOpt func(*v1alpha1.IPPool)

// pool makes IPPool name, created at epoch + age minutes, with blocks "cidr" or "first-last".
func pool(name string, age int, blocks string, opts ...poolOpt) *v1alpha1.IPPool {
	p := &v1alpha1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: name, CreationTimestamp: metav1.NewTime(epoch.Add(time.Duration(age) * time.Minute))}}
	for _, b := range strings.Fields(blocks) {
		if first, last, ok := strings.Cut(b, "-"); ok {
			p.Spec.Blocks = append(p.Spec.Blocks, v1alpha1.IPBlock{Start: first, Stop: last})
		} else {
			p.Spec.Blocks = append(p.Spec.Blocks, v1alpha1.IPBlock{CIDR: b})
		}
	}
	for _, o := range opts {
		o(p)
	}
	return p
}

func noAuto(p *v1alpha1.IPPool)     { f := false; p.Spec.AutoAssign = &f }
func avoidBuggy(p *v1alpha1.IPPool) { p.Spec.AvoidBuggyIPs = true }
func disabled(p *v1alpha1.IPPool)   { p.Spec.Disabled = true }
func priority(n int32) poolOpt      { return func(p *v1alpha1.IPPool) { p.Spec.Priority = n } }
func onlyNamespaces(ns ...string) poolOpt {
	return func(p *v1alpha1.IPPool) { p.Spec.Namespaces = ns }
}
func serviceSelector(k, v string) poolOpt {
	return func(p *v1alpha1.IPPool) {
		p.Spec.ServiceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{k: v}}
	}
}
func namespaceSelector(k, v string) poolOpt {
	return func(p *v1alpha1.IPPool) {
		p.Spec.NamespaceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{k: v}}
	}
}

type svcOpt func(*corev1.Service)

// service makes LoadBalancer Service "ns/name", created at epoch + age minutes, TCP port 80.
func service(key string, age int, opts ...svcOpt) *corev1.Service {
	ns, name, _ := strings.Cut(key, "/")
	s := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, CreationTimestamp: metav1.NewTime(epoch.Add(time.Duration(age) * time.Minute)),
			Annotations: map[string]string{}, Labels: map[string]string{}},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer,
			Ports: []corev1.ServicePort{{Name: "http", Protocol: corev1.ProtocolTCP, Port: 80, TargetPort: intstr.FromInt32(8080)}}},
	}
	for _, o := range opts {
		o(s)
	}
	return s
}

// holding sets status.loadBalancer.ingress.
func holding(ips ...string) svcOpt {
	return func(s *corev1.Service) {
		for _, ip := range ips {
			s.Status.LoadBalancer.Ingress = append(s.Status.LoadBalancer.Ingress, corev1.LoadBalancerIngress{IP: ip})
		}
	}
}
func annotated(k, v string) svcOpt { return func(s *corev1.Service) { s.Annotations[k] = v } }
func labelled(k, v string) svcOpt  { return func(s *corev1.Service) { s.Labels[k] = v } }
func loadBalancerIP(ip string) svcOpt {
	return func(s *corev1.Service) { s.Spec.LoadBalancerIP = ip }
}
func sharing(key string) svcOpt { return annotated("sluice.dev/sharing-key", key) }
func ports(specs ...string) svcOpt { // "TCP/80"
	return func(s *corev1.Service) {
		s.Spec.Ports = nil
		for _, p := range specs {
			proto, num, _ := strings.Cut(p, "/")
			var n int32
			fmt.Sscan(num, &n)
			s.Spec.Ports = append(s.Spec.Ports, corev1.ServicePort{Name: strings.ToLower(p), Protocol: corev1.Protocol(proto), Port: n})
		}
	}
}
func local(selector string) svcOpt {
	return func(s *corev1.Service) {
		s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
		k, v, _ := strings.Cut(selector, "=")
		s.Spec.Selector = map[string]string{k: v}
	}
}
func policy(p corev1.IPFamilyPolicy, fams ...corev1.IPFamily) svcOpt {
	return func(s *corev1.Service) { s.Spec.IPFamilyPolicy = &p; s.Spec.IPFamilies = fams }
}
func class(c string) svcOpt       { return func(s *corev1.Service) { s.Spec.LoadBalancerClass = &c } }
func clusterIP(s *corev1.Service) { s.Spec.Type = corev1.ServiceTypeClusterIP }

func namespace(name string, lbls ...string) *corev1.Namespace {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{}}}
	for _, l := range lbls {
		k, v, _ := strings.Cut(l, "=")
		ns.Labels[k] = v
	}
	return ns
}

// allocate runs model.Build and Allocate over objs, and again over 20 shuffles of them,
// failing the test if any order gives another result.
func allocate(t *testing.T, opts Options, objs ...runtime.Object) *Result {
	t.Helper()
	want := allocateOnce(t, opts, objs)
	rng := rand.New(rand.NewPCG(uint64(len(objs)), 7))
	for i := range 20 {
		shuffled := append([]runtime.Object(nil), objs...)
		rng.Shuffle(len(shuffled), func(a, b int) { shuffled[a], shuffled[b] = shuffled[b], shuffled[a] })
		if got := allocateOnce(t, opts, shuffled); !sameResult(got, want) {
			t.Fatalf("shuffle %d gives another result:\n got %s\nwant %s", i, dump(got), dump(want))
		}
	}
	return want
}

func allocateOnce(t *testing.T, opts Options, objs []runtime.Object) *Result {
	t.Helper()
	in, errs := model.Collect(objs)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	m, _ := model.Build(in, model.Options{})
	return Allocate(m, opts)
}

func sameResult(a, b *Result) bool {
	if !reflect.DeepEqual(a.Allocations, b.Allocations) || len(a.Pools) != len(b.Pools) {
		return false
	}
	for name, u := range a.Pools {
		v, ok := b.Pools[name]
		if !ok || !reflect.DeepEqual(u.Used, v.Used) || fmt.Sprint(u.Free) != fmt.Sprint(v.Free) {
			return false
		}
	}
	return true
}

func dump(r *Result) string {
	var b strings.Builder
	for _, a := range r.Allocations {
		fmt.Fprintf(&b, "\n  %s %v %v ready=%v %s: %s", a.Service, a.IPs, a.Pools, a.Ready, a.Reason, a.Message)
	}
	return b.String()
}

func key(s string) types.NamespacedName {
	ns, name, _ := strings.Cut(s, "/")
	return types.NamespacedName{Namespace: ns, Name: name}
}

// expect checks one Service's allocation: its addresses (space-separated, "" for none),
// readiness, reason, and that the message contains each of contains.
func expect(t *testing.T, r *Result, svc, ips string, ready bool, reason Reason, contains ...string) {
	t.Helper()
	a := r.Of(key(svc))
	if a == nil {
		t.Fatalf("%s: no allocation (not ours?)%s", svc, dump(r))
	}
	var want []netip.Addr
	for _, ip := range strings.Fields(ips) {
		want = append(want, netip.MustParseAddr(ip))
	}
	if !reflect.DeepEqual(a.IPs, want) || a.Ready != ready || a.Reason != reason {
		t.Errorf("%s: got %v ready=%v %s (%s), want %v ready=%v %s", svc, a.IPs, a.Ready, a.Reason, a.Message, want, ready, reason)
	}
	for _, c := range contains {
		if !strings.Contains(a.Message, c) {
			t.Errorf("%s: message %q does not say %q", svc, a.Message, c)
		}
	}
}
