package l2announce

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// freeUDPPort returns a UDP port free on 127.0.0.1 and 127.0.0.2 just now.
func freeUDPPort(t *testing.T) int {
	t.Helper()
	for range 20 {
		c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		port := c.LocalAddr().(*net.UDPAddr).Port
		c.Close()
		if c2, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 2), Port: port}); err == nil {
			c2.Close()
			return port
		}
	}
	t.Fatal("no free UDP port")
	return 0
}

type member struct {
	m      *Members
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
	mu     sync.Mutex
	seen   [][]string // OnChange calls
}

func (x *member) last() []string {
	x.mu.Lock()
	defer x.mu.Unlock()
	if len(x.seen) == 0 {
		return nil
	}
	return x.seen[len(x.seen)-1]
}

func startMember(t *testing.T, name, bind string, port int, peers []Peer) *member {
	t.Helper()
	x := &member{done: make(chan error, 1)}
	var err error
	x.m, err = NewMembers(MembersOptions{Node: name, Bind: netip.MustParseAddr(bind), Port: port,
		OnChange: func(alive []string) { x.mu.Lock(); x.seen = append(x.seen, alive); x.mu.Unlock() }})
	if err != nil {
		t.Fatal(err)
	}
	x.m.SetPeers(peers)
	ctx, cancel := context.WithCancel(context.Background())
	x.cancel = cancel
	go func() { x.done <- x.m.Run(ctx) }()
	t.Cleanup(x.stop)
	return x
}

func (x *member) stop() {
	x.once.Do(func() {
		x.cancel()
		<-x.done
	})
}

func waitAlive(t *testing.T, x *member, want []string, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for !slices.Equal(x.last(), want) {
		if time.Since(start) > within {
			t.Fatalf("live nodes %v after %v, want %v", x.last(), within, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return time.Since(start)
}

var twoPeers = []Peer{{Name: "a", Addr: netip.MustParseAddr("127.0.0.1")}, {Name: "b", Addr: netip.MustParseAddr("127.0.0.2")}}

// TestMembersSeeEachOther: two agents' heartbeats make each see the other alive within a
// few intervals; one stopping is dead to the other within the timeout and an interval.
func TestMembersSeeEachOther(t *testing.T) {
	port := freeUDPPort(t)
	a := startMember(t, "a", "127.0.0.1", port, twoPeers)
	b := startMember(t, "b", "127.0.0.2", port, twoPeers)
	waitAlive(t, a, []string{"a", "b"}, time.Second)
	waitAlive(t, b, []string{"a", "b"}, time.Second)
	if !a.m.Fresh() {
		t.Error("a is not fresh")
	}
	b.stop()
	took := waitAlive(t, a, []string{"a"}, 2*time.Second)
	t.Logf("b's death seen by a after %v", took)
	if took > DefaultTimeout+2*DefaultInterval {
		t.Errorf("b's death seen after %v, want within the timeout %v and an interval", took, DefaultTimeout)
	}
}

// TestMembersIgnoreSpoofed: a heartbeat with a peer's name from another address, or garbage,
// does not make that peer alive.
func TestMembersIgnoreSpoofed(t *testing.T) {
	port := freeUDPPort(t)
	a := startMember(t, "a", "127.0.0.1", port, twoPeers)
	waitAlive(t, a, []string{"a"}, time.Second) // past the start's doubt
	c, err := net.DialUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 3)}, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	hb, err := heartbeat{Name: "b", Incarnation: 1, Seq: 1}.marshal()
	if err != nil {
		t.Fatal(err)
	}
	for range 10 {
		c.Write(hb)
		c.Write([]byte("garbage"))
		c.Write(append([]byte(magic), 9, 9, 9))
		time.Sleep(20 * time.Millisecond)
	}
	if alive := a.m.Alive(); !slices.Equal(alive, []string{"a"}) {
		t.Fatalf("live nodes %v after spoofed heartbeats for b from 127.0.0.3", alive)
	}
}

// TestMembersStart: a starting agent doubts for a timeout — nobody alive, not fresh — before
// it trusts what it hears.
func TestMembersStart(t *testing.T) {
	port := freeUDPPort(t)
	a := startMember(t, "a", "127.0.0.1", port, twoPeers)
	startMember(t, "b", "127.0.0.2", port, twoPeers)
	time.Sleep(DefaultInterval)
	if a.m.Fresh() || len(a.m.Alive()) != 0 {
		t.Fatalf("just started: fresh %v, alive %v; want in doubt", a.m.Fresh(), a.m.Alive())
	}
	took := waitAlive(t, a, []string{"a", "b"}, time.Second)
	if took < DefaultTimeout-2*DefaultInterval {
		t.Errorf("trusted after %v, before the timeout %v", took, DefaultTimeout)
	}
}

// TestMembersStall: an agent that finds it was stalled for longer than the timeout doubts
// everything — not fresh, no live node — for a timeout, then trusts the heartbeats again.
func TestMembersStall(t *testing.T) {
	port := freeUDPPort(t)
	a := startMember(t, "a", "127.0.0.1", port, twoPeers)
	startMember(t, "b", "127.0.0.2", port, twoPeers)
	waitAlive(t, a, []string{"a", "b"}, time.Second)
	// As if a had been stopped for a second: its last tick is that old.
	a.m.mu.Lock()
	a.m.lastTick = time.Now().Add(-time.Second)
	a.m.mu.Unlock()
	if a.m.Fresh() || len(a.m.Alive()) != 0 {
		t.Fatalf("stalled: fresh %v, alive %v; want in doubt, nobody", a.m.Fresh(), a.m.Alive())
	}
	waitAlive(t, a, nil, time.Second)
	took := waitAlive(t, a, []string{"a", "b"}, 2*time.Second)
	if !a.m.Fresh() {
		t.Error("not fresh again")
	}
	t.Logf("trusted again after %v", took)
}

func TestHeartbeatRoundTrip(t *testing.T) {
	in := heartbeat{Name: "node-1", Incarnation: 42, Seq: 7, Interfaces: []string{"eth0", "bond0.100"}}
	b, err := in.marshal()
	if err != nil {
		t.Fatal(err)
	}
	out, err := parseHeartbeat(b)
	if err != nil || out.Name != "node-1" || out.Incarnation != 42 || out.Seq != 7 || !slices.Equal(out.Interfaces, in.Interfaces) {
		t.Fatalf("parsed %+v %v", out, err)
	}
	for _, bad := range [][]byte{nil, []byte("SLHB"), b[:len(b)-1], append(slices.Clone(b), 0), append([]byte("XXXX"), b[4:]...)} {
		if _, err := parseHeartbeat(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
	for _, h := range []heartbeat{{}, {Name: "n", Interfaces: []string{""}}, {Name: "n", Interfaces: []string{"a-name-far-too-long"}}} {
		if _, err := h.marshal(); err == nil {
			t.Errorf("%+v marshalled", h)
		}
	}
}

// TestMembersInterfaces: each agent tells the others the interfaces it can answer on; a
// change is reported like a change of the live nodes.
func TestMembersInterfaces(t *testing.T) {
	port := freeUDPPort(t)
	a := startMember(t, "a", "127.0.0.1", port, twoPeers)
	x := &member{done: make(chan error, 1)}
	var mu sync.Mutex
	ifaces := []string{"eth0"}
	var err error
	x.m, err = NewMembers(MembersOptions{Node: "b", Bind: netip.MustParseAddr("127.0.0.2"), Port: port,
		Interfaces: func() []string { mu.Lock(); defer mu.Unlock(); return slices.Clone(ifaces) }})
	if err != nil {
		t.Fatal(err)
	}
	x.m.SetPeers(twoPeers)
	ctx, cancel := context.WithCancel(context.Background())
	x.cancel = cancel
	go func() { x.done <- x.m.Run(ctx) }()
	t.Cleanup(x.stop)
	waitAlive(t, a, []string{"a", "b"}, time.Second)
	wait := func(want []string) {
		t.Helper()
		deadline := time.Now().Add(time.Second)
		for !slices.Equal(a.m.Interfaces()["b"], want) {
			if time.Now().After(deadline) {
				t.Fatalf("a knows b's interfaces as %v, want %v", a.m.Interfaces()["b"], want)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	wait([]string{"eth0"})
	calls := len(a.seen)
	mu.Lock()
	ifaces = []string{"eth0", "eth1"}
	mu.Unlock()
	wait([]string{"eth0", "eth1"})
	time.Sleep(3 * DefaultInterval)
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.seen) == calls {
		t.Error("a change of b's interfaces was not reported")
	}
}

func FuzzParseHeartbeat(f *testing.F) {
	b, _ := heartbeat{Name: "node-1", Incarnation: 1, Seq: 2, Interfaces: []string{"eth0"}}.marshal()
	f.Add(b)
	f.Add([]byte("SLHB\x02"))
	f.Fuzz(func(t *testing.T, data []byte) {
		h, err := parseHeartbeat(data)
		if err != nil {
			return
		}
		again, err := h.marshal()
		if err != nil || string(again) != string(data) {
			t.Fatalf("%q parsed as %+v, which marshals to %q (%v)", data, h, again, err)
		}
	})
}

// TestMembersLargestHeartbeat: a heartbeat of the largest size (a 253-byte name, 64
// interfaces of 15 bytes) makes it across a real socket whole.
func TestMembersLargestHeartbeat(t *testing.T) {
	port := freeUDPPort(t)
	long := strings.Repeat("n", 253)
	peers := []Peer{{Name: "a", Addr: netip.MustParseAddr("127.0.0.1")}, {Name: long, Addr: netip.MustParseAddr("127.0.0.2")}}
	a := startMember(t, "a", "127.0.0.1", port, peers)
	var ifaces []string
	for i := range maxInterfaces {
		ifaces = append(ifaces, fmt.Sprintf("if%013d", i))
	}
	b, err := NewMembers(MembersOptions{Node: long, Bind: netip.MustParseAddr("127.0.0.2"), Port: port, Interfaces: func() []string { return ifaces }})
	if err != nil {
		t.Fatal(err)
	}
	b.SetPeers(peers)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	if hb, _ := (heartbeat{Name: long, Interfaces: ifaces}).marshal(); len(hb) != maxHeartbeat {
		t.Fatalf("the largest heartbeat is %d bytes, maxHeartbeat says %d", len(hb), maxHeartbeat)
	}
	want := []string{"a", long}
	slices.Sort(want)
	waitAlive(t, a, want, 2*time.Second)
	if got := a.m.Interfaces()[long]; len(got) != maxInterfaces {
		t.Fatalf("a knows %d of b's interfaces, want %d", len(got), maxInterfaces)
	}
}

// TestMembersNewer: a heartbeat counts if it is newer than the last one of its sender — a
// later sequence number, a later incarnation — or, after a Timeout of silence, whatever its
// incarnation (a peer restarted after its clock went back).
func TestMembersNewer(t *testing.T) {
	m := &Members{opts: MembersOptions{Timeout: DefaultTimeout}, inc: map[string]uint64{"b": 100}, seq: map[string]uint64{"b": 5},
		seen: map[string]time.Time{}}
	now := time.Now()
	m.seen["b"] = now.Add(-50 * time.Millisecond)
	for _, c := range []struct {
		inc, seq uint64
		want     bool
	}{{100, 6, true}, {100, 5, false}, {100, 4, false}, {101, 1, true}, {99, 9, false}} {
		if got := m.newer(heartbeat{Name: "b", Incarnation: c.inc, Seq: c.seq}, now); got != c.want {
			t.Errorf("incarnation %d seq %d: newer %v, want %v", c.inc, c.seq, got, c.want)
		}
	}
	m.seen["b"] = now.Add(-time.Second)
	if !m.newer(heartbeat{Name: "b", Incarnation: 1, Seq: 1}, now) {
		t.Error("an earlier incarnation after a second of silence is not taken")
	}
}

// TestMembersRunReleasesPort: once Run has returned, the port is free again.
func TestMembersRunReleasesPort(t *testing.T) {
	port := freeUDPPort(t)
	x := startMember(t, "a", "127.0.0.1", port, twoPeers)
	x.stop()
	y, err := NewMembers(MembersOptions{Node: "a", Bind: netip.MustParseAddr("127.0.0.1"), Port: port})
	if err != nil {
		t.Fatalf("port still taken after Run returned: %v", err)
	}
	y.conn.Close()
}
