package bpf

import (
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/internal/testenv"
)

// TestCollectConntrack: expired flows go with both entries, live ones stay, an orphaned
// reply entry goes, and the timeouts follow the state.
func TestCollectConntrack(t *testing.T) {
	testenv.RequirePrivileged(t)
	d := mustLoad(t, Options{Timeouts: Timeouts{UDPUnreplied: 30 * time.Second, TCPEstablished: time.Hour, TCPSynSent: 120 * time.Second}})
	now := MonotonicNow()
	vip := netip.MustParseAddrPort("203.0.113.10:80")
	backend := netip.MustParseAddrPort("198.51.100.11:8080")
	flow := func(name string, proto uint8, state ConntrackState, age time.Duration, sport uint16) (ConntrackKey, ConntrackKey) {
		client := netip.AddrPortFrom(netip.MustParseAddr("198.18.0.2"), sport)
		orig := ConntrackKey{Src: client, Dst: vip, Proto: proto}
		reply := ConntrackKey{Src: backend, Dst: client, Proto: proto, Reply: true}
		e := ConntrackEntry{LastSeen: now - age, Created: now - age, BackendID: 1, ServiceID: 1, State: state, NAT: backend}
		if err := d.PutConntrack(orig, e); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		e.NAT = vip
		if err := d.PutConntrack(reply, e); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		return orig, reply
	}
	udpOld, udpOldR := flow("udp expired", ProtoUDP, StateUnreplied, 31*time.Second, 1000)
	udpNew, udpNewR := flow("udp live", ProtoUDP, StateUnreplied, 29*time.Second, 1001)
	tcpOld, tcpOldR := flow("tcp established, idle > 1h", ProtoTCP, StateEstablished, 2*time.Hour, 1002)
	tcpNew, tcpNewR := flow("tcp established, idle 10m", ProtoTCP, StateEstablished, 10*time.Minute, 1003)
	synOld, synOldR := flow("tcp syn, idle 10m", ProtoTCP, StateSynSent, 10*time.Minute, 1004)
	orphan := ConntrackKey{Src: backend, Dst: netip.MustParseAddrPort("198.18.0.2:1005"), Proto: ProtoTCP, Reply: true}
	if err := d.PutConntrack(orphan, ConntrackEntry{LastSeen: now, NAT: vip, State: StateEstablished}); err != nil {
		t.Fatal(err)
	}

	st, err := d.CollectConntrack(now)
	if err != nil {
		t.Fatal(err)
	}
	if st.Entries != 11 || st.Deleted != 7 {
		t.Fatalf("gc stats %+v, want 11 seen, 7 deleted", st)
	}
	var left []ConntrackKey
	if err := d.WalkConntrack(func(keys []ConntrackKey, _ []ConntrackEntry) bool { left = append(left, keys...); return true }); err != nil {
		t.Fatal(err)
	}
	for _, k := range []ConntrackKey{udpNew, udpNewR, tcpNew, tcpNewR} {
		if !slices.Contains(left, k) {
			t.Errorf("live entry %+v deleted", k)
		}
	}
	for _, k := range []ConntrackKey{udpOld, udpOldR, tcpOld, tcpOldR, synOld, synOldR, orphan} {
		if slices.Contains(left, k) {
			t.Errorf("expired entry %+v kept", k)
		}
	}
	// Nothing left to collect.
	if st, err := d.CollectConntrack(now); err != nil || st.Deleted != 0 || st.Entries != 4 {
		t.Fatalf("second gc: %+v %v", st, err)
	}
}

// TestCollectConntrackRace: flows refreshed or created while the collector walks the map
// keep both their entries (the walk is not a snapshot).
func TestCollectConntrackRace(t *testing.T) {
	testenv.RequirePrivileged(t)
	d := mustLoad(t, Options{Timeouts: Timeouts{TCPEstablished: time.Hour}})
	now := MonotonicNow()
	vip := netip.MustParseAddrPort("203.0.113.10:80")
	backend := netip.MustParseAddrPort("198.51.100.11:8080")
	put := func(sport uint16, lastSeen time.Duration) (ConntrackKey, ConntrackKey) {
		client := netip.AddrPortFrom(netip.MustParseAddr("198.18.0.2"), sport)
		orig := ConntrackKey{Src: client, Dst: vip, Proto: ProtoTCP}
		reply := ConntrackKey{Src: backend, Dst: client, Proto: ProtoTCP, Reply: true}
		e := ConntrackEntry{LastSeen: lastSeen, Created: lastSeen, BackendID: 1, ServiceID: 1, State: StateEstablished, NAT: backend}
		if err := d.PutConntrack(orig, e); err != nil {
			t.Fatal(err)
		}
		e.NAT = vip
		if err := d.PutConntrack(reply, e); err != nil {
			t.Fatal(err)
		}
		return orig, reply
	}
	refreshed, refreshedR := put(2000, now-2*time.Hour) // expired when walked, refreshed after
	var born, bornR ConntrackKey
	d.gcAfterWalk = func() {
		put(2000, now)               // a packet refreshes the flow
		born, bornR = put(2001, now) // a new flow starts
		d.gcAfterWalk = nil
	}
	if _, err := d.CollectConntrack(now); err != nil {
		t.Fatal(err)
	}
	for _, k := range []ConntrackKey{refreshed, refreshedR, born, bornR} {
		if _, err := d.LookupConntrack(k); err != nil {
			t.Errorf("entry %+v of a live flow deleted: %v", k, err)
		}
	}
}

// TestDeleteAffinity: entries the predicate calls stale go, the others stay.
func TestDeleteAffinity(t *testing.T) {
	testenv.RequirePrivileged(t)
	d := mustLoad(t, Options{})
	now := MonotonicNow()
	c1, c2 := netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr("2001:db8:18::2")
	for _, e := range []struct {
		svc    uint32
		client netip.Addr
		be     uint32
	}{{1, c1, 10}, {1, c2, 11}, {2, c1, 10}} {
		if err := d.PutAffinity(e.svc, e.client, e.be, now); err != nil {
			t.Fatal(err)
		}
	}
	n, err := d.DeleteAffinity(func(svc, be uint32) bool { return svc == 1 && be == 11 })
	if err != nil || n != 1 {
		t.Fatalf("DeleteAffinity = %d, %v; want 1 deleted", n, err)
	}
	if _, _, err := d.Affinity(1, c2); err == nil {
		t.Fatal("stale entry kept")
	}
	for _, k := range []struct {
		svc    uint32
		client netip.Addr
	}{{1, c1}, {2, c1}} {
		if be, _, err := d.Affinity(k.svc, k.client); err != nil || be != 10 {
			t.Fatalf("entry %d/%v: %d %v", k.svc, k.client, be, err)
		}
	}
}
