package ipam

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/sluice-lb/sluice/internal/model"
)

// FuzzAllocate builds random pools and Services from the fuzzer's bytes and checks what
// must always hold: no address goes to two Services that may not share it; every address
// given out anew is in a pool that may serve the Service (and is the one it asked for, if
// it asked); what a Service held and still asks for stays; and feeding the result back as
// the Services' status changes no address (a restart moves nothing).
func FuzzAllocate(f *testing.F) {
	for _, seed := range []uint64{1, 2, 3, 42, 1000} {
		f.Add(seed, uint8(4), uint8(10))
	}
	f.Fuzz(func(t *testing.T, seed uint64, npools, nsvcs uint8) {
		objs := randomScenario(seed, int(npools%5), int(nsvcs%16))
		m := buildModel(t, objs)
		r := Allocate(m, Options{})
		checkInvariants(t, m, r)

		// Restart: the allocations become the status; nothing moves.
		var again []runtime.Object
		for _, o := range objs {
			if s, ok := o.(*corev1.Service); ok {
				s = s.DeepCopy()
				s.Status.LoadBalancer.Ingress = nil
				if a := r.Of(key(s.Namespace + "/" + s.Name)); a != nil {
					for _, ip := range a.IPs {
						s.Status.LoadBalancer.Ingress = append(s.Status.LoadBalancer.Ingress, corev1.LoadBalancerIngress{IP: ip.String()})
					}
				}
				o = s
			}
			again = append(again, o)
		}
		m2 := buildModel(t, again)
		r2 := Allocate(m2, Options{})
		checkInvariants(t, m2, r2)
		for _, a := range r.Allocations {
			b := r2.Of(a.Service)
			for _, ip := range a.IPs {
				if !slices.Contains(b.IPs, ip) {
					t.Fatalf("%s lost %s after a restart: %v -> %v (%s)", a.Service, ip, a.IPs, b.IPs, b.Message)
				}
			}
		}
	})
}

func buildModel(t *testing.T, objs []runtime.Object) *model.Model {
	in, errs := model.Collect(objs)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	m, _ := model.Build(in, model.Options{})
	return m
}

// randomScenario: pools carved out of 10.0.0.0/26 (and a little IPv6), Services asking for
// random things in and around them.
func randomScenario(seed uint64, npools, nsvcs int) []runtime.Object {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	addr := func(n int) string { return fmt.Sprintf("10.0.0.%d", n) }
	var objs []runtime.Object
	for i := range npools {
		first := rng.IntN(60)
		last := first + rng.IntN(8)
		blocks := addr(first) + "-" + addr(last)
		if rng.IntN(3) == 0 {
			blocks += fmt.Sprintf(" 2001:db8::%x-2001:db8::%x", first, last)
		}
		var opts []poolOpt
		if rng.IntN(4) == 0 {
			opts = append(opts, noAuto)
		}
		if rng.IntN(4) == 0 {
			opts = append(opts, avoidBuggy)
		}
		if rng.IntN(6) == 0 {
			opts = append(opts, disabled)
		}
		if rng.IntN(3) == 0 {
			opts = append(opts, priority(int32(rng.IntN(3))))
		}
		if rng.IntN(5) == 0 {
			opts = append(opts, onlyNamespaces("a"))
		}
		objs = append(objs, pool(fmt.Sprintf("p%d", i), rng.IntN(5), blocks, opts...))
	}
	for i := range nsvcs {
		ns := []string{"a", "b"}[rng.IntN(2)]
		var opts []svcOpt
		if k := rng.IntN(3); k > 0 {
			opts = append(opts, sharing(fmt.Sprintf("k%d", k)))
		}
		opts = append(opts, ports(fmt.Sprintf("TCP/%d", 80+rng.IntN(3))))
		if rng.IntN(4) == 0 {
			opts = append(opts, local([]string{"app=x", "app=y"}[rng.IntN(2)]))
		}
		if rng.IntN(4) == 0 {
			opts = append(opts, annotated("sluice.dev/ips", addr(rng.IntN(70))))
		}
		if rng.IntN(5) == 0 {
			opts = append(opts, annotated("sluice.dev/pool", fmt.Sprintf("p%d", rng.IntN(npools+1))))
		}
		if rng.IntN(3) == 0 {
			opts = append(opts, holding(addr(rng.IntN(70))))
		}
		if rng.IntN(5) == 0 {
			opts = append(opts, policy([]corev1.IPFamilyPolicy{corev1.IPFamilyPolicyPreferDualStack, corev1.IPFamilyPolicyRequireDualStack}[rng.IntN(2)]))
		}
		if rng.IntN(6) == 0 {
			opts = append(opts, annotated("sluice.dev/sharing-cross-namespace", "*"))
		}
		objs = append(objs, service(fmt.Sprintf("%s/s%d", ns, i), rng.IntN(20), opts...))
	}
	return objs
}

func checkInvariants(t *testing.T, m *model.Model, r *Result) {
	t.Helper()
	byKey := map[string]*model.Service{}
	for _, s := range m.Services {
		byKey[s.Key.String()] = s
	}
	holders := map[netip.Addr][]*svc{}
	a := &allocator{m: m}
	for _, al := range r.Allocations {
		s := byKey[al.Service.String()]
		v := newSvc(s, s.IngressIPs)
		if len(al.IPs) > len(v.families) || (al.Ready && len(al.IPs) != len(v.families)) {
			t.Fatalf("%s: %v for families %v (ready %v)", al.Service, al.IPs, v.families, al.Ready)
		}
		for i, ip := range al.IPs {
			for _, h := range holders[ip] {
				if !canShare(v, h) {
					t.Fatalf("%s given to %s and %s, which may not share", ip, al.Service, h.Key)
				}
			}
			holders[ip] = append(holders[ip], v)
			if slices.Contains(s.IngressIPs, ip) {
				continue // kept: may be anywhere
			}
			p := m.PoolOf(ip)
			switch {
			case p == nil || p.Name != al.Pools[i]:
				t.Fatalf("%s: new address %s is in pool %v, result says %q", al.Service, ip, p, al.Pools[i])
			case p.Disabled || !a.admits(p, v) || a.avoided(p, ip):
				t.Fatalf("%s: new address %s from pool %s, which may not give it", al.Service, ip, p.Name)
			case requestedOf(v, familyOf(ip)).IsValid() && !slices.Contains(s.RequestedIPs, ip):
				t.Fatalf("%s: asked for %v, got %s", al.Service, s.RequestedIPs, ip)
			case s.Pool != "" && p.Name != s.Pool:
				t.Fatalf("%s: named pool %s, got %s from %s", al.Service, s.Pool, ip, p.Name)
			case !requestedOf(v, familyOf(ip)).IsValid() && s.Pool == "" && !p.AutoAssign:
				t.Fatalf("%s: %s auto-assigned from pool %s, which has autoAssign off", al.Service, ip, p.Name)
			}
		}
	}
}
