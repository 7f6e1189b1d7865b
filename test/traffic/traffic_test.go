package traffic

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/test/lab"
)

func TestResultDeviation(t *testing.T) {
	r := Result{ByServer: map[string]int{"a": 100, "b": 110, "c": 90}}
	if d := r.MaxDeviation(3); math.Abs(d-0.1) > 1e-9 || r.OK() != 300 {
		t.Fatalf("deviation %v ok %d", d, r.OK())
	}
	if d := r.MaxDeviation(4); d != 1 {
		t.Fatalf("a server that answered nothing must count as full deviation, got %v", d)
	}
	if s := r.String(); s != "a=100 b=110 c=90 failed=0" {
		t.Fatalf("String() = %q", s)
	}
}

// TestTrafficInLab: a client namespace talks to two server namespaces over TCP and UDP, IPv4
// and IPv6; a long-lived session survives while a stream runs, and breaks when its server goes.
func TestTrafficInLab(t *testing.T) {
	l := lab.ForTest(t)
	client, err := l.Namespace("client")
	must(t, err)
	var servers []*Server
	for i, name := range []string{"one", "two"} {
		ns, err := l.Namespace(name)
		must(t, err)
		net := []string{"198.51.100", "203.0.113"}[i]
		must(t, l.Connect(lab.Endpoint{NS: client, Name: "to-" + name, Addrs: []string{net + ".1/24", "2001:db8:" + []string{"1", "2"}[i] + "::1/64"}},
			lab.Endpoint{NS: ns, Name: "eth0", Addrs: []string{net + ".2/24", "2001:db8:" + []string{"1", "2"}[i] + "::2/64"}}))
		s, err := Serve(ns, name, 8080)
		must(t, err)
		servers = append(servers, s)
	}
	defer func() {
		for _, s := range servers {
			s.Close()
		}
	}()
	c := NewClient(client)
	for _, tc := range []struct{ network, addr, want string }{
		{"tcp", "198.51.100.2:8080", "one"}, {"udp", "198.51.100.2:8080", "one"},
		{"tcp", "[2001:db8:2::2]:8080", "two"}, {"udp", "203.0.113.2:8080", "two"},
	} {
		got, err := c.Ask(tc.network, tc.addr)
		if err != nil || got != tc.want {
			t.Fatalf("%s %s: %q %v, want %q", tc.network, tc.addr, got, err, tc.want)
		}
	}
	if r := c.Spread("tcp", "198.51.100.2:8080", 50, 5); r.ByServer["one"] != 50 || r.Failed != 0 {
		t.Fatalf("spread: %v", r)
	}

	session, err := c.Hold("203.0.113.2:8080", 10*time.Millisecond)
	must(t, err)
	stream := c.Stream("tcp", "198.51.100.2:8080", 2)
	time.Sleep(200 * time.Millisecond)
	r := stream.Stop()
	if r.OK() < 10 || r.Failed != 0 {
		t.Fatalf("stream: %v", r)
	}
	if session.Server != "two" {
		t.Fatalf("session answered by %q", session.Server)
	}
	// The session's server goes away: the session must report it.
	servers[1].Close()
	time.Sleep(100 * time.Millisecond)
	n, err := session.Stop()
	if err == nil || !strings.Contains(err.Error(), "long-lived connection broke") || n < 5 {
		t.Fatalf("session after its server closed: %d exchanges, err %v", n, err)
	}
	if _, err := c.Ask("tcp", "203.0.113.2:8080"); err == nil {
		t.Fatal("a closed server must refuse")
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
