package peers

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"
)

// gobgpStates are the values of apipb.PeerState_SessionState, which `gobgp -j`
// prints as numbers.
var gobgpStates = map[int]SessionState{
	1: Idle, 2: Connect, 3: Active, 4: OpenSent, 5: OpenConfirm, 6: Established,
}

// parseGoBGPNeighbors parses `gobgp -j neighbor`.
func parseGoBGPNeighbors(data []byte) ([]Session, error) {
	var doc []struct {
		State struct {
			NeighborAddress string          `json:"neighbor_address"`
			PeerASN         uint32          `json:"peer_asn"`
			SessionState    json.RawMessage `json:"session_state"`
			RouterID        string          `json:"router_id"`
		} `json:"state"`
		Families []struct {
			State struct {
				Accepted int `json:"accepted"`
			} `json:"state"`
		} `json:"afi_safis"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("parsing gobgp neighbors: %w", err)
	}
	var sessions []Session
	for _, n := range doc {
		addr, err := netip.ParseAddr(n.State.NeighborAddress)
		if err != nil {
			return nil, fmt.Errorf("parsing gobgp neighbors: address %q: %w", n.State.NeighborAddress, err)
		}
		s := Session{Neighbor: addr, ASN: n.State.PeerASN, State: Idle}
		if len(n.State.SessionState) > 0 {
			var num int
			var name string
			switch {
			case json.Unmarshal(n.State.SessionState, &num) == nil:
				if st, ok := gobgpStates[num]; ok {
					s.State = st
				} else {
					s.State = SessionState(fmt.Sprint(num))
				}
			case json.Unmarshal(n.State.SessionState, &name) == nil:
				s.State = gobgpStateName(name)
			}
		}
		if id, err := netip.ParseAddr(n.State.RouterID); err == nil && !id.IsUnspecified() {
			s.RemoteID = id
		}
		for _, f := range n.Families {
			s.PrefixesReceived += f.State.Accepted
		}
		sessions = append(sessions, s)
	}
	sortSessions(sessions)
	return sessions, nil
}

// gobgpStateName maps protobuf enum names ("ESTABLISHED") in case a gobgp version
// prints names rather than numbers.
func gobgpStateName(name string) SessionState {
	for _, st := range gobgpStates {
		if strings.EqualFold(name, string(st)) {
			return st
		}
	}
	return SessionState(name)
}

// parseGoBGPRib parses `gobgp -j global rib`: an object keyed by prefix whose values
// are paths with BGP attributes as a list of {"type": code, ...}.
func parseGoBGPRib(data []byte) ([]Route, error) {
	var doc map[string][]struct {
		Best       bool   `json:"best"`
		NeighborIP string `json:"neighbor-ip"`
		Attrs      []struct {
			Type    int    `json:"type"`
			NextHop string `json:"nexthop"`
			ASPaths []struct {
				ASNs []uint32 `json:"asns"`
			} `json:"as_paths"`
		} `json:"attrs"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("parsing gobgp rib: %w", err)
	}
	var routes []Route
	for key, paths := range doc {
		prefix, err := netip.ParsePrefix(key)
		if err != nil {
			return nil, fmt.Errorf("parsing gobgp rib: prefix %q: %w", key, err)
		}
		for _, p := range paths {
			r := Route{Prefix: prefix, Best: p.Best}
			if peer, err := netip.ParseAddr(p.NeighborIP); err == nil && !peer.IsUnspecified() {
				r.Peer = peer
			}
			for _, a := range p.Attrs {
				switch a.Type {
				case 2: // AS_PATH
					for _, seg := range a.ASPaths {
						r.ASPath = append(r.ASPath, seg.ASNs...)
					}
				case 3, 14: // NEXT_HOP, MP_REACH_NLRI
					if nh, err := netip.ParseAddr(a.NextHop); err == nil && !nh.IsUnspecified() {
						r.NextHops = append(r.NextHops, nh)
					}
				}
			}
			routes = append(routes, r)
		}
	}
	sortRoutes(routes)
	return routes, nil
}
