package model

import (
	"cmp"
	"fmt"
	"maps"
	"math/rand"
	"net/netip"
	"reflect"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sluice-lb/sluice/api/v1alpha1"
)

// TestBuilderSameAsBuild: over a random walk of changes (Services, EndpointSlices, Nodes,
// pools, namespaces, options replaced, added and removed, as a source hands them out: a
// changed object is a new pointer), every Model of a Builder equals what Build makes of the
// same input, and a Service whose object, slices and configuration are unchanged is reused.
func TestBuilderSameAsBuild(t *testing.T) {
	r := rand.New(rand.NewSource(7))
	svc := func(i, v int) *corev1.Service {
		s := service(fmt.Sprintf("ns%d", i%3), fmt.Sprintf("s%d", i), nil)
		s.Spec.ExternalIPs = []string{fmt.Sprintf("203.0.113.%d", v%64), "198.51.100.7"}
		if v%5 == 0 {
			s.Spec.Ports[0].Protocol = "BOGUS" // a problem
		}
		return s
	}
	slice := func(i, v int) *discoveryv1.EndpointSlice {
		port, name := int32(8080), "http"
		return &discoveryv1.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{Namespace: fmt.Sprintf("ns%d", i%3), Name: fmt.Sprintf("s%d-x", i), Labels: map[string]string{discoveryv1.LabelServiceName: fmt.Sprintf("s%d", i)}},
			AddressType: discoveryv1.AddressTypeIPv4, Ports: []discoveryv1.EndpointPort{{Name: &name, Port: &port}},
			Endpoints: []discoveryv1.Endpoint{{Addresses: []string{fmt.Sprintf("10.1.0.%d", v%250+1)}, NodeName: ptr("n1")}},
		}
	}
	node := func(i, v int) *corev1.Node {
		return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("n%d", i), Labels: map[string]string{"v": fmt.Sprint(v)}},
			Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: fmt.Sprintf("10.0.0.%d", i+1)}}}}
	}
	nsObj := func(i, v int) *corev1.Namespace {
		return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("ns%d", i), Labels: map[string]string{"v": fmt.Sprint(v)}}}
	}
	services := map[int]*corev1.Service{}
	endpoints := map[int]*discoveryv1.EndpointSlice{}
	nodes := map[int]*corev1.Node{}
	namespaces := map[int]*corev1.Namespace{}
	for i := range 20 {
		services[i], endpoints[i] = svc(i, i), slice(i, i)
	}
	for i := range 3 {
		nodes[i], namespaces[i] = node(i, 0), nsObj(i, 0)
	}
	pools := []*v1alpha1.IPPool{pool("a", 1, cidr("203.0.113.0/27")), pool("bad", 2, cidr("x"))}
	opts := Options{}
	objects := func() Objects {
		var in Objects
		in.Pools = pools
		for _, k := range sortedKeys(services) {
			in.Services = append(in.Services, services[k])
		}
		for _, k := range sortedKeys(endpoints) {
			in.EndpointSlices = append(in.EndpointSlices, endpoints[k])
		}
		for _, k := range sortedKeys(nodes) {
			in.Nodes = append(in.Nodes, nodes[k])
		}
		for _, k := range sortedKeys(namespaces) {
			in.Namespaces = append(in.Namespaces, namespaces[k])
		}
		switch r.Intn(3) {
		case 0:
			in.Services = shuffle(r, in.Services)
		case 1: // as the store lists them
			slices.SortFunc(in.Services, func(a, b *corev1.Service) int {
				return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
			})
		}
		return in
	}

	var b Builder
	var prev *Model
	reused := 0
	for step := range 400 {
		changed := -1 // the Service whose inputs alone changed, if any
		switch i, v := r.Intn(25), step+100; r.Intn(9) {
		case 0, 1:
			services[i], changed = svc(i, v), i
		case 2:
			if _, ok := services[i]; ok {
				delete(services, i)
			} else {
				services[i] = svc(i, v)
			}
		case 3:
			if _, ok := endpoints[i]; ok && r.Intn(2) == 0 {
				delete(endpoints, i)
			} else {
				endpoints[i] = slice(i, v)
			}
			changed = i
		case 4:
			nodes[r.Intn(4)] = node(i%4, v)
		case 5:
			namespaces[i%3] = nsObj(i%3, v)
		case 6:
			pools = []*v1alpha1.IPPool{pool("a", 1, cidr(fmt.Sprintf("203.0.113.%d/27", 32*(v%2)))), pools[1]}
		case 7:
			opts = Options{ExternalIPCIDRs: opts.ExternalIPCIDRs}
			if v%3 == 0 {
				opts.ExternalIPCIDRs = append(opts.ExternalIPCIDRs, netip.MustParsePrefix("198.51.100.0/24"))
			}
		case 8: // nothing changed
		}
		in := objects()
		got, gotProblems := b.Build(in, opts)
		want, wantProblems := Build(in, opts)
		gen := got.ConfigGeneration
		want.ConfigGeneration = gen
		if !reflect.DeepEqual(got, want) || !reflect.DeepEqual(gotProblems, wantProblems) {
			t.Fatalf("step %d: the Builder's model differs from Build's\n got %+v\n%v\nwant %+v\n%v", step, got, gotProblems, want, wantProblems)
		}
		if prev != nil && prev.ConfigGeneration == gen {
			for _, s := range got.Services {
				i := slices.IndexFunc(prev.Services, func(p *Service) bool { return p.Key == s.Key })
				if i >= 0 && s.Key.Name != fmt.Sprintf("s%d", changed) {
					if prev.Services[i] != s {
						t.Fatalf("step %d: Service %v was built again though nothing of it changed", step, s.Key)
					}
					reused++
				}
			}
		}
		prev = got
	}
	if reused < 1000 {
		t.Fatalf("only %d Services were reused over the walk: the test did not exercise reuse", reused)
	}
}

func sortedKeys[V any](m map[int]V) []int {
	return slices.Sorted(maps.Keys(m))
}
