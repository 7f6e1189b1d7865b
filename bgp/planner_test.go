package bgp

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/types"

	"github.com/sluice-lb/sluice/internal/model"
	"github.com/sluice-lb/sluice/internal/source"
)

// TestPlannerSameAsDesiredFor: over random walks of changes — Services changed, added and
// removed, their endpoints and allocated addresses, the node's labels, an advertisement —
// read as the agent reads them (one Decoder, one model.Builder: an unchanged document is the
// same object), every Plan equals DesiredFor over the same model, and outside the prefixes it
// lists as changed, its paths are those of the Plan before.
func TestPlannerSameAsDesiredFor(t *testing.T) {
	incremental := 0
	for seed := range uint64(6) {
		incremental += plannerWalk(t, seed, seed%2 == 0)
	}
	if incremental < 500 {
		t.Fatalf("only %d plans were incremental: the walks did not exercise them", incremental)
	}
}

func plannerWalk(t *testing.T, seed uint64, standalone bool) (incremental int) {
	rng := rand.New(rand.NewPCG(seed, 5))
	adverts := func(v int) string { // v changes a community: the configuration changes
		return strings.ReplaceAll(advertisements, `"64512:100", no-export`, fmt.Sprintf(`"64512:%d", no-export`, 100+v%2))
	}
	node := func(rack string) string {
		return `
---
apiVersion: v1
kind: Node
metadata: {name: node-9, labels: {rack: ` + rack + `}}
spec: {podCIDRs: [10.244.9.0/24]}
status: {addresses: [{type: InternalIP, address: 198.51.100.19}]}`
	}
	addr := func() string {
		if rng.IntN(4) == 0 {
			return fmt.Sprintf("2001:db8:100::%x", rng.IntN(16))
		}
		return []string{"203.0.113.", "192.0.2."}[rng.IntN(2)] + fmt.Sprint(rng.IntN(12))
	}
	service := func(i int) string {
		var spec, status []string
		labels := "{}"
		if rng.IntN(2) == 0 {
			labels = "{app: web}"
		}
		spec = append(spec, "type: LoadBalancer", "ports: [{name: http, port: 80}]", fmt.Sprintf("clusterIPs: [10.96.0.%d]", i))
		if rng.IntN(3) == 0 {
			spec = append(spec, "externalTrafficPolicy: Local", "internalTrafficPolicy: Local")
		}
		if rng.IntN(4) == 0 {
			spec = append(spec, fmt.Sprintf("externalIPs: [198.18.0.%d]", 48+rng.IntN(8)))
		}
		if rng.IntN(2) == 0 {
			status = append(status, "{ip: "+addr()+"}")
		}
		doc := fmt.Sprintf(`
---
apiVersion: v1
kind: Service
metadata: {name: s%d, namespace: demo, labels: %s}
spec: {%s}
status: {loadBalancer: {ingress: [%s]}}`, i, labels, strings.Join(spec, ", "), strings.Join(status, ", "))
		if rng.IntN(2) == 0 {
			doc += fmt.Sprintf(`
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: s%d-1, namespace: demo, labels: {kubernetes.io/service-name: s%d}}
addressType: IPv4
ports: [{name: http, port: 8080}]
endpoints: [{addresses: [10.244.9.2], nodeName: node-%d, conditions: {ready: %v}}]`, i, i, 8+rng.IntN(2), rng.IntN(3) > 0)
		}
		return doc
	}

	services := map[int]string{}
	lbIPs := map[types.NamespacedName][]netip.Addr{}
	for i := range 40 {
		services[i] = service(i)
		lbIPs[types.NamespacedName{Namespace: "demo", Name: fmt.Sprintf("s%d", i)}] = []netip.Addr{netip.MustParseAddr(addr())}
	}
	config, self := adverts(0), node("a")
	dec := source.NewDecoder()
	var b model.Builder
	p := NewPlanner("node-9")
	var prev Desired
	for step := range 150 {
		switch k, i := rng.IntN(20), rng.IntN(45); {
		case k < 8:
			services[i] = service(i)
		case k < 10:
			delete(services, i)
		case k < 14:
			key := types.NamespacedName{Namespace: "demo", Name: fmt.Sprintf("s%d", i)}
			if rng.IntN(4) == 0 {
				delete(lbIPs, key)
			} else {
				lbIPs[key] = []netip.Addr{netip.MustParseAddr(addr())}
			}
		case k == 14:
			self = node([]string{"a", "b"}[rng.IntN(2)])
		case k == 15:
			config = adverts(step)
		}
		doc := base + config + self
		for i := range 45 {
			doc += services[i]
		}
		objs, errs := dec.Decode(strings.NewReader(doc), "walk.yaml")
		if len(errs) > 0 {
			t.Fatal(errs)
		}
		in, _ := model.Collect(objs)
		m, _ := b.Build(in, model.Options{})
		ips := lbIPs
		if !standalone {
			ips = nil
		}
		got := p.Plan(m, ips)
		want := DesiredFor(m, "node-9", ips)
		if !reflect.DeepEqual(got.Peers, want.Peers) || !reflect.DeepEqual(paths(got), paths(want)) || !slices.Equal(got.Warnings, want.Warnings) {
			t.Fatalf("seed %d step %d: the plan differs from DesiredFor:\n got %v\nwant %v", seed, step, paths(got), paths(want))
		}
		if got.Since != 0 {
			if got.Since != prev.Seq {
				t.Fatalf("step %d: since %d, the plan before was %d", step, got.Since, prev.Seq)
			}
			incremental++
			for peer := range merge(got.Paths, prev.Paths) {
				for _, path := range merge(index(got.Paths[peer]), index(prev.Paths[peer])) {
					if slices.Contains(got.Changed[peer], path) {
						continue
					}
					now, had := index(got.Paths[peer])[path], index(prev.Paths[peer])[path]
					if !now.Equal(had) {
						t.Fatalf("step %d: %s to %s changed (%v -> %v) but is not listed as changed", step, path, peer, had, now)
					}
				}
			}
		}
		prev = got
	}
	return incremental
}

func index(paths []Path) map[netip.Prefix]Path {
	out := map[netip.Prefix]Path{}
	for _, p := range paths {
		out[p.Prefix] = p
	}
	return out
}

// merge returns the keys of a and b.
func merge[K comparable, V any](a, b map[K]V) map[K]K {
	out := map[K]K{}
	for k := range a {
		out[k] = k
	}
	for k := range b {
		out[k] = k
	}
	return out
}
