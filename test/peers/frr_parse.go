package peers

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
)

// parseFRRNeighbors parses `show bgp neighbors json`: an object keyed by neighbor
// address. Keys that are not addresses (interface neighbors) are skipped.
func parseFRRNeighbors(data []byte) ([]Session, error) {
	var doc map[string]struct {
		RemoteAS       uint32 `json:"remoteAs"`
		State          string `json:"bgpState"`
		RemoteRouterID string `json:"remoteRouterId"`
		UpMsec         int64  `json:"bgpTimerUpMsec"`
		Families       map[string]struct {
			Accepted int `json:"acceptedPrefixCounter"`
		} `json:"addressFamilyInfo"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("parsing FRR neighbors: %w", err)
	}
	var sessions []Session
	for key, n := range doc {
		addr, err := netip.ParseAddr(key)
		if err != nil {
			continue
		}
		s := Session{Neighbor: addr, ASN: n.RemoteAS, State: SessionState(n.State)}
		if s.State == Established {
			s.Up = time.Duration(n.UpMsec) * time.Millisecond
		}
		if id, err := netip.ParseAddr(n.RemoteRouterID); err == nil && !id.IsUnspecified() {
			s.RemoteID = id
		}
		for _, f := range n.Families {
			s.PrefixesReceived += f.Accepted
		}
		sessions = append(sessions, s)
	}
	sortSessions(sessions)
	return sessions, nil
}

// parseFRRRoutes parses `show bgp {ipv4|ipv6} unicast json`.
func parseFRRRoutes(data []byte) ([]Route, error) {
	var doc struct {
		Routes map[string][]struct {
			Best     bool   `json:"bestpath"`
			PeerID   string `json:"peerId"`
			Path     string `json:"path"`
			NextHops []struct {
				IP string `json:"ip"`
			} `json:"nexthops"`
		} `json:"routes"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("parsing FRR routes: %w", err)
	}
	var routes []Route
	for key, paths := range doc.Routes {
		prefix, err := netip.ParsePrefix(key)
		if err != nil {
			return nil, fmt.Errorf("parsing FRR routes: prefix %q: %w", key, err)
		}
		for _, p := range paths {
			r := Route{Prefix: prefix, Best: p.Best}
			if peer, err := netip.ParseAddr(p.PeerID); err == nil { // "(unspec)" when local
				r.Peer = peer
			}
			for _, nh := range p.NextHops {
				if a, err := netip.ParseAddr(nh.IP); err == nil && !a.IsUnspecified() {
					r.NextHops = append(r.NextHops, a)
				}
			}
			if r.ASPath, err = parseASPath(p.Path); err != nil {
				return nil, fmt.Errorf("parsing FRR routes: %v: %w", prefix, err)
			}
			routes = append(routes, r)
		}
	}
	sortRoutes(routes)
	return routes, nil
}

// parseASPath parses an AS path as daemons print it: "65001 65002", with AS sets in
// braces "{65003,65004}" and confederation segments in parentheses.
func parseASPath(s string) ([]uint32, error) {
	s = strings.NewReplacer("{", " ", "}", " ", "(", " ", ")", " ", "[", " ", "]", " ", ",", " ").Replace(s)
	var path []uint32
	for _, f := range strings.Fields(s) {
		asn, err := strconv.ParseUint(f, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("AS path %q: %w", s, err)
		}
		path = append(path, uint32(asn))
	}
	return path, nil
}

func sortSessions(s []Session) {
	slices.SortFunc(s, func(a, b Session) int { return a.Neighbor.Compare(b.Neighbor) })
}

// sortRoutes orders routes by prefix, then best first, then by peer.
func sortRoutes(r []Route) {
	slices.SortStableFunc(r, func(a, b Route) int {
		if c := a.Prefix.Addr().Compare(b.Prefix.Addr()); c != 0 {
			return c
		}
		if c := a.Prefix.Bits() - b.Prefix.Bits(); c != 0 {
			return c
		}
		if a.Best != b.Best {
			if a.Best {
				return -1
			}
			return 1
		}
		return a.Peer.Compare(b.Peer)
	})
}

// parseFRRPaths parses every path of `show bgp <family> unicast <prefix> json`.
func parseFRRPaths(prefix netip.Prefix, data []byte) ([]Attributes, error) {
	var doc struct {
		Paths []struct {
			ASPath struct {
				String string `json:"string"`
			} `json:"aspath"`
			Community *struct {
				String string `json:"string"`
			} `json:"community"`
			LargeCommunity *struct {
				String string `json:"string"`
			} `json:"largeCommunity"`
			LocPrf   int  `json:"locPrf"`
			Stale    bool `json:"stale"`
			BestPath *struct {
				Overall bool `json:"overall"`
			} `json:"bestpath"`
			NextHops []struct {
				IP string `json:"ip"`
			} `json:"nexthops"`
		} `json:"paths"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("parsing FRR paths of %v: %w", prefix, err)
	}
	var out []Attributes
	for _, p := range doc.Paths {
		a := Attributes{Prefix: prefix, LocalPref: p.LocPrf, Stale: p.Stale, Best: p.BestPath != nil && p.BestPath.Overall}
		for _, nh := range p.NextHops {
			if ip, err := netip.ParseAddr(nh.IP); err == nil && !ip.IsUnspecified() {
				a.NextHops = append(a.NextHops, ip)
			}
		}
		var err error
		if a.ASPath, err = parseASPath(p.ASPath.String); err != nil {
			return nil, fmt.Errorf("parsing FRR paths of %v: %w", prefix, err)
		}
		if p.Community != nil {
			a.Communities = strings.Fields(p.Community.String)
		}
		if p.LargeCommunity != nil {
			a.LargeCommunities = strings.Fields(p.LargeCommunity.String)
		}
		out = append(out, a)
	}
	return out, nil
}

// parseZebraRoute parses `show {ip|ipv6} route <prefix> json` and returns the next hops
// in the kernel (fib) of the installed route for exactly prefix, sorted.
func parseZebraRoute(data []byte, prefix netip.Prefix) ([]netip.Addr, error) {
	var doc map[string][]struct {
		Prefix    string `json:"prefix"`
		Installed bool   `json:"installed"`
		NextHops  []struct {
			IP  string `json:"ip"`
			FIB bool   `json:"fib"`
		} `json:"nexthops"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("parsing zebra route: %w", err)
	}
	var out []netip.Addr
	for _, r := range doc[prefix.String()] {
		if !r.Installed || r.Prefix != prefix.String() {
			continue
		}
		for _, nh := range r.NextHops {
			if a, err := netip.ParseAddr(nh.IP); err == nil && nh.FIB {
				out = append(out, a)
			}
		}
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return slices.Compact(out), nil
}
