package e2e

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"testing"

	"github.com/sluice-lb/sluice/test/traffic"
)

// remoteEndpoints builds the L2 topology with the pod networks routed between the nodes, as a
// CNI sets them up, and Service web (externalTrafficPolicy Cluster, with metadata meta) with
// an endpoint on each node; starts the agents and waits until the Service address answers.
// It returns the client, the node that owns the address and the other one.
func remoteEndpoints(t *testing.T, meta string) (client *traffic.Client, owner, other *labNode) {
	x, dir := newL2Topology(t)
	a, b := x.nodes[0], x.nodes[1]
	must(t, a.ns.AddRoute("198.51.100.128/25", b.addr))
	must(t, b.ns.AddRoute("198.51.100.0/25", a.addr))
	x.config = filepath.Join(dir, "config.yaml")
	l2ConfigWith(t, x.config, fmt.Sprintf(`---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: demo%s}
spec: {type: LoadBalancer, externalTrafficPolicy: Cluster, ports: [{name: tcp, port: 80, protocol: TCP}]}
status: {loadBalancer: {ingress: [{ip: %s}]}}
`, meta, l2VIP)+endpointSliceYAML("web",
		"{addresses: [198.51.100.11], nodeName: node-a, conditions: {ready: true}}",
		"{addresses: [198.51.100.139], nodeName: node-b, conditions: {ready: true}}"))
	for _, n := range x.nodes {
		n.agent = startAgent(t, n.ns, n.name, n.dir, x.config)
	}
	owner, other = x.owner(t), a
	if owner == a {
		other = b
	}
	client = traffic.NewClient(x.client)
	waitFor(t, "the Service address to answer", func() bool {
		_, err := client.Ask("tcp", l2VIP+":80")
		return err == nil
	})
	return client, owner, other
}

// TestExternalTrafficPolicyClusterRemoteEndpoints ("should be able to reach a LoadBalancer
// Service with endpoints on other nodes"): with externalTrafficPolicy Cluster, the node that
// owns the Service address sends new flows to endpoints on every node. Those on another node
// see the owner's address as the client (SNAT), so their replies come back through it and
// are translated back; the owner's own endpoint sees the real client.
func TestExternalTrafficPolicyClusterRemoteEndpoints(t *testing.T) {
	client, owner, _ := remoteEndpoints(t, "")
	vip := l2VIP + ":80"
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

// TestDirectServerReturn: a Service with the forwarding-mode annotation dsr sends external
// flows to an endpoint on another node through a tunnel to that node, which answers the
// client itself, from the Service address: the endpoint sees the client's own address, and
// the reply does not go back through the node that received the request.
func TestDirectServerReturn(t *testing.T) {
	client, owner, other := remoteEndpoints(t, ", annotations: {sluice.dev/forwarding-mode: dsr}")
	vip := l2VIP + ":80"
	clientAddr := netip.MustParseAddr("198.18.6.2")
	remote := "be-" + other.name[len("node-"):]
	seen := map[string]int{}
	for range 40 {
		server, peer, err := client.Peer(vip)
		if err != nil {
			t.Fatalf("asking %s: %v", vip, err)
		}
		if peer != clientAddr {
			t.Fatalf("%s saw the client as %s, want the client's own %s", server, peer, clientAddr)
		}
		seen[server]++
	}
	if seen[remote] == 0 {
		t.Fatalf("answered by %v: want the remote endpoint %s too", seen, remote)
	}
	if r := client.Spread("tcp", vip, 200, 8); r.Failed != 0 || r.ByServer[remote] == 0 {
		t.Errorf("200 connections, 8 at a time: %v", r)
	}
	encap := atoi(t, nodeMetric(t, owner.ns, `sluice_datapath_packets_total{counter="dsr_encap"}`))
	decap := atoi(t, nodeMetric(t, other.ns, `sluice_datapath_packets_total{counter="dsr_decap"}`))
	replies := atoi(t, nodeMetric(t, other.ns, `sluice_datapath_packets_total{counter="rev_nat"}`))
	if encap == 0 || decap == 0 || replies == 0 {
		t.Errorf("dsr_encap on %s %d, dsr_decap on %s %d, replies translated there %d: want all above 0",
			owner.name, encap, other.name, decap, replies)
	}
}
