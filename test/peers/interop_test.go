package peers_test

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/internal/testenv"
	"github.com/sluice-lb/sluice/test/lab"
	"github.com/sluice-lb/sluice/test/peers"
)

var (
	addr   = netip.MustParseAddr
	prefix = netip.MustParsePrefix
)

// The interop topology: gobgpd in "a" peers over IPv4 and IPv6 with FRR in "b" and BIRD
// in "c". Every daemon also has a neighbor that does not exist.
//
//	b (FRR, AS 65002) --10.0.1.0/24, 2001:db8:1::/64-- a (gobgpd, AS 65001) --10.0.2.0/24, 2001:db8:2::/64-- c (BIRD, AS 65003)
var (
	gobgpConfig = peers.Config{
		RouterID: addr("10.255.0.1"), ASN: 65001,
		Neighbors: []peers.Neighbor{
			{Address: addr("10.0.1.2"), ASN: 65002},
			{Address: addr("2001:db8:1::2"), ASN: 65002},
			{Address: addr("10.0.2.2"), ASN: 65003},
			{Address: addr("2001:db8:2::2"), ASN: 65003},
			{Address: addr("10.0.1.99"), ASN: 65099},
		},
	}
	frrConfig = peers.Config{
		RouterID: addr("10.255.0.2"), ASN: 65002,
		Neighbors: []peers.Neighbor{
			{Address: addr("10.0.1.1"), ASN: 65001},
			{Address: addr("2001:db8:1::1"), ASN: 65001, Passive: true},
			{Address: addr("10.0.1.98"), ASN: 65098},
		},
		Networks: []netip.Prefix{prefix("198.51.100.0/25"), prefix("2001:db8:f002::/48")},
	}
	birdConfig = peers.Config{
		RouterID: addr("10.255.0.3"), ASN: 65003,
		Neighbors: []peers.Neighbor{
			{Address: addr("10.0.2.1"), ASN: 65001, Passive: true},
			{Address: addr("2001:db8:2::1"), ASN: 65001},
			{Address: addr("10.0.2.99"), ASN: 65099},
		},
		Networks: []netip.Prefix{prefix("198.51.100.128/25"), prefix("2001:db8:f003::/48")},
		HoldTime: 9 * time.Second,
	}
)

func TestInterop(t *testing.T) {
	testenv.RequirePrivileged(t)
	testenv.RequireCommands(t, "ip", peers.FRRBgpd, "vtysh", "bird", "birdc", "gobgpd", "gobgp")
	l := lab.ForTest(t)
	a, b, c := namespace(t, l, "a"), namespace(t, l, "b"), namespace(t, l, "c")
	must(t, l.Connect(
		lab.Endpoint{NS: a, Name: "b0", Addrs: []string{"10.0.1.1/24", "2001:db8:1::1/64"}},
		lab.Endpoint{NS: b, Name: "a0", Addrs: []string{"10.0.1.2/24", "2001:db8:1::2/64"}}))
	must(t, l.Connect(
		lab.Endpoint{NS: a, Name: "c0", Addrs: []string{"10.0.2.1/24", "2001:db8:2::1/64"}},
		lab.Endpoint{NS: c, Name: "a0", Addrs: []string{"10.0.2.2/24", "2001:db8:2::2/64"}}))

	start := time.Now()
	gobgp := peers.StartForTest(t, peers.StartGoBGP, a.Name, gobgpConfig)
	frr := peers.StartForTest(t, peers.StartFRR, b.Name, frrConfig)
	bird := peers.StartForTest(t, peers.StartBIRD, c.Name, birdConfig)
	t.Logf("daemons started in %v", time.Since(start))
	// The daemons run in the foreground and `ip netns exec` execs them: the PID we hold is
	// the daemon's own, the one it writes to its PID file.
	for _, d := range []struct {
		pid     int
		pidFile string
	}{{frr.PID(), filepath.Join(frr.Dir(), "bgpd.pid")}, {bird.PID(), filepath.Join(bird.Dir(), "bird.pid")}} {
		data, err := os.ReadFile(d.pidFile)
		must(t, err)
		if strings.TrimSpace(string(data)) != strconv.Itoa(d.pid) {
			t.Errorf("%s holds %q, want %d", d.pidFile, data, d.pid)
		}
	}

	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	for _, w := range []struct {
		d interface {
			WaitEstablished(context.Context, netip.Addr) (peers.Session, error)
		}
		neighbor string
		asn      uint32
	}{
		{frr, "10.0.1.1", 65001}, {frr, "2001:db8:1::1", 65001},
		{bird, "10.0.2.1", 65001}, {bird, "2001:db8:2::1", 65001},
		{gobgp, "10.0.1.2", 65002}, {gobgp, "2001:db8:1::2", 65002},
		{gobgp, "10.0.2.2", 65003}, {gobgp, "2001:db8:2::2", 65003},
	} {
		s, err := w.d.WaitEstablished(ctx, addr(w.neighbor))
		if err != nil {
			t.Fatal(err)
		}
		if s.ASN != w.asn || !s.RemoteID.IsValid() {
			t.Errorf("%T session with %s: ASN %d, remote ID %v; want ASN %d and a remote ID", w.d, w.neighbor, s.ASN, s.RemoteID, w.asn)
		}
	}
	t.Logf("8 sessions Established %v after start", time.Since(start))
	for _, d := range []struct {
		d    peers.Daemon
		dead string
	}{{gobgp, "10.0.1.99"}, {frr, "10.0.1.98"}, {bird, "10.0.2.99"}} {
		sessions, err := d.d.Sessions(ctx)
		must(t, err)
		i := slices.IndexFunc(sessions, func(s peers.Session) bool { return s.Neighbor == addr(d.dead) })
		if i < 0 || sessions[i].State == peers.Established || sessions[i].State == "" {
			t.Errorf("%T: session with missing neighbor %s: %+v", d.d, d.dead, sessions)
		}
	}

	// gobgpd originates; FRR and BIRD learn the paths with gobgpd's address as next hop.
	originated := []peers.Path{
		{Prefix: prefix("203.0.113.0/24"), Communities: []string{"65001:100"}},
		{Prefix: prefix("2001:db8:f001::/48")},
	}
	for _, p := range originated {
		must(t, gobgp.AddPath(ctx, p))
	}
	for _, w := range []struct {
		d interface {
			WaitRoute(context.Context, netip.Prefix) (peers.Route, error)
		}
		prefix  string
		peer    string
		asPath  []uint32
		nextHop string
	}{
		{frr, "203.0.113.0/24", "10.0.1.1", []uint32{65001}, "10.0.1.1"},
		{frr, "2001:db8:f001::/48", "2001:db8:1::1", []uint32{65001}, "2001:db8:1::1"},
		{bird, "203.0.113.0/24", "10.0.2.1", []uint32{65001}, "10.0.2.1"},
		{bird, "2001:db8:f001::/48", "2001:db8:2::1", []uint32{65001}, "2001:db8:2::1"},
		// Transit through gobgpd, both ways.
		{frr, "198.51.100.128/25", "10.0.1.1", []uint32{65001, 65003}, "10.0.1.1"},
		{bird, "198.51.100.0/25", "10.0.2.1", []uint32{65001, 65002}, "10.0.2.1"},
		{bird, "2001:db8:f002::/48", "2001:db8:2::1", []uint32{65001, 65002}, "2001:db8:2::1"},
		{gobgp, "198.51.100.0/25", "10.0.1.2", []uint32{65002}, "10.0.1.2"},
		{gobgp, "2001:db8:f003::/48", "2001:db8:2::2", []uint32{65003}, "2001:db8:2::2"},
	} {
		r, err := w.d.WaitRoute(ctx, prefix(w.prefix))
		if err != nil {
			t.Fatal(err)
		}
		if r.Peer != addr(w.peer) || !slices.Equal(r.ASPath, w.asPath) || !slices.Contains(r.NextHops, addr(w.nextHop)) || !r.Best {
			t.Errorf("%T route %s: %+v; want peer %s, AS path %v, next hop %s, best", w.d, w.prefix, r, w.peer, w.asPath, w.nextHop)
		}
	}
	t.Logf("routes received %v after start", time.Since(start))
	if *peers.Update {
		record(t, ctx, gobgp, frr, bird)
	}

	// gobgpd withdraws; both peers drop the paths.
	for _, p := range originated {
		must(t, gobgp.DeletePath(ctx, p))
	}
	for _, d := range []interface {
		WaitWithdrawn(context.Context, netip.Prefix) error
	}{frr, bird} {
		for _, p := range originated {
			if err := d.WaitWithdrawn(ctx, p.Prefix); err != nil {
				t.Error(err)
			}
		}
	}

	// Stop everything; no process may be left in the namespaces.
	pids := []int{gobgp.PID(), frr.PID(), bird.PID()}
	for _, d := range []peers.Daemon{gobgp, frr, bird} {
		must(t, d.Stop())
	}
	for _, pid := range pids {
		if _, err := os.Stat("/proc/" + strconv.Itoa(pid)); err == nil {
			t.Errorf("daemon PID %d still exists after Stop", pid)
		}
	}
	for _, ns := range []*lab.Namespace{a, b, c} {
		out, err := lab.Exec(ctx, "", "ip", "netns", "pids", ns.Name)
		if err != nil || strings.TrimSpace(string(out)) != "" {
			t.Errorf("processes left in %s: %q, %v", ns.Name, out, err)
		}
	}
	t.Logf("total %v", time.Since(start))
}

// record writes the daemons' raw outputs into testdata/ for the parser tests.
func record(t *testing.T, ctx context.Context, gobgp *peers.GoBGP, frr *peers.FRR, bird *peers.BIRD) {
	t.Helper()
	write := func(name string, data []byte, err error) {
		t.Helper()
		must(t, err)
		must(t, os.WriteFile(filepath.Join("testdata", name), data, 0o644))
	}
	out, err := frr.VTY(ctx, "show bgp neighbors json")
	write("frr-neighbors.json", out, err)
	out, err = frr.VTY(ctx, "show bgp ipv4 unicast json")
	write("frr-ipv4-unicast.json", out, err)
	out, err = frr.VTY(ctx, "show bgp ipv6 unicast json")
	write("frr-ipv6-unicast.json", out, err)
	out, err = bird.Birdc(ctx, "show", "protocols", "all")
	write("bird-protocols-all.txt", out, err)
	out, err = bird.Birdc(ctx, "show", "route", "all")
	write("bird-route-all.txt", out, err)
	out, err = gobgp.CLI(ctx, "-j", "neighbor")
	write("gobgp-neighbor.json", out, err)
	out, err = gobgp.CLI(ctx, "-j", "global", "rib", "-a", "ipv4")
	write("gobgp-rib-ipv4.json", out, err)
	out, err = gobgp.CLI(ctx, "-j", "global", "rib", "-a", "ipv6")
	write("gobgp-rib-ipv6.json", out, err)
}

func namespace(t *testing.T, l *lab.Lab, short string) *lab.Namespace {
	t.Helper()
	ns, err := l.Namespace(short)
	must(t, err)
	return ns
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestStartFailure checks that a daemon that cannot start is reported with the namespace
// and its output, and leaves no process behind.
func TestStartFailure(t *testing.T) {
	testenv.RequirePrivileged(t)
	testenv.RequireCommands(t, "ip", "bird")
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	_, err := peers.StartBIRD(ctx, "sluice-no-such-netns", t.TempDir(), birdConfig)
	if err == nil || !strings.Contains(err.Error(), "sluice-no-such-netns") || !strings.Contains(err.Error(), "exited") {
		t.Errorf("StartBIRD in a missing namespace: %v; want an error naming it and the exit", err)
	}
	_, err = peers.StartBIRD(ctx, "", t.TempDir(), peers.Config{RouterID: addr("10.0.0.1")})
	if err == nil || !strings.Contains(err.Error(), "ASN") {
		t.Errorf("StartBIRD with an invalid config: %v; want an error about the ASN", err)
	}
}
