package e2e

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/test/traffic"
)

// Behaviours of Kubernetes' sig-network Service e2e tests, ported to the lab: each test is
// named after the behaviour it checks.

// serviceYAML is a LoadBalancer Service demo/name on vip port 80 (spec fields extra) with one
// EndpointSlice holding the lab's backends idx (1-based, port 8080).
func serviceYAML(name, vip, extra string, idx ...int) string {
	var eps []string
	for _, i := range idx {
		eps = append(eps, fmt.Sprintf("{addresses: [198.51.100.%d], nodeName: node, conditions: {ready: true}}", 10+i))
	}
	return fmt.Sprintf(`---
apiVersion: v1
kind: Service
metadata: {name: %[1]s, namespace: demo}
spec: {type: LoadBalancer, ports: [{name: tcp, port: 80, protocol: TCP}]%[3]s}
status: {loadBalancer: {ingress: [{ip: %[2]s}]}}
`, name, vip, extra) + endpointSliceYAML(name, eps...)
}

// endpointSliceYAML is Service demo/name's EndpointSlice: port tcp 8080, the endpoints given
// as YAML flow mappings.
func endpointSliceYAML(name string, endpoints ...string) string {
	list := "[]"
	if len(endpoints) > 0 {
		list = "\n  - " + strings.Join(endpoints, "\n  - ")
	}
	return fmt.Sprintf(`---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: %[1]s, namespace: demo, labels: {kubernetes.io/service-name: %[1]s}}
addressType: IPv4
ports: [{name: tcp, port: 8080, protocol: TCP}]
endpoints: %[2]s
`, name, list)
}

// TestSourceIPPreservedExternalTrafficPolicyLocal ("should preserve source IP with
// externalTrafficPolicy Local"): the endpoint sees the client's own address.
func TestSourceIPPreservedExternalTrafficPolicyLocal(t *testing.T) {
	s := newSingleNode(t, 2)
	s.extra = serviceYAML("local", "203.0.113.50", ", externalTrafficPolicy: Local", 1, 2)
	s.startAgent(t, s.config(t, "1"))
	c := traffic.NewClient(s.client)
	for range 10 {
		server, peer, err := c.Peer("203.0.113.50:80")
		if err != nil {
			t.Fatal(err)
		}
		if peer != netip.MustParseAddr("198.18.0.2") {
			t.Fatalf("%s saw the client as %v, want its own address 198.18.0.2", server, peer)
		}
	}
}

// TestSessionAffinityClientIP ("should have session affinity work for LoadBalancer service"
// and "... timeout"): with sessionAffinity ClientIP, every connection from a client goes to one
// endpoint of three; once the client has been quiet for longer than the timeout, its new
// connections spread again.
func TestSessionAffinityClientIP(t *testing.T) {
	s := newSingleNode(t, 3)
	s.extra = serviceYAML("sticky", "203.0.113.51",
		", sessionAffinity: ClientIP, sessionAffinityConfig: {clientIP: {timeoutSeconds: 2}}", 1, 2, 3)
	s.startAgent(t, s.config(t, "1"))
	c := traffic.NewClient(s.client)
	r := c.Spread("tcp", "203.0.113.51:80", 30, 1)
	if r.Failed != 0 || len(r.ByServer) != 1 {
		t.Fatalf("30 connections with ClientIP affinity: %v; want all answered by one endpoint", r)
	}
	time.Sleep(3 * time.Second) // quiet for longer than the timeout
	spread := map[string]bool{}
	for range 10 { // each connection renews the affinity: ask in rounds apart by the timeout
		r := c.Spread("tcp", "203.0.113.51:80", 1, 1)
		for srv := range r.ByServer {
			spread[srv] = true
		}
		if len(spread) > 1 {
			return
		}
		time.Sleep(2100 * time.Millisecond)
	}
	t.Fatalf("after the affinity timed out, 10 new connections went to %v only; want other endpoints too", spread)
}

// TestServiceDeleted ("should stop serving a deleted Service"): once a Service is removed,
// new connections to its address are no longer answered, while another Service goes on.
func TestServiceDeleted(t *testing.T) {
	s := newSingleNode(t, 2)
	s.extra = serviceYAML("doomed", "203.0.113.52", "", 2)
	s.startAgent(t, s.config(t, "1"))
	c := traffic.NewClient(s.client)
	c.Timeout = 500 * time.Millisecond
	if r := c.Spread("tcp", "203.0.113.52:80", 10, 2); r.Failed != 0 || r.ByServer["be2"] != 10 {
		t.Fatalf("before the deletion: %v; want every connection answered by be2", r)
	}
	s.extra = ""
	s.config(t, "1")
	waitFor(t, "the deleted Service no longer answered", func() bool {
		return c.Spread("tcp", "203.0.113.52:80", 4, 2).OK() == 0
	})
	if r := c.Spread("tcp", tcp4, 10, 2); r.Failed != 0 || r.ByServer["be1"] != 10 {
		t.Fatalf("the other Service after the deletion: %v; want every connection answered by be1", r)
	}
}
