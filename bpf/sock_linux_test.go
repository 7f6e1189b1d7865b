package bpf

import (
	"errors"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/test/lab"
	"github.com/sluice-lb/sluice/test/traffic"
)

// sockLab is a namespace with two servers on loopback (be1 on port 8081, be2 on 8082, both
// families) and a datapath whose socket programs are attached to a cgroup: its
// clients are processes in that cgroup and namespace.
type sockLab struct {
	d      *Datapath
	pod    *traffic.PodClient
	ns     *lab.Namespace
	nextID uint32
}

func newSockLab(t *testing.T) *sockLab {
	t.Helper()
	l := lab.ForTest(t)
	ns, err := l.Namespace("pod")
	if err != nil {
		t.Fatal(err)
	}
	cg, err := l.Cgroup("node")
	if err != nil {
		t.Fatal(err)
	}
	for i, name := range []string{"be1", "be2"} {
		srv, err := traffic.Serve(ns, name, 8081+i)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { srv.Close() })
	}
	d := mustLoad(t, Options{Sizes: testSizes})
	if err := d.AttachCgroup(cg.Path, tempBPFFS(t)); err != nil {
		t.Fatal(err)
	}
	return &sockLab{d: d, ns: ns, pod: &traffic.PodClient{NS: ns, Cgroup: cg}, nextID: 1}
}

// frontend programs addr:port/proto in scope with backends on loopback (127.0.0.1 or ::1, by
// addr's family) at the given ports, and returns the service id.
func (s *sockLab) frontend(t *testing.T, scope Scope, addr netip.Addr, port uint16, proto uint8, f Frontend, ports ...uint16) uint32 {
	t.Helper()
	id := s.nextID
	s.nextID++
	lo := netip.MustParseAddr("127.0.0.1")
	if addr.Is6() {
		lo = netip.IPv6Loopback()
	}
	var table []uint32
	for i, p := range ports {
		bid := id*100 + uint32(i) + 1
		if err := s.d.PutBackend(bid, Backend{Addr: lo, Port: p}); err != nil {
			t.Fatal(err)
		}
		table = append(table, bid)
	}
	f.ServiceID, f.MaglevBase, f.MaglevSize = id, 64*id, uint32(len(table))
	if len(table) > 0 {
		if err := s.d.PutMaglev(f.MaglevBase, table); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.d.PutFrontend(FrontendKey{Addr: addr, Port: port, Proto: proto, Scope: scope}, f); err != nil {
		t.Fatal(err)
	}
	return id
}

// ask asks n times and returns the answers by server; every answer must report want as its
// peer.
func (s *sockLab) ask(t *testing.T, network string, want netip.AddrPort, n int) map[string]int {
	t.Helper()
	by := map[string]int{}
	answers, err := s.pod.AskN(network, want.String(), n)
	if err != nil {
		t.Fatalf("%s to %s: %v", network, want, err)
	}
	for _, a := range answers {
		if a.Remote != want {
			t.Fatalf("%s to %s: the socket reports its peer as %s, want the frontend", network, want, a.Remote)
		}
		by[a.Server]++
	}
	return by
}

// TestSocketLB: connect() and sendmsg() to a cluster IP (and to an external address) go to
// the backends, and getpeername() / recvmsg() report the frontend, in both families.
func TestSocketLB(t *testing.T) {
	s := newSockLab(t)
	c4 := netip.MustParseAddr("10.96.0.10")
	c6 := netip.MustParseAddr("fd00:96::10")
	lb4 := netip.MustParseAddr("203.0.113.10")
	for _, a := range []netip.Addr{c4, c6} {
		s.frontend(t, ScopeInternal, a, 80, ProtoTCP, Frontend{}, 8081, 8082)
		s.frontend(t, ScopeInternal, a, 53, ProtoUDP, Frontend{}, 8081, 8082)
	}
	s.frontend(t, ScopeExternal, lb4, 80, ProtoTCP, Frontend{}, 8082)

	before := readCounters(t, s.d)
	asks := 0
	for _, tc := range []struct {
		network string
		to      netip.AddrPort
		servers int
	}{
		{traffic.TCP, netip.AddrPortFrom(c4, 80), 2},
		{traffic.UDP, netip.AddrPortFrom(c4, 53), 2},
		{traffic.UDPUnconnected, netip.AddrPortFrom(c4, 53), 2},
		{traffic.TCP, netip.AddrPortFrom(c6, 80), 2},
		{traffic.UDPUnconnected, netip.AddrPortFrom(c6, 53), 2},
		{traffic.TCP, netip.AddrPortFrom(lb4, 80), 1},
	} {
		t.Run(fmt.Sprintf("%s %s", tc.network, tc.to), func(t *testing.T) {
			by := s.ask(t, tc.network, tc.to, 12)
			asks += 12
			if len(by) != tc.servers {
				t.Errorf("answered by %v, want %d servers", by, tc.servers)
			}
		})
	}
	got := readCounters(t, s.d).Sub(before)
	if got[CounterSockXlate].Packets != uint64(asks) {
		t.Errorf("sock_xlate counted %d, want one per request (%d)", got[CounterSockXlate].Packets, asks)
	}
}

// TestSocketLBRefusedWithoutBackend: a frontend without a usable backend refuses connect()
// with ECONNREFUSED, as kube-proxy's REJECT does.
func TestSocketLBRefusedWithoutBackend(t *testing.T) {
	s := newSockLab(t)
	vip := netip.MustParseAddr("10.96.0.11")
	s.frontend(t, ScopeInternal, vip, 80, ProtoTCP, Frontend{})
	before := readCounters(t, s.d)
	_, err := s.pod.Ask(traffic.TCP, netip.AddrPortFrom(vip, 80).String())
	if !errors.Is(err, traffic.ErrRefused) {
		t.Fatalf("connect to a frontend without backends: %v, want connection refused", err)
	}
	if got := readCounters(t, s.d).Sub(before)[CounterSockNoBackend].Packets; got != 1 {
		t.Errorf("sock_no_backend counted %d, want 1", got)
	}
}

// TestSocketLBLeavesOthersAlone: sockets of processes outside the cgroup, addresses that are
// no frontend and frontends with source ranges (the packet path checks them) keep their
// destination.
func TestSocketLBLeavesOthersAlone(t *testing.T) {
	s := newSockLab(t)
	vip := netip.MustParseAddr("10.96.0.12")
	restricted := netip.MustParseAddr("203.0.113.12")
	s.frontend(t, ScopeInternal, vip, 80, ProtoTCP, Frontend{}, 8081)
	s.frontend(t, ScopeExternal, restricted, 80, ProtoTCP, Frontend{Flags: FrontendSourceRanges}, 8081)
	before := readCounters(t, s.d)

	outside := &traffic.PodClient{NS: s.ns}
	for _, tc := range []struct {
		name   string
		client *traffic.PodClient
		to     netip.AddrPort
	}{
		{"outside the cgroup", outside, netip.AddrPortFrom(vip, 80)},
		{"another port", s.pod, netip.AddrPortFrom(vip, 81)},
		{"source ranges", s.pod, netip.AddrPortFrom(restricted, 80)},
	} {
		// The namespace has only loopback: a destination left alone is unreachable.
		if a, err := tc.client.Ask(traffic.TCP, tc.to.String()); err == nil || errors.Is(err, traffic.ErrRefused) {
			t.Errorf("%s: asking %s gave %+v, %v; want it unreachable (not translated)", tc.name, tc.to, a, err)
		}
	}
	if got := readCounters(t, s.d).Sub(before); got[CounterSockXlate].Packets != 0 || got[CounterSockNoBackend].Packets != 0 {
		t.Errorf("socket programs acted: %d translated, %d refused", got[CounterSockXlate].Packets, got[CounterSockNoBackend].Packets)
	}
}

// TestSocketLBAffinity: with ClientIP affinity, every connection from one pod (network
// namespace) goes to the backend its first one got, recorded under the marked service id.
func TestSocketLBAffinity(t *testing.T) {
	s := newSockLab(t)
	vip := netip.MustParseAddr("10.96.0.13")
	id := s.frontend(t, ScopeInternal, vip, 80, ProtoTCP, Frontend{AffinityTimeout: time.Minute}, 8081, 8082)
	by := s.ask(t, traffic.TCP, netip.AddrPortFrom(vip, 80), 12)
	if len(by) != 1 {
		t.Fatalf("answered by %v: want one backend for every connection of the pod", by)
	}
	n := 0
	if _, err := s.d.DeleteAffinity(func(sid, _ uint32) bool {
		if sid == id {
			n++
		}
		return false
	}); err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Errorf("%d affinity entries for service %d, want one (the pod's)", n, id)
	}
}
