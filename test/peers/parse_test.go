package peers

import (
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"
)

// The samples in testdata/ were recorded from the real daemons by
// `PRIVILEGED_TESTS=1 go test -run TestInterop -args -update` (see interop_test.go for
// the topology): each daemon has two Established sessions with gobgpd (IPv4 and IPv6)
// and one with a neighbor that does not exist.

var (
	addr   = netip.MustParseAddr
	prefix = netip.MustParsePrefix
)

func sample(t *testing.T, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func checkSessions(t *testing.T, got []Session, err error, want []Session) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("sessions:\n got %+v\nwant %+v", got, want)
	}
}

func checkRoutes(t *testing.T, got []Route, err error, want []Route) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("routes:\n got %+v\nwant %+v", got, want)
	}
}

func TestParseFRRNeighbors(t *testing.T) {
	got, err := parseFRRNeighbors(sample(t, "frr-neighbors.json"))
	checkSessions(t, got, err, []Session{
		{Neighbor: addr("10.0.1.1"), ASN: 65001, State: Established, RemoteID: addr("10.255.0.1"), PrefixesReceived: 2, Up: 8 * time.Second},
		{Neighbor: addr("10.0.1.98"), ASN: 65098, State: Connect},
		{Neighbor: addr("2001:db8:1::1"), ASN: 65001, State: Established, RemoteID: addr("10.255.0.1"), PrefixesReceived: 2, Up: 2 * time.Second},
	})
}

func TestParseFRRRoutes(t *testing.T) {
	got, err := parseFRRRoutes(sample(t, "frr-ipv4-unicast.json"))
	checkRoutes(t, got, err, []Route{
		{Prefix: prefix("198.51.100.0/25"), Best: true}, // originated (network statement)
		{Prefix: prefix("198.51.100.128/25"), Peer: addr("10.0.1.1"), NextHops: []netip.Addr{addr("10.0.1.1")}, ASPath: []uint32{65001, 65003}, Best: true},
		{Prefix: prefix("203.0.113.0/24"), Peer: addr("10.0.1.1"), NextHops: []netip.Addr{addr("10.0.1.1")}, ASPath: []uint32{65001}, Best: true},
	})
	got, err = parseFRRRoutes(sample(t, "frr-ipv6-unicast.json"))
	checkRoutes(t, got, err, []Route{
		{Prefix: prefix("2001:db8:f001::/48"), Peer: addr("2001:db8:1::1"), NextHops: []netip.Addr{addr("2001:db8:1::1")}, ASPath: []uint32{65001}, Best: true},
		{Prefix: prefix("2001:db8:f002::/48"), Best: true},
		{Prefix: prefix("2001:db8:f003::/48"), Peer: addr("2001:db8:1::1"), NextHops: []netip.Addr{addr("2001:db8:1::1")}, ASPath: []uint32{65001, 65003}, Best: true},
	})
}

// zebra-route-ecmp.json was recorded by test/e2e's TestBGPECMP: FRR's kernel route for a
// Service address announced by two nodes.
func TestParseZebraRoute(t *testing.T) {
	data := sample(t, "zebra-route-ecmp.json")
	got, err := parseZebraRoute(data, prefix("203.0.113.30/32"))
	if err != nil || !reflect.DeepEqual(got, []netip.Addr{addr("198.18.1.11"), addr("198.18.1.12")}) {
		t.Errorf("ECMP route: %v, %v", got, err)
	}
	if got, err := parseZebraRoute(data, prefix("203.0.113.31/32")); err != nil || len(got) != 0 {
		t.Errorf("another prefix: %v, %v", got, err)
	}
	// A route zebra has not installed, or a next hop not in the kernel, does not count.
	got, err = parseZebraRoute([]byte(`{"10.0.0.0/8":[{"prefix":"10.0.0.0/8","installed":false,"nexthops":[{"ip":"10.1.1.1","fib":true}]},
		{"prefix":"10.0.0.0/8","installed":true,"nexthops":[{"ip":"10.1.1.2","fib":false},{"ip":"10.1.1.3","fib":true}]}]}`), prefix("10.0.0.0/8"))
	if err != nil || !reflect.DeepEqual(got, []netip.Addr{addr("10.1.1.3")}) {
		t.Errorf("uninstalled route and non-fib next hop: %v, %v", got, err)
	}
	if _, err := parseZebraRoute([]byte("% Unknown command"), prefix("10.0.0.0/8")); err == nil {
		t.Error("not JSON: no error")
	}
}

func TestParseBIRDProtocols(t *testing.T) {
	got, err := parseBIRDProtocols(sample(t, "bird-protocols-all.txt"))
	checkSessions(t, got, err, []Session{
		{Neighbor: addr("10.0.2.1"), ASN: 65001, State: Established, RemoteID: addr("10.255.0.1"), PrefixesReceived: 2},
		{Neighbor: addr("10.0.2.99"), ASN: 65099, State: Active},
		{Neighbor: addr("2001:db8:2::1"), ASN: 65001, State: Established, RemoteID: addr("10.255.0.1"), PrefixesReceived: 2},
	})
}

func TestParseBIRDRoutes(t *testing.T) {
	protocols := map[string]netip.Addr{"peer1": addr("10.0.2.1"), "peer2": addr("2001:db8:2::1"), "peer3": addr("10.0.2.99")}
	got, err := parseBIRDRoutes(sample(t, "bird-route-all.txt"), protocols)
	checkRoutes(t, got, err, []Route{
		{Prefix: prefix("198.51.100.0/25"), Peer: addr("10.0.2.1"), NextHops: []netip.Addr{addr("10.0.2.1")}, ASPath: []uint32{65001, 65002}, Best: true},
		{Prefix: prefix("198.51.100.128/25"), Best: true}, // static blackhole
		{Prefix: prefix("203.0.113.0/24"), Peer: addr("10.0.2.1"), NextHops: []netip.Addr{addr("10.0.2.1")}, ASPath: []uint32{65001}, Best: true},
		{Prefix: prefix("2001:db8:f001::/48"), Peer: addr("2001:db8:2::1"), NextHops: []netip.Addr{addr("2001:db8:2::1")}, ASPath: []uint32{65001}, Best: true},
		{Prefix: prefix("2001:db8:f002::/48"), Peer: addr("2001:db8:2::1"), NextHops: []netip.Addr{addr("2001:db8:2::1")}, ASPath: []uint32{65001, 65002}, Best: true},
		{Prefix: prefix("2001:db8:f003::/48"), Best: true},
	})
}

// TestParseBIRDRoutesPaths covers what the recorded sample lacks: several paths for one
// prefix (the second on a line indented by spaces), "from" in the source, an AS set, an
// IPv6 next hop with its link-local address, and a multipath static route.
func TestParseBIRDRoutesPaths(t *testing.T) {
	const out = `Table master6:
2001:db8:9::/48      unicast [peer1 12:00:00.000 from 2001:db8:2::9] * (100) [AS65009i]
	via 2001:db8:2::1 on a0
	Type: BGP univ
	BGP.origin: IGP
	BGP.as_path: 65001 {65008,65009}
	BGP.next_hop: 2001:db8:2::1 fe80::1
                     unicast [peer2 12:00:01.000] (100) [AS65002i]
	via 2001:db8:3::1 on b0
	Type: BGP univ
	BGP.as_path: 65002
	BGP.next_hop: 2001:db8:3::1
2001:db8:a::/48      unicast [static6 2026-01-02] * (200)
	via 2001:db8:2::1 on a0 weight 1
	via 2001:db8:3::1 on b0 weight 1
	Type: static univ
`
	got, err := parseBIRDRoutes([]byte(out), map[string]netip.Addr{"peer1": addr("2001:db8:2::1"), "peer2": addr("2001:db8:3::1")})
	checkRoutes(t, got, err, []Route{
		{Prefix: prefix("2001:db8:9::/48"), Peer: addr("2001:db8:2::9"), NextHops: []netip.Addr{addr("2001:db8:2::1"), addr("fe80::1")}, ASPath: []uint32{65001, 65008, 65009}, Best: true},
		{Prefix: prefix("2001:db8:9::/48"), Peer: addr("2001:db8:3::1"), NextHops: []netip.Addr{addr("2001:db8:3::1")}, ASPath: []uint32{65002}},
		{Prefix: prefix("2001:db8:a::/48"), NextHops: []netip.Addr{addr("2001:db8:2::1"), addr("2001:db8:3::1")}, Best: true},
	})
}

func TestParseGoBGPNeighbors(t *testing.T) {
	got, err := parseGoBGPNeighbors(sample(t, "gobgp-neighbor.json"))
	checkSessions(t, got, err, []Session{
		{Neighbor: addr("10.0.1.2"), ASN: 65002, State: Established, RemoteID: addr("10.255.0.2"), PrefixesReceived: 1},
		{Neighbor: addr("10.0.1.99"), ASN: 65099, State: Active},
		{Neighbor: addr("10.0.2.2"), ASN: 65003, State: Established, RemoteID: addr("10.255.0.3"), PrefixesReceived: 1},
		{Neighbor: addr("2001:db8:1::2"), ASN: 65002, State: Established, RemoteID: addr("10.255.0.2"), PrefixesReceived: 1},
		{Neighbor: addr("2001:db8:2::2"), ASN: 65003, State: Established, RemoteID: addr("10.255.0.3"), PrefixesReceived: 1},
	})
}

func TestParseGoBGPNeighborsStateName(t *testing.T) {
	got, err := parseGoBGPNeighbors([]byte(`[{"state":{"neighbor_address":"10.0.0.1","peer_asn":1,"session_state":"OPENCONFIRM"}},
		{"state":{"neighbor_address":"10.0.0.2","peer_asn":2}}]`))
	checkSessions(t, got, err, []Session{
		{Neighbor: addr("10.0.0.1"), ASN: 1, State: OpenConfirm},
		{Neighbor: addr("10.0.0.2"), ASN: 2, State: Idle},
	})
}

func TestParseGoBGPRib(t *testing.T) {
	got, err := parseGoBGPRib(sample(t, "gobgp-rib-ipv4.json"))
	checkRoutes(t, got, err, []Route{
		{Prefix: prefix("198.51.100.0/25"), Peer: addr("10.0.1.2"), NextHops: []netip.Addr{addr("10.0.1.2")}, ASPath: []uint32{65002}, Best: true},
		{Prefix: prefix("198.51.100.128/25"), Peer: addr("10.0.2.2"), NextHops: []netip.Addr{addr("10.0.2.2")}, ASPath: []uint32{65003}, Best: true},
		{Prefix: prefix("203.0.113.0/24"), Best: true}, // added with AddPath
	})
	got, err = parseGoBGPRib(sample(t, "gobgp-rib-ipv6.json"))
	checkRoutes(t, got, err, []Route{
		{Prefix: prefix("2001:db8:f001::/48"), Best: true},
		{Prefix: prefix("2001:db8:f002::/48"), Peer: addr("2001:db8:1::2"), NextHops: []netip.Addr{addr("2001:db8:1::2")}, ASPath: []uint32{65002}, Best: true},
		{Prefix: prefix("2001:db8:f003::/48"), Peer: addr("2001:db8:2::2"), NextHops: []netip.Addr{addr("2001:db8:2::2")}, ASPath: []uint32{65003}, Best: true},
	})
	got, err = parseGoBGPRib([]byte("{}\n"))
	checkRoutes(t, got, err, nil)
}

func TestParseErrors(t *testing.T) {
	for name, err := range map[string]error{
		"FRR neighbors, not JSON":   second(parseFRRNeighbors([]byte("% Unknown command"))),
		"FRR routes, bad AS path":   second(parseFRRRoutes([]byte(`{"routes":{"10.0.0.0/8":[{"path":"65001 x"}]}}`))),
		"BIRD routes, orphan attr":  second(parseBIRDRoutes([]byte("\tType: BGP univ\n"), nil)),
		"BIRD protocols, bad AS":    second(parseBIRDProtocols([]byte("p1 BGP --- up 12:00\n  Neighbor AS: x\n"))),
		"gobgp neighbors, bad addr": second(parseGoBGPNeighbors([]byte(`[{"state":{"neighbor_address":"nope"}}]`))),
		"gobgp rib, bad prefix":     second(parseGoBGPRib([]byte(`{"10.0.0.0":[]}`))),
	} {
		if err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func second[T any](_ T, err error) error { return err }

func TestParseASPath(t *testing.T) {
	for in, want := range map[string][]uint32{
		"":                    nil,
		"65001":               {65001},
		"65001 65002":         {65001, 65002},
		"65001 {65003,65004}": {65001, 65003, 65004},
		"(65010) 65001":       {65010, 65001},
		"4200000000":          {4200000000},
	} {
		got, err := parseASPath(in)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("parseASPath(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
}
