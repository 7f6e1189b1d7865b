package l2announce

import (
	"context"
	"net"
	"net/netip"
	"slices"
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
	hb, err := marshalHeartbeat("b", 1, 1)
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
	b, err := marshalHeartbeat("node-1", 42, 7)
	if err != nil {
		t.Fatal(err)
	}
	name, inc, seq, err := parseHeartbeat(b)
	if err != nil || name != "node-1" || inc != 42 || seq != 7 {
		t.Fatalf("parsed %q %d %d %v", name, inc, seq, err)
	}
	for _, bad := range [][]byte{nil, []byte("SLHB"), b[:len(b)-1], append(b, 0), append([]byte("XXXX"), b[4:]...)} {
		if _, _, _, err := parseHeartbeat(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
	if _, err := marshalHeartbeat("", 1, 1); err == nil {
		t.Error("empty name marshalled")
	}
}

func FuzzParseHeartbeat(f *testing.F) {
	b, _ := marshalHeartbeat("node-1", 1, 2)
	f.Add(b)
	f.Add([]byte("SLHB\x01"))
	f.Fuzz(func(t *testing.T, data []byte) {
		name, inc, seq, err := parseHeartbeat(data)
		if err != nil {
			return
		}
		again, err := marshalHeartbeat(name, inc, seq)
		if err != nil || string(again) != string(data) {
			t.Fatalf("%q parsed as %q %d %d, which marshals to %q (%v)", data, name, inc, seq, again, err)
		}
	})
}
