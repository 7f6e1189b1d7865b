package peers

import (
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// Config is the BGP configuration of one daemon.
type Config struct {
	RouterID  netip.Addr // an IPv4 address
	ASN       uint32
	Neighbors []Neighbor
	Networks  []netip.Prefix // originated by the daemon, IPv4 or IPv6
	// HoldTime, when set, is the proposed hold time (keepalive is a third of it).
	// Zero keeps the daemon's default (90 s for gobgpd, 180 s for FRR, 240 s for BIRD).
	HoldTime time.Duration
	// InstallRoutes makes the daemon a router (FRR only): zebra runs beside bgpd and the
	// best paths go into the namespace's routing table, with equal paths from several
	// neighbors of one AS installed together as an ECMP route (up to MaxPaths).
	InstallRoutes bool
	// Listen, when valid, is the one address and port the daemon listens on (FRR only); by
	// default every address, port 179. With it, several daemons share a namespace.
	Listen netip.AddrPort
}

// MaxPaths is the number of equal paths an InstallRoutes daemon installs for one prefix.
const MaxPaths = 8

// Neighbor is a BGP neighbor, on a directly connected network. The session carries the
// address family of Address.
type Neighbor struct {
	Address netip.Addr
	ASN     uint32
	Passive bool // only accept the neighbor's connections, never connect
	// Password is the session's TCP-MD5 password (FRR only, for now); empty for none.
	Password string
	// GracefulRestart makes the daemon a graceful-restart helper for the neighbor: it keeps
	// the neighbor's routes, stale, while the neighbor restarts (FRR only, for now).
	GracefulRestart bool
}

// connectRetry is the connect-retry timer of every generated configuration.
const connectRetry = 1 // seconds

func (c Config) validate() error {
	var errs []error
	if !c.RouterID.Is4() {
		errs = append(errs, fmt.Errorf("router ID %v is not an IPv4 address", c.RouterID))
	}
	if c.ASN == 0 {
		errs = append(errs, errors.New("local ASN is 0"))
	}
	if c.HoldTime != 0 && (c.HoldTime < 3*time.Second || c.HoldTime%time.Second != 0) {
		errs = append(errs, fmt.Errorf("hold time %v: want 0 or whole seconds >= 3s", c.HoldTime))
	}
	seen := map[netip.Addr]bool{}
	for _, n := range c.Neighbors {
		switch {
		case !n.Address.IsValid() || n.Address.Zone() != "":
			errs = append(errs, fmt.Errorf("neighbor %v: want an IPv4 or global IPv6 address", n.Address))
		case n.ASN == 0:
			errs = append(errs, fmt.Errorf("neighbor %v: ASN is 0", n.Address))
		case seen[n.Address]:
			errs = append(errs, fmt.Errorf("neighbor %v: listed twice", n.Address))
		}
		seen[n.Address] = true
	}
	for _, p := range c.Networks {
		if !p.IsValid() || p.Masked() != p {
			errs = append(errs, fmt.Errorf("network %v: want a masked prefix", p))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("invalid config: %w", err)
	}
	return nil
}

// networks splits the originated prefixes by address family.
func (c Config) networks() (v4, v6 []netip.Prefix) {
	for _, p := range c.Networks {
		if p.Addr().Is4() {
			v4 = append(v4, p)
		} else {
			v6 = append(v6, p)
		}
	}
	return v4, v6
}

func (c Config) timers() (keepalive, hold int) {
	hold = int(c.HoldTime / time.Second)
	return hold / 3, hold
}
