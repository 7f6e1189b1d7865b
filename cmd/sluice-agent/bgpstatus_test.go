package main

import (
	"context"
	"net"
	"net/netip"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sluice-lb/sluice/api/v1alpha1"
	"github.com/sluice-lb/sluice/internal/testenv"
	"github.com/sluice-lb/sluice/test/peers"
)

// freePort returns a TCP port nothing listens on at addr, just now.
func freePort(t *testing.T, addr string) uint16 {
	t.Helper()
	ln, err := net.Listen("tcp", addr+":0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return uint16(ln.Addr().(*net.TCPAddr).Port)
}

// TestBinaryKubernetesBGPStatus: in Kubernetes mode the agent writes its sessions into the
// BGPPeers' status, one entry per node: Established for a real FRR (on loopback, in this
// namespace), a clear state and message for a peer nobody answers for; the entry goes when
// the peer's nodeSelector drops the node, and the sessions read Idle once the agent stops.
// Nothing is announced: FRR refuses a loopback next hop as martian (prefixesSent is proven
// by the bgp package's tests and, through sluicectl, by the e2e suite).
func TestBinaryKubernetesBGPStatus(t *testing.T) {
	testenv.RequirePrivileged(t)
	testenv.RequireCommands(t, peers.FRRBgpd, "vtysh")
	env, dir, kubeconfig := kubeLab(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	routerPort, nowherePort := freePort(t, "127.0.0.1"), freePort(t, "127.0.0.1")
	frr := peers.StartForTest(t, peers.StartFRR, "", peers.Config{
		RouterID: netip.MustParseAddr("10.255.0.1"), ASN: 64512, HoldTime: 9 * time.Second,
		Listen:    netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), routerPort),
		Neighbors: []peers.Neighbor{{Address: netip.MustParseAddr("127.0.0.2"), ASN: 64513, Passive: true}},
	})

	retry, hold, keepalive := metav1.Duration{Duration: time.Second}, metav1.Duration{Duration: 9 * time.Second}, metav1.Duration{Duration: 3 * time.Second}
	peer := func(name string, port uint16) *v1alpha1.BGPPeer {
		return &v1alpha1.BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1alpha1.BGPPeerSpec{
			PeerAddress: "127.0.0.1", PeerPort: int32(port), SourceAddress: "127.0.0.2", RouterID: "10.255.0.2",
			PeerASN: 64512, LocalASN: 64513, ConnectRetryTime: &retry, HoldTime: &hold, KeepaliveTime: &keepalive}}
	}
	for _, o := range []client.Object{
		&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-1", Labels: map[string]string{"role": "lb"}}},
		peer("router", routerPort),
		peer("nowhere", nowherePort),
	} {
		if err := env.Client.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}

	bin := filepath.Join(dir, "sluice-agent")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	logs := &testenv.Buffer{}
	cmd := exec.Command(bin, "--kubeconfig", kubeconfig, "--namespace", "sluice-system", "--node-name", "node-1",
		"--state-dir", filepath.Join(dir, "state"), "--metrics-addr", "127.0.0.1:0", "--health-addr", "127.0.0.1:0")
	cmd.Stderr = logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			<-done
		}
	})

	// waitSessions waits until BGPPeer name's status.sessions satisfies ok.
	waitSessions := func(name, what string, ok func([]v1alpha1.PeerSession) bool) []v1alpha1.PeerSession {
		t.Helper()
		deadline := time.Now().Add(45 * time.Second)
		for {
			var p v1alpha1.BGPPeer
			if err := env.Client.Get(ctx, client.ObjectKey{Name: name}, &p); err != nil {
				t.Fatal(err)
			}
			if ok(p.Status.Sessions) {
				return p.Status.Sessions
			}
			if time.Now().After(deadline) {
				t.Fatalf("BGPPeer %s: sessions %+v, want %s\nagent:\n%s", name, p.Status.Sessions, what, logs)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	one := func(ss []v1alpha1.PeerSession, state string) bool {
		return len(ss) == 1 && ss[0].Node == "node-1" && ss[0].State == state && ss[0].Since != nil
	}
	up := waitSessions("router", "node-1 Established", func(ss []v1alpha1.PeerSession) bool {
		return one(ss, "Established") && ss[0].Message == ""
	})
	t.Logf("router: %+v", up[0])
	if s, err := frr.WaitEstablished(ctx, netip.MustParseAddr("127.0.0.2")); err != nil || !s.RemoteID.IsValid() || s.RemoteID.String() != "10.255.0.2" {
		t.Fatalf("FRR's side: %+v, %v", s, err)
	}
	down := waitSessions("nowhere", "node-1 not established, saying why", func(ss []v1alpha1.PeerSession) bool {
		return len(ss) == 1 && ss[0].State != "Established" && strings.Contains(ss[0].Message, "connect")
	})
	t.Logf("nowhere: %+v", down[0])

	// The node no longer peers with "nowhere": its entry goes.
	var nowhere v1alpha1.BGPPeer
	if err := env.Client.Get(ctx, client.ObjectKey{Name: "nowhere"}, &nowhere); err != nil {
		t.Fatal(err)
	}
	nowhere.Spec.NodeSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"role": "none"}}
	if err := env.Client.Update(ctx, &nowhere); err != nil {
		t.Fatal(err)
	}
	waitSessions("nowhere", "no sessions", func(ss []v1alpha1.PeerSession) bool { return len(ss) == 0 })

	// A planned stop: the session reads Idle, and says why.
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("agent after SIGTERM: %v\n%s", err, logs)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("agent still running 15s after SIGTERM")
	}
	waitSessions("router", "node-1 Idle after the stop", func(ss []v1alpha1.PeerSession) bool {
		return one(ss, "Idle") && ss[0].Message == "the agent stopped"
	})
}
