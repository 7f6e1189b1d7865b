package ipam

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/sluice-lb/sluice/api/v1alpha1"
	"github.com/sluice-lb/sluice/internal/model"
)

// TestAllocatorSameAsAllocate: over random walks of changes — Services added, removed and
// changed one or a few at a time, their status, requests, sharing keys, pools and families;
// pools and namespaces replaced — every result of an Allocator (which allocates for the
// changed Services alone where it can) is the result of Allocate over the same model with
// the remembered addresses as status, and what it remembers is that result's addresses.
func TestAllocatorSameAsAllocate(t *testing.T) {
	partial := 0
	for seed := range uint64(40) {
		partial += allocatorWalk(t, seed, 120)
	}
	if partial < 600 {
		t.Fatalf("only %d runs allocated for the changed Services alone: the walks did not exercise it", partial)
	}
}

func allocatorWalk(t *testing.T, seed uint64, steps int) (partial int) {
	rng := rand.New(rand.NewPCG(seed, 99))
	addr := func(n int) string { return fmt.Sprintf("10.0.0.%d", n) }
	randomService := func(i, age int) *corev1.Service {
		ns := []string{"a", "b"}[rng.IntN(2)]
		var opts []svcOpt
		if rng.IntN(12) == 0 {
			opts = append(opts, sharing(fmt.Sprintf("k%d", rng.IntN(2))), ports(fmt.Sprintf("TCP/%d", 80+rng.IntN(3))))
		}
		if rng.IntN(10) == 0 {
			opts = append(opts, annotated("sluice.dev/ips", addr(rng.IntN(80))))
		}
		if rng.IntN(12) == 0 {
			opts = append(opts, annotated("sluice.dev/pool", fmt.Sprintf("p%d", rng.IntN(3))))
		}
		if rng.IntN(10) == 0 {
			opts = append(opts, holding(addr(rng.IntN(80))))
		}
		if rng.IntN(10) == 0 {
			opts = append(opts, policy([]corev1.IPFamilyPolicy{corev1.IPFamilyPolicyPreferDualStack, corev1.IPFamilyPolicyRequireDualStack}[rng.IntN(2)]))
		}
		if rng.IntN(15) == 0 {
			opts = append(opts, class("example.com/other"))
		}
		if rng.IntN(20) == 0 {
			opts = append(opts, labelled("tier", "gold"))
		}
		return service(fmt.Sprintf("%s/s%d", ns, i), age, opts...)
	}
	randomPools := func() []*v1alpha1.IPPool {
		pools := []*v1alpha1.IPPool{
			pool("p0", 0, fmt.Sprintf("10.0.0.0-10.0.0.%d 2001:db8::-2001:db8::ff", 40+rng.IntN(30)), avoidBuggy),
			pool("p1", 1, "10.0.0.64-10.0.0.79", onlyNamespaces("a")),
		}
		if rng.IntN(2) == 0 {
			pools = append(pools, pool("p2", 2, "10.0.0.80-10.0.0.90", serviceSelector("tier", "gold"), priority(1)))
		}
		return pools
	}

	services := map[int]*corev1.Service{}
	for i := range 30 + rng.IntN(20) {
		services[i] = randomService(i, rng.IntN(100))
	}
	pools := randomPools()
	nss := []*corev1.Namespace{namespace("a"), namespace("b")}
	var b model.Builder
	x := NewAllocator(Options{}, State{Version: stateVersion, Services: map[string][]netip.Addr{}})
	before := clone(x.State())
	file := filepath.Join(t.TempDir(), StateFile)
	for step := range steps {
		switch k := rng.IntN(20); {
		case k < 8:
			i := rng.IntN(len(services) + 3)
			services[i] = randomService(i, rng.IntN(100))
		case k < 12:
			delete(services, rng.IntN(len(services)+3))
		case k < 14: // a few at once
			for range 2 + rng.IntN(3) {
				i := rng.IntN(len(services) + 3)
				services[i] = randomService(i, rng.IntN(100))
			}
		case k == 14:
			pools = randomPools()
		case k == 15:
			nss = []*corev1.Namespace{namespace("a", fmt.Sprintf("v=%d", step)), nss[1]}
		}
		var objs []runtime.Object
		for _, p := range pools {
			objs = append(objs, p)
		}
		for _, n := range nss {
			objs = append(objs, n)
		}
		for _, i := range slices.Sorted(maps.Keys(services)) {
			objs = append(objs, services[i])
		}
		in, errs := model.Collect(objs)
		if len(errs) > 0 {
			t.Fatal(errs)
		}
		m, _ := b.Build(in, model.Options{})
		got, _, _ := x.Allocate(m)
		want := Allocate(WithState(m, before), Options{})
		if !sameResult(got, want) {
			t.Fatalf("seed %d step %d: the Allocator's result differs from Allocate's:\n got %s\nwant %s", seed, step, dump(got), dump(want))
		}
		if !reflect.DeepEqual(x.Addresses(), want.Addresses()) {
			t.Fatalf("seed %d step %d: addresses %v, the result's %v", seed, step, x.Addresses(), want.Addresses())
		}
		after := clone(x.State())
		if !after.Equal(StateOf(want)) {
			t.Fatalf("seed %d step %d: remembered %v, the result holds %v", seed, step, after.Services, StateOf(want).Services)
		}
		if step%10 == 0 { // each write syncs the file: not every step
			if err := x.WriteState(file); err != nil {
				t.Fatal(err)
			}
			written, err := os.ReadFile(file)
			wantFile, _ := StateOf(want).marshal()
			if err != nil || string(written) != string(wantFile)+"\n" {
				t.Fatalf("seed %d step %d: the state file reads\n%s\nwant\n%s (%v)", seed, step, written, wantFile, err)
			}
		}
		if x.Partial() {
			partial++
		}
		before = after
	}
	return partial
}

// TestAllocatorOrderMatters: changes where allocating for the changed Service alone would
// go wrong, and the Allocator must allocate for all. A changed Service, older than the one
// holding its address, takes it back; and with a sharing key, which address a new Service
// shares depends on the order every Service claims its addresses in.
func TestAllocatorOrderMatters(t *testing.T) {
	p := pool("p", 0, "10.0.0.1-10.0.0.20")
	// The same object in several steps is the same pointer, as a source hands it out.
	old, young := service("a/old", 10), service("a/new", 20)
	h1, h2 := service("a/h1", 5, sharing("k"), ports("TCP/80")), service("a/h2", 1, sharing("k"), ports("TCP/80"))
	asksOther := service("a/s", 10, annotated("sluice.dev/ips", "10.0.0.1"), holding("10.0.0.7"))
	first := service("a/v", 1)
	otherFamily := service("a/u", 10, policy(corev1.IPFamilyPolicySingleStack, corev1.IPv4Protocol), holding("2001:db8::1"))
	cases := map[string][][]*corev1.Service{
		"older takes back": {
			{old, young},
			{old, young}, // now they hold what they were given
			{old, young, service("a/older", 1, holding("10.0.0.1"))},
		},
		// Its status holds another address than it asks for: it is given its address in
		// the allocation phase of every full run, in age order, so a newer Service added
		// must not take the lowest free address first.
		"status not what it asks for": {
			{asksOther},
			{asksOther},
			{asksOther, service("a/n", 1)},
		},
		// Its status holds an address of a family it no longer asks for.
		"status of another family": {
			{first, otherFamily},
			{first, otherFamily},
			{otherFamily},
		},
		"sharing order": {
			{h1},
			{h1},
			{h1, h2},
			{h1, h2},
			{h1, h2, service("a/d", 9, sharing("k"), ports("TCP/81"))},
		},
	}
	for name, steps := range cases {
		t.Run(name, func(t *testing.T) {
			var b model.Builder
			x := NewAllocator(Options{}, State{})
			before := clone(x.State())
			for i, svcs := range steps {
				objs := []runtime.Object{p}
				for _, s := range svcs {
					objs = append(objs, s)
				}
				in, _ := model.Collect(objs)
				m, _ := b.Build(in, model.Options{})
				got, _, _ := x.Allocate(m)
				want := Allocate(WithState(m, before), Options{})
				if !sameResult(got, want) {
					t.Fatalf("step %d: got %s\nwant %s", i, dump(got), dump(want))
				}
				before = clone(x.State())
			}
		})
	}
}

// clone copies a state, which an Allocator keeps changing.
func clone(st State) State {
	st.Services = maps.Clone(st.Services)
	return st
}
