package e2e

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/test/lab"
	"github.com/sluice-lb/sluice/test/traffic"
)

// Cluster IPs of Service api (TCP 80 and UDP 53 to the backends' 8080) and of Service idle
// (no endpoints).
var (
	apiIP4  = netip.MustParseAddr("10.96.0.10")
	apiIP6  = netip.MustParseAddr("fd00:96::10")
	idleIP4 = netip.MustParseAddr("10.96.0.11")
)

// clusterIPServices are Services api and idle with api's endpoints the given backends
// (1-based), for singleNode.extra.
func clusterIPServices(backends ...int) string {
	var b strings.Builder
	fmt.Fprintf(&b, `---
apiVersion: v1
kind: Service
metadata: {name: api, namespace: demo}
spec:
  type: ClusterIP
  clusterIPs: [%s, %s]
  ipFamilies: [IPv4, IPv6]
  ipFamilyPolicy: RequireDualStack
  ports: [{name: tcp, port: 80, protocol: TCP}, {name: dns, port: 53, protocol: UDP}]
---
apiVersion: v1
kind: Service
metadata: {name: idle, namespace: demo}
spec:
  type: ClusterIP
  clusterIPs: [%s]
  ports: [{name: tcp, port: 80, protocol: TCP}]
`, apiIP4, apiIP6, idleIP4)
	var eps []string
	for _, i := range backends {
		eps = append(eps, fmt.Sprint(i))
	}
	b.WriteString(dualStackSlicesYAML("api", "{name: tcp, port: 8080, protocol: TCP}, {name: dns, port: 8080, protocol: UDP}", eps...))
	return b.String()
}

// TestClusterIP: pods and host processes of a node reach a Service's cluster IPs through the
// agent's socket programs, over TCP, connected and unconnected UDP, in both families; their
// sockets report the cluster IP as the peer; a Service without endpoints refuses; an
// endpoint removed gets no new connection; and the pinned programs keep serving while the
// agent is down.
func TestClusterIP(t *testing.T) {
	s := newSingleNode(t, 2)
	s.extra = clusterIPServices(1, 2)
	config := s.config(t, "1", "2")
	s.startAgent(t, config, "--pod-devices", "po*") // the pod's veth appears later: found by the agent's rescan

	pod, err := s.lab.Namespace("pod")
	must(t, err)
	must(t, s.lab.Connect(lab.Endpoint{NS: pod, Name: "eth0", Addrs: []string{"198.51.100.30/24", "2001:db8:51::30/64"}},
		lab.Endpoint{NS: s.node, Name: "pod", Bridge: "pods"}))
	must(t, pod.AddRoute("default", "198.51.100.1"))
	must(t, pod.AddRoute("default", "2001:db8:51::1"))
	cg, err := s.node.Cgroup()
	must(t, err)
	clients := map[string]*traffic.PodClient{
		"pod":  {NS: pod, Cgroup: cg},
		"host": {NS: s.node, Cgroup: cg}, // a host process of the node
	}

	// ask asks n times and returns the answers by server; each must report want as its peer.
	ask := func(c *traffic.PodClient, network string, want netip.AddrPort, n int) (map[string]int, error) {
		by := map[string]int{}
		answers, err := c.AskN(network, want.String(), n)
		if err != nil {
			return by, err
		}
		for _, a := range answers {
			if a.Remote != want {
				return by, fmt.Errorf("the socket reports its peer as %s, want the cluster IP %s", a.Remote, want)
			}
			by[a.Server]++
		}
		return by, nil
	}
	tcp4 := netip.AddrPortFrom(apiIP4, 80)
	waitFor(t, "the cluster IP to answer", func() bool {
		_, err := ask(clients["pod"], traffic.TCP, tcp4, 1)
		return err == nil
	})
	for name, c := range clients {
		for _, tc := range []struct {
			network string
			to      netip.AddrPort
		}{
			{traffic.TCP, tcp4},
			{traffic.UDP, netip.AddrPortFrom(apiIP4, 53)},
			{traffic.UDPUnconnected, netip.AddrPortFrom(apiIP4, 53)},
			{traffic.TCP, netip.AddrPortFrom(apiIP6, 80)},
			{traffic.UDPUnconnected, netip.AddrPortFrom(apiIP6, 53)},
		} {
			by, err := ask(c, tc.network, tc.to, 16)
			if err != nil {
				t.Errorf("%s: %s to %s: %v", name, tc.network, tc.to, err)
			} else if by["be1"] == 0 || by["be2"] == 0 {
				t.Errorf("%s: %s to %s answered by %v, want both backends", name, tc.network, tc.to, by)
			}
		}
	}

	t.Run("PodOutsideTheCgroup", func(t *testing.T) {
		// A process of the pod that the socket programs do not cover (not under the node's
		// cgroup): the TCX fallback on the pod's interface translates its packets, and the
		// replies back.
		outside := &traffic.PodClient{NS: pod}
		fwdNew := func() int { return atoi(t, s.metric(t, `sluice_datapath_packets_total{counter="fwd_new"}`)) }
		before := fwdNew()
		for _, tc := range []struct {
			network string
			to      netip.AddrPort
		}{
			{traffic.TCP, tcp4},
			{traffic.UDPUnconnected, netip.AddrPortFrom(apiIP4, 53)},
			{traffic.TCP, netip.AddrPortFrom(apiIP6, 80)},
		} {
			var by map[string]int
			waitFor(t, fmt.Sprintf("%s to %s from outside the cgroup", tc.network, tc.to), func() bool {
				var err error
				by, err = ask(outside, tc.network, tc.to, 16)
				return err == nil
			})
			if by["be1"] == 0 || by["be2"] == 0 {
				t.Errorf("%s to %s from outside the cgroup answered by %v, want both backends", tc.network, tc.to, by)
			}
		}
		if n := fwdNew() - before; n < 48 {
			t.Errorf("the datapath counted %d new flows, want one per request (48): the TCX fallback translated them", n)
		}
	})

	t.Run("ServiceWithoutEndpointsRefuses", func(t *testing.T) {
		_, err := clients["pod"].Ask(traffic.TCP, netip.AddrPortFrom(idleIP4, 80).String())
		if !errors.Is(err, traffic.ErrRefused) {
			t.Errorf("connect to a cluster IP without endpoints: %v, want connection refused", err)
		}
	})

	t.Run("EndpointRemoved", func(t *testing.T) {
		s.extra = clusterIPServices(2)
		s.config(t, "1", "2")
		waitFor(t, "be1 to leave the cluster IP's backends", func() bool {
			by, err := ask(clients["pod"], traffic.TCP, tcp4, 8)
			return err == nil && by["be1"] == 0
		})
		by, err := ask(clients["pod"], traffic.TCP, tcp4, 16)
		if err != nil || by["be2"] != 16 {
			t.Errorf("after be1 left: %v, %v; want every connection on be2", by, err)
		}
	})

	t.Run("ServedWhileTheAgentIsDown", func(t *testing.T) {
		must(t, syscall.Kill(s.agent.PID, syscall.SIGKILL))
		select {
		case <-s.agent.Done():
		case <-time.After(5 * time.Second):
			t.Fatal("agent did not die")
		}
		if by, err := ask(clients["pod"], traffic.TCP, tcp4, 8); err != nil || by["be2"] != 8 {
			t.Errorf("with the agent down: %v, %v; want the pinned programs to serve be2", by, err)
		}
	})
}
