package l2announce

import (
	"fmt"
	"net/netip"
	"slices"
	"testing"

	"k8s.io/apimachinery/pkg/types"

	"github.com/sluice-lb/sluice/internal/modeltest"
)

const l2Base = `
apiVersion: v1
kind: Node
metadata: {name: node-1, labels: {l2: "yes"}}
status: {addresses: [{type: InternalIP, address: 198.51.100.11}]}
---
apiVersion: v1
kind: Node
metadata: {name: node-2, labels: {l2: "yes"}}
status: {addresses: [{type: InternalIP, address: 198.51.100.12}]}
---
apiVersion: v1
kind: Node
metadata: {name: node-3, labels: {l2: "yes", node.kubernetes.io/exclude-from-external-load-balancers: ""}}
status: {addresses: [{type: InternalIP, address: 198.51.100.13}]}
---
apiVersion: v1
kind: Node
metadata: {name: node-4}
status: {addresses: [{type: InternalIP, address: 198.51.100.14}]}
---
apiVersion: sluice.dev/v1alpha1
kind: IPPool
metadata: {name: lan}
spec: {blocks: [{cidr: 203.0.113.0/24}]}
---
apiVersion: sluice.dev/v1alpha1
kind: IPPool
metadata: {name: other}
spec: {blocks: [{cidr: 198.18.0.0/24}]}
---
apiVersion: sluice.dev/v1alpha1
kind: L2Advertisement
metadata: {name: lan}
spec: {pools: [lan], nodeSelector: {matchLabels: {l2: "yes"}}, interfaces: [eth0]}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: demo}
spec: {type: LoadBalancer, ports: [{port: 80}]}
status: {loadBalancer: {ingress: [{ip: 203.0.113.10}]}}
---
apiVersion: v1
kind: Service
metadata: {name: local, namespace: demo}
spec: {type: LoadBalancer, externalTrafficPolicy: Local, ports: [{name: http, port: 80}]}
status: {loadBalancer: {ingress: [{ip: 203.0.113.20}]}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: local, namespace: demo, labels: {kubernetes.io/service-name: local}}
addressType: IPv4
ports: [{name: http, port: 8080}]
endpoints:
  - {addresses: [10.244.2.5], nodeName: node-2, conditions: {ready: true}}
  - {addresses: [10.244.1.5], nodeName: node-1, conditions: {ready: false}}
---
apiVersion: v1
kind: Service
metadata: {name: elsewhere, namespace: demo}
spec: {type: LoadBalancer, ports: [{port: 80}]}
status: {loadBalancer: {ingress: [{ip: 198.18.0.10}]}}
`

// TestCandidates: addresses of the advertisement's pools only; nodes by its selector, less
// the excluded one, and for externalTrafficPolicy Local only those with a ready endpoint.
func TestCandidates(t *testing.T) {
	m := modeltest.ModelOf(t, l2Base)
	got := Candidates(m, nil)
	var lines []string
	for _, c := range got {
		lines = append(lines, fmt.Sprintf("%s %s %v %v", c.Addr, c.Service, c.Nodes, c.Interfaces))
	}
	want := []string{
		"203.0.113.10 demo/web [node-1 node-2] [eth0]",
		"203.0.113.20 demo/local [node-2] [eth0]",
	}
	if !slices.Equal(lines, want) {
		t.Fatalf("candidates:\n%v\nwant:\n%v", lines, want)
	}

	// Standalone mode's allocation stands in for the status of our Services.
	alloc := Candidates(m, map[types.NamespacedName][]netip.Addr{{Namespace: "demo", Name: "web"}: {netip.MustParseAddr("203.0.113.11")}})
	if len(alloc) == 0 || alloc[0].Addr != netip.MustParseAddr("203.0.113.11") {
		t.Fatalf("with an allocation: %+v", alloc)
	}
}

// TestOwned: each address has exactly one owner among its live nodes; a dead node owns
// nothing, and its addresses go to the others.
func TestOwned(t *testing.T) {
	m := modeltest.ModelOf(t, l2Base)
	cands := Candidates(m, nil)
	count := map[netip.Addr]int{}
	for _, n := range []string{"node-1", "node-2"} {
		for _, c := range Owned(cands, []string{"node-1", "node-2"}, n) {
			count[c.Addr]++
		}
	}
	for _, c := range cands {
		if count[c.Addr] != 1 {
			t.Errorf("%s owned by %d nodes", c.Addr, count[c.Addr])
		}
	}
	if got := Owned(cands, []string{"node-1"}, "node-1"); len(got) != 1 || got[0].Addr != netip.MustParseAddr("203.0.113.10") {
		t.Errorf("node-1 alone owns %+v; want 203.0.113.10 only (203.0.113.20 has no ready endpoint on it)", got)
	}
	if got := Owned(cands, nil, "node-1"); len(got) != 0 {
		t.Errorf("with nobody alive (an agent in doubt) node-1 owns %+v", got)
	}
}
