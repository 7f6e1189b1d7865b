package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/internal/localapi"
	"github.com/sluice-lb/sluice/test/peers"
)

// bgpObjects make the node peer with FRR in the client namespace (AS 64512, over IPv4 and
// IPv6) and announce the Services' addresses with a community.
const bgpObjects = `---
apiVersion: v1
kind: Node
metadata: {name: node, labels: {role: lb}}
status: {addresses: [{type: InternalIP, address: 198.18.0.1}]}
---
apiVersion: sluice.dev/v1alpha1
kind: IPPool
metadata: {name: lab}
spec: {blocks: [{cidr: 203.0.113.0/24}, {cidr: "2001:db8:100::/64"}]}
---
apiVersion: sluice.dev/v1alpha1
kind: BGPPeer
metadata: {name: router-v4}
spec: {peerAddress: 198.18.0.2, peerASN: 64512, localASN: 64513, holdTime: 9s, keepaliveTime: 3s, connectRetryTime: 1s}
---
apiVersion: sluice.dev/v1alpha1
kind: BGPPeer
metadata: {name: router-v6}
spec: {peerAddress: "2001:db8:18::2", peerASN: 64512, localASN: 64513, holdTime: 9s, keepaliveTime: 3s, connectRetryTime: 1s}
---
apiVersion: sluice.dev/v1alpha1
kind: BGPAdvertisement
metadata: {name: lab}
spec: {pools: [lab], communities: ["64512:100", "64512:1:2"]}
`

// TestBGPAnnounce: the agent peers with a real FRR and announces every Service address
// with the node as next hop, its AS, and the advertisement's communities; IPv6 addresses go
// over the IPv6 session with an IPv6 next hop; a Service that goes is withdrawn.
func TestBGPAnnounce(t *testing.T) {
	s := newSingleNode(t, 1)
	frr := peers.StartForTest(t, peers.StartFRR, s.client.Name, peers.Config{
		RouterID: netip.MustParseAddr("198.18.0.2"), ASN: 64512, HoldTime: 9 * time.Second,
		Neighbors: []peers.Neighbor{{Address: netip.MustParseAddr("198.18.0.1"), ASN: 64513}, {Address: netip.MustParseAddr("2001:db8:18::1"), ASN: 64513}},
	})
	s.extra = bgpObjects
	s.startAgent(t, s.config(t, "1"))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	for _, w := range []struct{ prefix, nextHop string }{
		{vip4 + "/32", "198.18.0.1"},
		{emptyVIP4 + "/32", "198.18.0.1"},
		{vip6 + "/128", "2001:db8:18::1"},
	} {
		prefix := netip.MustParsePrefix(w.prefix)
		if _, err := frr.WaitRoute(ctx, prefix); err != nil {
			t.Fatalf("%v\nagent:\n%s", err, s.agent.Output())
		}
		a, err := frr.Attributes(ctx, prefix)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Contains(a.NextHops, netip.MustParseAddr(w.nextHop)) || !slices.Equal(a.ASPath, []uint32{64513}) ||
			!slices.Equal(a.Communities, []string{"64512:100"}) || !slices.Equal(a.LargeCommunities, []string{"64512:1:2"}) {
			t.Errorf("%s at FRR: %+v; want next hop %s, AS path [64513], communities 64512:100 and 64512:1:2", w.prefix, a, w.nextHop)
		}
	}

	// What the agent says: sluicectl bgp peers / routes and the metrics.
	var list []localapi.BGPPeer
	must(t, json.Unmarshal([]byte(s.ctl(t, "bgp", "peers", "-o", "json")), &list))
	if len(list) != 2 || list[0].Name != "router-v4" || list[0].State != "established" || list[0].Sent != 2 ||
		list[1].Name != "router-v6" || list[1].State != "established" || list[1].Sent != 1 || list[0].RouterID != "198.18.0.1" {
		t.Errorf("sluicectl bgp peers: %+v", list)
	}
	if routes := s.ctl(t, "bgp", "routes"); !strings.Contains(routes, "router-v4  203.0.113.10/32 64512:100 64512:1:2") {
		t.Errorf("sluicectl bgp routes:\n%s", routes)
	}
	if v := s.metric(t, `sluice_bgp_session_established{address="198.18.0.2",peer="router-v4",state="established"}`); v != "1" {
		t.Errorf("sluice_bgp_session_established = %s", v)
	}

	// Service empty goes: its address is withdrawn, the others stay.
	s.withoutEmpty = true
	s.config(t, "1")
	if err := frr.WaitWithdrawn(ctx, netip.MustParsePrefix(emptyVIP4+"/32")); err != nil {
		t.Fatalf("%v\nagent:\n%s", err, s.agent.Output())
	}
	if _, err := frr.WaitRoute(ctx, netip.MustParsePrefix(vip4+"/32")); err != nil {
		t.Fatal(err)
	}
}

// routerObjects are pool lab (203.0.113.0/24), BGPPeer router (AS 64512 at peerAddress,
// fast timers, and more spec fields if given: ", passive: true") and an advertisement of lab.
func routerObjects(peerAddress, moreSpec string) string {
	return fmt.Sprintf(`---
apiVersion: sluice.dev/v1alpha1
kind: IPPool
metadata: {name: lab}
spec: {blocks: [{cidr: 203.0.113.0/24}]}
---
apiVersion: sluice.dev/v1alpha1
kind: BGPPeer
metadata: {name: router}
spec: {peerAddress: %s, peerASN: 64512, localASN: 64513, holdTime: 9s, keepaliveTime: 3s, connectRetryTime: 1s%s}
---
apiVersion: sluice.dev/v1alpha1
kind: BGPAdvertisement
metadata: {name: lab}
spec: {pools: [lab]}
`, peerAddress, moreSpec)
}

// nodeObject is this node's Node object.
const nodeObject = `---
apiVersion: v1
kind: Node
metadata: {name: node}
status: {addresses: [{type: InternalIP, address: 198.18.0.1}]}
`

// mdObjects: this node, and one IPv4 peer with a TCP-MD5 password from a Secret and
// graceful restart.
func mdObjects(password string) string { return nodeObject + peerObjects(password) }

// peerObjects are mdObjects without the Node.
func peerObjects(password string) string {
	return `---
apiVersion: sluice.dev/v1alpha1
kind: IPPool
metadata: {name: lab}
spec: {blocks: [{cidr: 203.0.113.0/24}]}
---
apiVersion: v1
kind: Secret
metadata: {name: bgp-md5, namespace: sluice-system}
stringData: {password: ` + password + `}
---
apiVersion: sluice.dev/v1alpha1
kind: BGPPeer
metadata: {name: router}
spec:
  peerAddress: 198.18.0.2
  peerASN: 64512
  localASN: 64513
  holdTime: 9s
  keepaliveTime: 3s
  connectRetryTime: 1s
  passwordSecretRef: {name: bgp-md5}
  gracefulRestart: {enabled: true, restartTime: 60s}
---
apiVersion: sluice.dev/v1alpha1
kind: BGPAdvertisement
metadata: {name: lab}
`
}

// TestBGPPasswordAndGracefulRestart: with the wrong TCP-MD5 password the session stays down
// and says so; with the right one it comes up. Then the agent is stopped (a planned restart):
// FRR keeps the routes, marked stale, instead of withdrawing them, and the agent back
// refreshes them.
func TestBGPPasswordAndGracefulRestart(t *testing.T) {
	s := newSingleNode(t, 1)
	frr := peers.StartForTest(t, peers.StartFRR, s.client.Name, peers.Config{
		RouterID: netip.MustParseAddr("198.18.0.2"), ASN: 64512, HoldTime: 9 * time.Second,
		Neighbors: []peers.Neighbor{{Address: netip.MustParseAddr("198.18.0.1"), ASN: 64513, Password: "s3cret", GracefulRestart: true}},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	prefix := netip.MustParsePrefix(vip4 + "/32")

	s.extra = mdObjects("wrong")
	config := s.config(t, "1")
	s.startAgent(t, config)
	time.Sleep(4 * time.Second) // several connection attempts (connect retry 1s)
	var list []localapi.BGPPeer
	must(t, json.Unmarshal([]byte(s.ctl(t, "bgp", "peers", "-o", "json")), &list))
	if len(list) != 1 || list[0].State == "established" || !strings.Contains(list[0].LastError, "cannot connect") {
		t.Fatalf("with the wrong password: %+v", list)
	}
	t.Logf("with the wrong password: %s %q", list[0].State, list[0].LastError)
	if sessions, err := frr.Sessions(ctx); err != nil || len(sessions) != 1 || sessions[0].State == peers.Established {
		t.Fatalf("FRR with the wrong password: %+v, %v", sessions, err)
	}

	s.extra = mdObjects("s3cret")
	s.config(t, "1")
	if _, err := frr.WaitRoute(ctx, prefix); err != nil {
		t.Fatalf("with the right password: %v\n%s", err, s.agent.Output())
	}

	// A planned stop: no Cease, FRR keeps the route as stale.
	must(t, syscall.Kill(s.agent.PID, syscall.SIGTERM))
	<-s.agent.Done()
	waitFor(t, "FRR to mark the route stale", func() bool {
		a, err := frr.Attributes(ctx, prefix)
		return err == nil && a.Stale
	})
	time.Sleep(3 * time.Second)
	if a, err := frr.Attributes(ctx, prefix); err != nil || !a.Stale {
		t.Fatalf("3s into the restart FRR has %+v, %v; want the route kept, stale", a, err)
	}
	s.startAgent(t, config)
	waitFor(t, "the route refreshed", func() bool {
		a, err := frr.Attributes(ctx, prefix)
		return err == nil && !a.Stale
	})
}

// localService is a Service with externalTrafficPolicy Local on 203.0.113.20 (health check
// node port 32000) whose one endpoint runs on this node, ready or not.
func localService(ready bool) string {
	return `---
apiVersion: v1
kind: Service
metadata: {name: local, namespace: demo}
spec: {type: LoadBalancer, externalTrafficPolicy: Local, healthCheckNodePort: 32000, ports: [{name: tcp, port: 80, protocol: TCP}]}
status: {loadBalancer: {ingress: [{ip: 203.0.113.20}]}}
` + endpointSliceYAML("local", fmt.Sprintf("{addresses: [198.51.100.11], nodeName: node, conditions: {ready: %v}}", ready))
}

// TestBGPExternalTrafficPolicyLocal: a Service with externalTrafficPolicy Local is announced
// from the node while it has a ready local endpoint, and withdrawn when its last one goes
// (Cilium #44803 regressed exactly this). The time from the change to FRR's withdrawal is
// logged: it is one file reload, one model build and one BGP UPDATE.
func TestBGPExternalTrafficPolicyLocal(t *testing.T) {
	s := newSingleNode(t, 1)
	frr := peers.StartForTest(t, peers.StartFRR, s.client.Name, peers.Config{
		RouterID: netip.MustParseAddr("198.18.0.2"), ASN: 64512, HoldTime: 9 * time.Second,
		Neighbors: []peers.Neighbor{{Address: netip.MustParseAddr("198.18.0.1"), ASN: 64513}, {Address: netip.MustParseAddr("2001:db8:18::1"), ASN: 64513}},
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	local := netip.MustParsePrefix("203.0.113.20/32")

	s.extra = bgpObjects + localService(true)
	s.startAgent(t, s.config(t, "1"))
	if _, err := frr.WaitRoute(ctx, local); err != nil {
		t.Fatalf("%v\n%s", err, s.agent.Output())
	}
	s.extra = bgpObjects + localService(false)
	start := time.Now()
	s.config(t, "1")
	if err := frr.WaitWithdrawn(ctx, local); err != nil {
		t.Fatal(err)
	}
	t.Logf("withdrawn at FRR %v after the endpoint stopped being ready", time.Since(start).Round(time.Millisecond))
	// The Cluster-policy Service stays announced.
	if _, err := frr.WaitRoute(ctx, netip.MustParsePrefix(vip4+"/32")); err != nil {
		t.Fatal(err)
	}
	s.extra = bgpObjects + localService(true)
	s.config(t, "1")
	if _, err := frr.WaitRoute(ctx, local); err != nil {
		t.Fatal(err)
	}
}

// TestBGPInterop: BIRD 2 and gobgpd, like FRR, receive every Service address from the agent
// with the node as next hop and its AS, over IPv4 and IPv6 sessions, and see it withdrawn.
func TestBGPInterop(t *testing.T) {
	for _, d := range []struct {
		name  string
		start func(t *testing.T, netns string, cfg peers.Config) routeReader
	}{
		{"bird", func(t *testing.T, netns string, cfg peers.Config) routeReader {
			return peers.StartForTest(t, peers.StartBIRD, netns, cfg)
		}},
		{"gobgpd", func(t *testing.T, netns string, cfg peers.Config) routeReader {
			return peers.StartForTest(t, peers.StartGoBGP, netns, cfg)
		}},
	} {
		t.Run(d.name, func(t *testing.T) {
			s := newSingleNode(t, 1)
			r := d.start(t, s.client.Name, peers.Config{
				RouterID: netip.MustParseAddr("198.18.0.2"), ASN: 64512, HoldTime: 9 * time.Second,
				Neighbors: []peers.Neighbor{{Address: netip.MustParseAddr("198.18.0.1"), ASN: 64513}, {Address: netip.MustParseAddr("2001:db8:18::1"), ASN: 64513}},
			})
			s.extra = bgpObjects
			s.startAgent(t, s.config(t, "1"))
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			for _, w := range []struct{ prefix, nextHop string }{
				{vip4 + "/32", "198.18.0.1"}, {emptyVIP4 + "/32", "198.18.0.1"}, {vip6 + "/128", "2001:db8:18::1"},
			} {
				got, err := r.WaitRoute(ctx, netip.MustParsePrefix(w.prefix))
				if err != nil {
					t.Fatalf("%v\nagent:\n%s", err, s.agent.Output())
				}
				if !slices.Contains(got.NextHops, netip.MustParseAddr(w.nextHop)) || !slices.Equal(got.ASPath, []uint32{64513}) {
					t.Errorf("%s: %+v; want next hop %s, AS path [64513]", w.prefix, got, w.nextHop)
				}
			}
			s.withoutEmpty = true
			s.config(t, "1")
			if err := r.WaitWithdrawn(ctx, netip.MustParsePrefix(emptyVIP4+"/32")); err != nil {
				t.Fatal(err)
			}
		})
	}
}

type routeReader interface {
	WaitRoute(context.Context, netip.Prefix) (peers.Route, error)
	WaitWithdrawn(context.Context, netip.Prefix) error
}

// TestBGPNodeRemoved: when the node's Node object goes (the node leaves the cluster), the
// agent withdraws at once with a Cease, although graceful restart would keep a stopping
// agent's routes: FRR drops them at once rather than holding them stale.
func TestBGPNodeRemoved(t *testing.T) {
	s := newSingleNode(t, 1)
	frr := peers.StartForTest(t, peers.StartFRR, s.client.Name, peers.Config{
		RouterID: netip.MustParseAddr("198.18.0.2"), ASN: 64512, HoldTime: 9 * time.Second,
		Neighbors: []peers.Neighbor{{Address: netip.MustParseAddr("198.18.0.1"), ASN: 64513, Password: "s3cret", GracefulRestart: true}},
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	prefix := netip.MustParsePrefix(vip4 + "/32")
	s.extra = mdObjects("s3cret")
	s.startAgent(t, s.config(t, "1"))
	if _, err := frr.WaitRoute(ctx, prefix); err != nil {
		t.Fatalf("%v\n%s", err, s.agent.Output())
	}
	// The same objects without the Node.
	s.extra = peerObjects("s3cret")
	s.config(t, "1")
	if err := frr.WaitWithdrawn(ctx, prefix); err != nil {
		t.Fatalf("%v\n%s", err, s.agent.Output())
	}
	if !strings.Contains(s.agent.Output(), "this node's Node object is gone: withdrawing everything") {
		t.Errorf("agent did not say why:\n%s", s.agent.Output())
	}
}

// TestBGPASNMismatch: a peer whose AS is not the one configured is refused with a
// NOTIFICATION, and the agent says exactly that.
func TestBGPASNMismatch(t *testing.T) {
	s := newSingleNode(t, 1)
	peers.StartForTest(t, peers.StartFRR, s.client.Name, peers.Config{
		RouterID: netip.MustParseAddr("198.18.0.2"), ASN: 64512, HoldTime: 9 * time.Second,
		Neighbors: []peers.Neighbor{{Address: netip.MustParseAddr("198.18.0.1"), ASN: 64513}},
	})
	s.extra = strings.Replace(peerObjects("x"), "peerASN: 64512", "peerASN: 64999", 1) + nodeObject
	s.extra = strings.Replace(s.extra, "  passwordSecretRef: {name: bgp-md5}\n", "", 1)
	s.startAgent(t, s.config(t, "1"))
	var list []localapi.BGPPeer
	deadline := time.Now().Add(15 * time.Second)
	for {
		list = nil
		must(t, json.Unmarshal([]byte(s.ctl(t, "bgp", "peers", "-o", "json")), &list))
		if len(list) == 1 && strings.Contains(list[0].LastError, "NOTIFICATION") && strings.Contains(strings.ToLower(list[0].LastError), "bad peer as") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the agent does not report the AS mismatch: %+v", list)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if list[0].State == "established" {
		t.Fatalf("established with the wrong AS: %+v", list)
	}
	t.Logf("%s: %s", list[0].State, list[0].LastError)
}

// TestBGPPassive: with passive set the agent never connects; it listens on port 179 and the
// router opens the session, which then carries the Service addresses as usual.
func TestBGPPassive(t *testing.T) {
	s := newSingleNode(t, 1)
	s.extra = nodeObject + routerObjects("198.18.0.2", ", passive: true")
	s.startAgent(t, s.config(t, "1"))
	// No router yet: an agent that connected would be refused (nothing listens on the
	// client's port 179) and say so; a passive one waits, saying nothing.
	time.Sleep(2500 * time.Millisecond) // over two connect-retry intervals
	var list []localapi.BGPPeer
	must(t, json.Unmarshal([]byte(s.ctl(t, "bgp", "peers", "-o", "json")), &list))
	if len(list) != 1 || list[0].State == "established" || list[0].LastError != "" {
		t.Fatalf("passive peer before the router is up: %+v; want waiting, with no connection attempt", list)
	}
	frr := peers.StartForTest(t, peers.StartFRR, s.client.Name, peers.Config{
		RouterID: netip.MustParseAddr("198.18.0.2"), ASN: 64512, HoldTime: 9 * time.Second,
		Neighbors: []peers.Neighbor{{Address: netip.MustParseAddr("198.18.0.1"), ASN: 64513}},
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := frr.WaitRoute(ctx, netip.MustParsePrefix(vip4+"/32")); err != nil {
		t.Fatalf("%v\nagent:\n%s", err, s.agent.Output())
	}
	// The node's end of the session is port 179: the router connected to it.
	out, err := s.node.Exec(ctx, "ss", "-Htn", "state", "established", "( sport = :179 )")
	must(t, err)
	if !strings.Contains(string(out), "198.18.0.1:179") || !strings.Contains(string(out), "198.18.0.2:") {
		t.Fatalf("no session accepted on 198.18.0.1:179: ss says %q", out)
	}
	t.Logf("accepted session: %s", strings.TrimSpace(string(out)))
}
