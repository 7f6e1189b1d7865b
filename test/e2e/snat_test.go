package e2e

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"testing"

	"github.com/sluice-lb/sluice/test/traffic"
)

// TestExternalTrafficPolicyClusterRemoteEndpoints ("should be able to reach a LoadBalancer
// Service with endpoints on other nodes"): with externalTrafficPolicy Cluster, the node that
// owns the Service address sends new flows to endpoints on every node. Those on another node
// see the owner's address as the client (SNAT), so their replies come back through it and
// are translated back; the owner's own endpoint sees the real client.
func TestExternalTrafficPolicyClusterRemoteEndpoints(t *testing.T) {
	x, dir := newL2Topology(t)
	// The pod networks route through their node, as a CNI sets them up.
	a, b := x.nodes[0], x.nodes[1]
	must(t, a.ns.AddRoute("198.51.100.128/25", b.addr))
	must(t, b.ns.AddRoute("198.51.100.0/25", a.addr))
	x.config = filepath.Join(dir, "config.yaml")
	l2ConfigWith(t, x.config, fmt.Sprintf(`---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: demo}
spec: {type: LoadBalancer, externalTrafficPolicy: Cluster, ports: [{name: tcp, port: 80, protocol: TCP}]}
status: {loadBalancer: {ingress: [{ip: %s}]}}
`, l2VIP)+endpointSliceYAML("web",
		"{addresses: [198.51.100.11], nodeName: node-a, conditions: {ready: true}}",
		"{addresses: [198.51.100.139], nodeName: node-b, conditions: {ready: true}}"))
	for _, n := range x.nodes {
		n.agent = startAgent(t, n.ns, n.name, n.dir, x.config)
	}
	owner := x.owner(t)
	client := traffic.NewClient(x.client)
	vip := l2VIP + ":80"
	waitFor(t, "the Service address to answer", func() bool {
		_, err := client.Ask("tcp", vip)
		return err == nil
	})

	clientAddr := netip.MustParseAddr("198.18.6.2")
	ownerAddr := netip.MustParseAddr(owner.addr)
	local := "be-" + owner.name[len("node-"):]
	peers := map[string]netip.Addr{}
	for range 40 {
		server, peer, err := client.Peer(vip)
		if err != nil {
			t.Fatalf("asking %s: %v", vip, err)
		}
		if seen, ok := peers[server]; ok && seen != peer {
			t.Fatalf("%s saw the client as %s and as %s", server, seen, peer)
		}
		peers[server] = peer
	}
	if len(peers) != 2 {
		t.Fatalf("answered by %v: want both endpoints, the remote one too", peers)
	}
	for server, peer := range peers {
		want := ownerAddr // SNAT to the owner's address
		if server == local {
			want = clientAddr
		}
		if peer != want {
			t.Errorf("%s saw the client as %s, want %s", server, peer, want)
		}
	}
	// Several flows at once, each with a port of its own.
	if r := client.Spread("tcp", vip, 200, 8); r.Failed != 0 || len(r.ByServer) != 2 {
		t.Errorf("200 connections, 8 at a time: %v", r)
	}
}
