package peers

import (
	"bufio"
	"bytes"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// parseBIRDProtocols parses `birdc show protocols all` into the sessions of its BGP
// protocols. A protocol block starts with an unindented line "name proto table state
// since info"; its details follow indented as "Key: value" lines.
func parseBIRDProtocols(data []byte) ([]Session, error) {
	var sessions []Session
	var cur *Session
	flush := func() {
		if cur != nil && cur.Neighbor.IsValid() {
			sessions = append(sessions, *cur)
		}
		cur = nil
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := sc.Text()
		if strings.TrimSpace(line) == "" || strings.HasPrefix(line, "Name ") {
			continue
		}
		if line[0] != ' ' && line[0] != '\t' {
			flush()
			if f := strings.Fields(line); len(f) >= 2 && f[1] == "BGP" {
				cur = &Session{}
			}
			continue
		}
		if cur == nil {
			continue
		}
		key, value, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok {
			continue
		}
		value = strings.TrimSpace(value)
		var err error
		switch key {
		case "BGP state":
			cur.State = birdState(value)
		case "Neighbor address":
			cur.Neighbor, err = netip.ParseAddr(value)
		case "Neighbor AS":
			var asn uint64
			asn, err = strconv.ParseUint(value, 10, 32)
			cur.ASN = uint32(asn)
		case "Neighbor ID":
			cur.RemoteID, err = netip.ParseAddr(value)
		case "Routes": // "2 imported, 1 exported, 2 preferred"; "filtered" may appear too
			if n, unit, ok := strings.Cut(value, " "); ok && strings.HasPrefix(unit, "imported") {
				var imported int
				imported, err = strconv.Atoi(n)
				cur.PrefixesReceived += imported
			}
		}
		if err != nil {
			return nil, fmt.Errorf("parsing BIRD protocols: %q: %w", line, err)
		}
	}
	flush()
	sortSessions(sessions)
	return sessions, sc.Err()
}

// birdState maps BIRD's BGP state names; "Down" is a disabled or stopped protocol.
func birdState(s string) SessionState {
	if s == "Down" {
		return Idle
	}
	return SessionState(s)
}

// parseBIRDRoutes parses `birdc show route all`. A route line is
//
//	198.51.100.0/24      unicast [peer1 17:21:53.143 from 10.0.2.1] * (100) [AS65002i]
//
// with further paths of the same prefix on lines indented by spaces and the route's
// attributes on lines indented by a tab ("via ...", "BGP.as_path: ..."). protocols maps
// BGP protocol names to their neighbor, for routes without "from".
func parseBIRDRoutes(data []byte, protocols map[string]netip.Addr) ([]Route, error) {
	var routes []Route
	var prefix netip.Prefix
	var cur *Route
	var bgp bool
	var vias []netip.Addr
	flush := func() {
		if cur != nil {
			if !bgp {
				cur.NextHops = vias // BGP routes take BGP.next_hop instead
			}
			routes = append(routes, *cur)
		}
		cur, bgp, vias = nil, false, nil
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.TrimSpace(line) == "" || strings.HasPrefix(line, "Table "):
			continue
		case line[0] == '\t':
			if cur == nil {
				return nil, fmt.Errorf("parsing BIRD routes: attribute before any route: %q", line)
			}
			if err := birdAttribute(cur, strings.TrimSpace(line), &bgp, &vias); err != nil {
				return nil, fmt.Errorf("parsing BIRD routes: %v: %w", cur.Prefix, err)
			}
		default:
			flush()
			open, close := strings.IndexByte(line, '['), strings.IndexByte(line, ']')
			if open < 0 || close < open {
				return nil, fmt.Errorf("parsing BIRD routes: unexpected line %q", line)
			}
			if line[0] != ' ' {
				p, err := netip.ParsePrefix(strings.Fields(line)[0])
				if err != nil {
					return nil, fmt.Errorf("parsing BIRD routes: %q: %w", line, err)
				}
				prefix = p
			} else if !prefix.IsValid() {
				return nil, fmt.Errorf("parsing BIRD routes: path without prefix: %q", line)
			}
			cur = &Route{Prefix: prefix, Best: strings.Contains(line[close:], " * ")}
			src := strings.Fields(line[open+1 : close])
			if len(src) > 0 {
				cur.Peer = protocols[src[0]]
			}
			for i := 0; i+1 < len(src); i++ {
				if src[i] == "from" {
					if a, err := netip.ParseAddr(src[i+1]); err == nil {
						cur.Peer = a
					}
				}
			}
		}
	}
	flush()
	sortRoutes(routes)
	return routes, sc.Err()
}

// birdAttribute applies one tab-indented line of a route.
func birdAttribute(r *Route, attr string, bgp *bool, vias *[]netip.Addr) error {
	if rest, ok := strings.CutPrefix(attr, "via "); ok {
		a, err := netip.ParseAddr(strings.Fields(rest)[0])
		if err != nil {
			return err
		}
		*vias = append(*vias, a)
		return nil
	}
	key, value, ok := strings.Cut(attr, ":")
	if !ok {
		return nil
	}
	value = strings.TrimSpace(value)
	switch key {
	case "Type":
		*bgp = strings.HasPrefix(value, "BGP")
	case "BGP.as_path":
		path, err := parseASPath(value)
		if err != nil {
			return err
		}
		r.ASPath = path
	case "BGP.next_hop": // "2001:db8::1 fe80::1" for IPv6
		r.NextHops = nil
		for _, f := range strings.Fields(value) {
			a, err := netip.ParseAddr(f)
			if err != nil {
				return fmt.Errorf("BGP.next_hop %q: %w", value, err)
			}
			r.NextHops = append(r.NextHops, a)
		}
	}
	return nil
}
