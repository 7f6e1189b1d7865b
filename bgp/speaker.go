package bgp

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"reflect"
	"slices"
	"sync"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	gobgplog "github.com/osrg/gobgp/v3/pkg/log"
	bgppacket "github.com/osrg/gobgp/v3/pkg/packet/bgp"
	"github.com/osrg/gobgp/v3/pkg/server"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/sluice-lb/sluice/api/v1alpha1"
	"github.com/sluice-lb/sluice/internal/model"
)

// Speaker announces the desired paths to the desired peers with embedded GoBGP servers,
// one per peer: each has its own RIB, so every peer gets exactly its own paths with their
// own attributes, and a change to one peer touches no other. It is advertise-only: the
// servers do not listen, accept no routes into any table that is used, and install nothing.
type Speaker struct {
	log *slog.Logger

	mu    sync.Mutex
	peers map[string]*peerSpeaker // by BGPPeer name
	// servers are the GoBGP servers made so far, by peer name, running or stopped: a GoBGP
	// server's Serve never returns, so a session made again reuses its server.
	servers map[string]*gobgpServer
}

// gobgpServer is one embedded GoBGP server and the logger that watches its sessions.
type gobgpServer struct {
	server *server.BgpServer
	logger *logger
}

// peerSpeaker is the GoBGP server of one peer and what it announces.
type peerSpeaker struct {
	peer     model.Peer // the settings the session was made with
	routerID netip.Addr
	server   *server.BgpServer
	logger   *logger
	paths    map[netip.Prefix]announced
	seq      uint64 // the Desired whose paths it holds (see Desired.Seq), 0 if unsure
}

type announced struct {
	path Path
}

// NewSpeaker returns a Speaker with no peers.
func NewSpeaker(log *slog.Logger) *Speaker {
	return &Speaker{log: log, peers: map[string]*peerSpeaker{}, servers: map[string]*gobgpServer{}}
}

// Apply brings the speaker to d. A peer no longer wanted is removed (its session closed with
// a Cease). A peer whose session settings changed is made again: the session resets, and the
// log says why. Otherwise only the difference of its paths is sent. routerID is the default
// router ID (the node's IPv4 address) for peers that set none.
func (s *Speaker) Apply(ctx context.Context, d Desired, routerID netip.Addr) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	wanted := map[string]*model.Peer{}
	for _, p := range d.Peers {
		wanted[p.Name] = p
	}
	var errs []error
	for name, ps := range s.peers {
		p, ok := wanted[name]
		rid := routerIDOf(p, routerID)
		switch {
		case !ok:
			s.log.Info("bgp peer removed", "peer", name)
		case !sameSession(ps.peer, *p) || ps.routerID != rid:
			s.log.Warn("bgp session settings changed: resetting the session", "peer", name)
		default:
			continue
		}
		ps.stop(ctx)
		delete(s.peers, name)
	}
	for _, p := range d.Peers {
		ps := s.peers[p.Name]
		if ps == nil {
			var err error
			if ps, err = s.startPeer(ctx, p, routerIDOf(p, routerID), d.Paths[p.Name]); err != nil {
				errs = append(errs, fmt.Errorf("bgp peer %s: %w", p.Name, err))
			}
			if ps != nil {
				if err == nil {
					ps.seq = d.Seq
				}
				s.peers[p.Name] = ps
			}
			continue
		}
		var err error
		if d.Since != 0 && ps.seq == d.Since {
			err = ps.syncChanged(ctx, d.Paths[p.Name], d.Changed[p.Name])
		} else {
			err = ps.sync(ctx, d.Paths[p.Name])
		}
		ps.seq = d.Seq
		if err != nil {
			ps.seq = 0 // the next Desired is synced in full, which retries what failed
			errs = append(errs, fmt.Errorf("bgp peer %s: %w", p.Name, err))
		}
	}
	return errors.Join(errs...)
}

func routerIDOf(p *model.Peer, def netip.Addr) netip.Addr {
	if p != nil && p.RouterID.IsValid() {
		return p.RouterID
	}
	return def
}

// sameSession reports whether two peer settings make the same session (paths aside).
func sameSession(a, b model.Peer) bool {
	a.NodeSelector, b.NodeSelector = nil, nil
	return reflect.DeepEqual(a, b)
}

// startPeer starts the session of peer p with its paths. The paths go into the RIB before
// the session is added: the first UPDATEs and the End-of-RIB after an agent restart then carry
// every path, so a router doing graceful restart keeps nothing stale it should not drop.
func (s *Speaker) startPeer(ctx context.Context, p *model.Peer, routerID netip.Addr, paths []Path) (*peerSpeaker, error) {
	if !routerID.Is4() {
		return nil, errors.New("no router ID: the peer sets none and the node has no IPv4 address")
	}
	g := s.servers[p.Name]
	if g == nil {
		lg := &logger{log: s.log.With("peer", p.Name)}
		g = &gobgpServer{server: server.NewBgpServer(server.LoggerOption(lg)), logger: lg}
		go g.server.Serve()
		s.servers[p.Name] = g
	}
	global := &api.Global{Asn: p.LocalASN, RouterId: routerID.String(), ListenPort: -1}
	if p.Passive {
		global.ListenPort, global.ListenAddresses = model.ListenPort, []string{p.ListenAddress().String()}
	}
	if p.GracefulRestart {
		global.GracefulRestart = &api.GracefulRestart{Enabled: true, RestartTime: uint32(p.RestartTime / time.Second)}
	}
	if err := g.server.StartBgp(ctx, &api.StartBgpRequest{Global: global}); err != nil {
		return nil, fmt.Errorf("start: %w", err)
	}
	ps := &peerSpeaker{peer: *p, routerID: routerID, server: g.server, logger: g.logger, paths: map[netip.Prefix]announced{}}
	syncErr := ps.sync(ctx, paths)
	if err := g.server.AddPeer(ctx, &api.AddPeerRequest{Peer: peerConfig(p)}); err != nil {
		_ = g.server.StopBgp(ctx, &api.StopBgpRequest{})
		return nil, fmt.Errorf("add the session: %w", err)
	}
	if p.HoldTime == 0 {
		s.log.Warn("holdTime 0 (no keepalives) is not supported by the embedded GoBGP: it uses 90s", "peer", p.Name)
	}
	s.log.Info("bgp peer added", "peer", p.Name, "address", p.Address, "asn", p.ASN, "localASN", p.LocalASN, "routerID", routerID)
	return ps, syncErr
}

func peerConfig(p *model.Peer) *api.Peer {
	c := &api.Peer{
		Conf:      &api.PeerConf{NeighborAddress: p.Address.String(), PeerAsn: p.ASN, LocalAsn: p.LocalASN, AuthPassword: p.Password},
		Transport: &api.Transport{RemotePort: uint32(p.Port)},
		Timers: &api.Timers{Config: &api.TimersConfig{
			HoldTime: uint64(p.HoldTime / time.Second), KeepaliveInterval: uint64(p.KeepaliveTime / time.Second),
			ConnectRetry: uint64(p.ConnectRetryTime / time.Second),
		}},
	}
	if p.SourceAddress.IsValid() {
		c.Transport.LocalAddress = p.SourceAddress.String()
	}
	c.Transport.PassiveMode = p.Passive
	if p.EBGPMultihop > 0 {
		c.EbgpMultihop = &api.EbgpMultihop{Enabled: true, MultihopTtl: uint32(p.EBGPMultihop)}
	}
	if p.GracefulRestart {
		c.GracefulRestart = &api.GracefulRestart{Enabled: true, RestartTime: uint32(p.RestartTime / time.Second)}
	}
	for _, f := range p.Families {
		fam := familyOf(f)
		if fam == nil {
			continue
		}
		as := &api.AfiSafi{Config: &api.AfiSafiConfig{Family: fam, Enabled: true}}
		if p.GracefulRestart {
			as.MpGracefulRestart = &api.MpGracefulRestart{Config: &api.MpGracefulRestartConfig{Enabled: true}}
		}
		c.AfiSafis = append(c.AfiSafis, as)
	}
	return c
}

var (
	familyIPv4 = &api.Family{Afi: api.Family_AFI_IP, Safi: api.Family_SAFI_UNICAST}
	familyIPv6 = &api.Family{Afi: api.Family_AFI_IP6, Safi: api.Family_SAFI_UNICAST}
)

func familyOf(f v1alpha1.Family) *api.Family {
	switch f {
	case v1alpha1.FamilyIPv4Unicast:
		return familyIPv4
	case v1alpha1.FamilyIPv6Unicast:
		return familyIPv6
	}
	return nil
}

// sync announces want (sorted by prefix) and withdraws what it no longer has.
func (ps *peerSpeaker) sync(ctx context.Context, want []Path) error {
	var errs []error
	keep := make(map[netip.Prefix]bool, len(want))
	for _, p := range want {
		if ps.carries(p.Prefix) {
			keep[p.Prefix] = true
			if err := ps.announce(ctx, p); err != nil {
				errs = append(errs, err)
			}
		}
	}
	for prefix := range ps.paths {
		if keep[prefix] {
			continue
		}
		if err := ps.withdraw(ctx, prefix); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// syncChanged brings the prefixes changed to want (sorted by prefix), leaving the others.
func (ps *peerSpeaker) syncChanged(ctx context.Context, want []Path, changed []netip.Prefix) error {
	var errs []error
	for _, prefix := range changed {
		i, found := slices.BinarySearchFunc(want, prefix, func(x Path, y netip.Prefix) int { return comparePrefixes(x.Prefix, y) })
		var err error
		if found && ps.carries(prefix) {
			err = ps.announce(ctx, want[i])
		} else {
			err = ps.withdraw(ctx, prefix)
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// announce adds or replaces the path of p's prefix, unless it is announced as it is.
func (ps *peerSpeaker) announce(ctx context.Context, p Path) error {
	if have, ok := ps.paths[p.Prefix]; ok && have.path.Equal(p) {
		return nil
	}
	path, err := apiPath(p)
	if err != nil {
		return err
	}
	if _, err := ps.server.AddPath(ctx, &api.AddPathRequest{TableType: api.TableType_GLOBAL, Path: path}); err != nil {
		return fmt.Errorf("announce %s: %w", p.Prefix, err)
	}
	ps.paths[p.Prefix] = announced{path: p}
	return nil
}

// withdraw withdraws the path of prefix, if one is announced.
func (ps *peerSpeaker) withdraw(ctx context.Context, prefix netip.Prefix) error {
	a, ok := ps.paths[prefix]
	if !ok {
		return nil
	}
	// By path, not by UUID: GoBGP finds a UUID by walking every path of the RIB.
	path, err := apiPath(a.path)
	if err != nil {
		return err
	}
	if err := ps.server.DeletePath(ctx, &api.DeletePathRequest{TableType: api.TableType_GLOBAL, Family: path.Family, Path: path}); err != nil {
		return fmt.Errorf("withdraw %s: %w", prefix, err)
	}
	delete(ps.paths, prefix)
	return nil
}

// carries reports whether the session is configured for the family of prefix.
func (ps *peerSpeaker) carries(prefix netip.Prefix) bool {
	want := v1alpha1.FamilyIPv4Unicast
	if prefix.Addr().Is6() {
		want = v1alpha1.FamilyIPv6Unicast
	}
	return slices.Contains(ps.peer.Families, want)
}

// apiPath is the GoBGP path of p, with the next hop left for GoBGP to fill in (the session's
// local address).
func apiPath(p Path) (*api.Path, error) {
	nlri, err := anypb.New(&api.IPAddressPrefix{Prefix: p.Prefix.Addr().String(), PrefixLen: uint32(p.Prefix.Bits())})
	if err != nil {
		return nil, err
	}
	var attrs []*anypb.Any
	origin, _ := anypb.New(&api.OriginAttribute{Origin: 0}) // IGP
	attrs = append(attrs, origin)
	family := familyIPv4
	if p.Prefix.Addr().Is4() {
		nh, _ := anypb.New(&api.NextHopAttribute{NextHop: "0.0.0.0"})
		attrs = append(attrs, nh)
	} else {
		family = familyIPv6
		mp, _ := anypb.New(&api.MpReachNLRIAttribute{Family: familyIPv6, NextHops: []string{"::"}, Nlris: []*anypb.Any{nlri}})
		attrs = append(attrs, mp)
	}
	var std []uint32
	var large []*api.LargeCommunity
	for _, c := range p.Communities {
		if c.Large {
			large = append(large, &api.LargeCommunity{GlobalAdmin: c.Global, LocalData1: c.Local1, LocalData2: c.Local2})
		} else {
			std = append(std, c.Value)
		}
	}
	if len(std) > 0 {
		a, _ := anypb.New(&api.CommunitiesAttribute{Communities: std})
		attrs = append(attrs, a)
	}
	if len(large) > 0 {
		a, _ := anypb.New(&api.LargeCommunitiesAttribute{Communities: large})
		attrs = append(attrs, a)
	}
	if p.HasLocalPref {
		a, _ := anypb.New(&api.LocalPrefAttribute{LocalPref: p.LocalPref})
		attrs = append(attrs, a)
	}
	return &api.Path{Family: family, Nlri: nlri, Pattrs: attrs}, nil
}

// stop ends the peer's session with a Cease notification (the routes are withdrawn at once)
// and empties its server's RIB; the server stays, for the session to be made again.
func (ps *peerSpeaker) stop(ctx context.Context) {
	_ = ps.server.StopBgp(ctx, &api.StopBgpRequest{})
}

// Close ends every session. A planned stop (restart, upgrade) leaves the sessions of peers
// with graceful restart alone: the process exits without a NOTIFICATION, and the routers keep
// the routes (stale) until the agent is back and refreshes them. The others, and every
// session when leaving is set (the node goes away), get a Cease and withdraw at once.
func (s *Speaker) Close(ctx context.Context, leaving bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for name, ps := range s.peers {
		if ps.peer.GracefulRestart && !leaving {
			s.log.Info("bgp session left to graceful restart: the router keeps the routes until the agent is back", "peer", name)
			continue
		}
		ps.stop(ctx)
		delete(s.peers, name)
	}
}

// Routes returns the paths each peer is announced, by peer name, sorted by prefix.
func (s *Speaker) Routes() map[string][]Path {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string][]Path{}
	for name, ps := range s.peers {
		paths := make([]Path, 0, len(ps.paths))
		for _, a := range ps.paths {
			paths = append(paths, a.path)
		}
		slices.SortFunc(paths, func(x, y Path) int { return comparePrefixes(x.Prefix, y.Prefix) })
		out[name] = paths
	}
	return out
}

// PeerStatus is one session's state, for the local API, metrics and logs.
type PeerStatus struct {
	Name     string
	Address  netip.Addr
	ASN      uint32
	State    string // idle, connect, active, opensent, openconfirm, established
	Uptime   time.Duration
	Sent     int // prefixes the session advertised (the families the peer negotiated)
	Wanted   int // paths the speaker holds for the peer
	RouterID netip.Addr
	// LastError is the last thing that went wrong with the session ("" once it is up):
	// a NOTIFICATION sent or received, why it went down, a failed connection attempt.
	LastError string
}

// Status returns every peer's session state, by name.
func (s *Speaker) Status(ctx context.Context) []PeerStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []PeerStatus
	for name, ps := range s.peers {
		st := PeerStatus{Name: name, Address: ps.peer.Address, ASN: ps.peer.ASN, State: "unknown", Wanted: len(ps.paths), RouterID: ps.routerID,
			LastError: ps.logger.last()}
		_ = ps.server.ListPeer(ctx, &api.ListPeerRequest{EnableAdvertised: true}, func(p *api.Peer) {
			for _, as := range p.AfiSafis {
				if as.State != nil {
					st.Sent += int(as.State.Advertised)
				}
			}
			if p.State != nil {
				st.State = sessionState(p.State.SessionState)
			}
			if p.Timers != nil && p.Timers.State != nil && p.Timers.State.Uptime != nil && st.State == "established" {
				st.Uptime = time.Since(p.Timers.State.Uptime.AsTime()).Truncate(time.Second)
			}
		})
		out = append(out, st)
	}
	slices.SortFunc(out, func(a, b PeerStatus) int { return cmp.Compare(a.Name, b.Name) })
	return out
}

func sessionState(s api.PeerState_SessionState) string {
	switch s {
	case api.PeerState_IDLE:
		return "idle"
	case api.PeerState_CONNECT:
		return "connect"
	case api.PeerState_ACTIVE:
		return "active"
	case api.PeerState_OPENSENT:
		return "opensent"
	case api.PeerState_OPENCONFIRM:
		return "openconfirm"
	case api.PeerState_ESTABLISHED:
		return "established"
	}
	return "unknown"
}

// logger sends GoBGP's log to slog: its errors as warnings (a peer refusing a session is
// routine for a speaker), the rest at debug. It also keeps the last thing that went wrong with
// the session, for the peer's status: a NOTIFICATION either way, a session going down and
// why, a failed connection attempt.
type logger struct {
	log *slog.Logger

	mu        sync.Mutex
	lastError string
}

func (l *logger) attrs(fields gobgplog.Fields) []any {
	out := make([]any, 0, 2*len(fields))
	for k, v := range fields {
		out = append(out, k, v)
	}
	return out
}

// note keeps what msg and fields say went wrong, if anything.
func (l *logger) note(msg string, f gobgplog.Fields) {
	var what string
	switch msg {
	case "received notification", "sent notification":
		code, _ := f["Code"].(uint8)
		sub, _ := f["Subcode"].(uint8)
		if e, ok := f["Data"].(*bgppacket.MessageError); ok { // what GoBGP sends carries its error
			code, sub = e.TypeCode, e.SubTypeCode
		}
		dir := "the peer sent"
		if msg == "sent notification" {
			dir = "sent the peer"
		}
		what = fmt.Sprintf("%s a NOTIFICATION: %s", dir, bgppacket.NewNotificationErrorCode(code, sub))
		if e, ok := f["Data"].(*bgppacket.MessageError); ok && e.Message != "" {
			what += ": " + e.Message
		}
		if r, ok := f["Communicated-Reason"].(string); ok && r != "" {
			what += " (" + r + ")"
		}
	case "Peer Down":
		what = fmt.Sprintf("session down: %v", f["Reason"])
	case "failed to connect":
		what = fmt.Sprintf("cannot connect: %v (unreachable, nothing listening, or a TCP-MD5 password mismatch)", f["Error"])
	case "Peer Up":
		l.mu.Lock()
		l.lastError = ""
		l.mu.Unlock()
		return
	default:
		return
	}
	l.mu.Lock()
	l.lastError = what
	l.mu.Unlock()
}

func (l *logger) last() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lastError
}

func (l *logger) Panic(msg string, f gobgplog.Fields) { l.log.Error(msg, l.attrs(f)...); panic(msg) }
func (l *logger) Fatal(msg string, f gobgplog.Fields) { l.log.Error(msg, l.attrs(f)...) }
func (l *logger) Error(msg string, f gobgplog.Fields) { l.note(msg, f); l.log.Warn(msg, l.attrs(f)...) }
func (l *logger) Warn(msg string, f gobgplog.Fields)  { l.note(msg, f); l.log.Debug(msg, l.attrs(f)...) }
func (l *logger) Info(msg string, f gobgplog.Fields)  { l.note(msg, f); l.log.Debug(msg, l.attrs(f)...) }
func (l *logger) Debug(msg string, f gobgplog.Fields) { l.note(msg, f) }
func (l *logger) SetLevel(gobgplog.LogLevel)          {}

// GetLevel is debug so that GoBGP reports failed connection attempts (it only does at debug).
func (l *logger) GetLevel() gobgplog.LogLevel { return gobgplog.DebugLevel }
