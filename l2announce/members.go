package l2announce

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"
)

// Heartbeat defaults: a node is taken for dead after DefaultTimeout without a heartbeat,
// which with the announcement that follows keeps failover under half a second.
const (
	DefaultInterval = 100 * time.Millisecond
	DefaultTimeout  = 350 * time.Millisecond
	// DefaultPort is the UDP port agents exchange heartbeats on.
	DefaultPort = 9474
)

// heartbeat is one agent's message to another: who it is, its incarnation (its start
// time, so that a restarted agent is told from a delayed packet of the old one), a sequence
// number, and the interfaces it can answer on (up, with an Ethernet address). On the wire:
//
//	"SLHB" | version 2 (1 byte) | incarnation (8) | sequence (8) | name length (1) | name |
//	interface count (1) | per interface: name length (1) | name
type heartbeat struct {
	Name        string
	Incarnation uint64
	Seq         uint64
	Interfaces  []string
}

const (
	magic         = "SLHB"
	version       = 2
	headerLen     = len(magic) + 1 + 8 + 8
	maxNameBytes  = 253
	maxInterfaces = 64
	maxIfaceBytes = 15
	// maxHeartbeat is the longest heartbeat.
	maxHeartbeat = headerLen + 1 + maxNameBytes + 1 + maxInterfaces*(1+maxIfaceBytes)
)

func (h heartbeat) marshal() ([]byte, error) {
	if len(h.Name) == 0 || len(h.Name) > maxNameBytes {
		return nil, fmt.Errorf("node name of %d bytes: want 1 to %d", len(h.Name), maxNameBytes)
	}
	if len(h.Interfaces) > maxInterfaces {
		return nil, fmt.Errorf("%d interfaces: at most %d", len(h.Interfaces), maxInterfaces)
	}
	b := make([]byte, 0, headerLen+2+len(h.Name)+16*len(h.Interfaces))
	b = append(b, magic...)
	b = append(b, version)
	b = binary.BigEndian.AppendUint64(b, h.Incarnation)
	b = binary.BigEndian.AppendUint64(b, h.Seq)
	b = append(b, byte(len(h.Name)))
	b = append(b, h.Name...)
	b = append(b, byte(len(h.Interfaces)))
	for _, i := range h.Interfaces {
		if len(i) == 0 || len(i) > maxIfaceBytes {
			return nil, fmt.Errorf("interface name %q: want 1 to %d bytes", i, maxIfaceBytes)
		}
		b = append(b, byte(len(i)))
		b = append(b, i...)
	}
	return b, nil
}

// parseHeartbeat parses a heartbeat; anything else is an error.
func parseHeartbeat(b []byte) (heartbeat, error) {
	var h heartbeat
	if len(b) < headerLen || string(b[:len(magic)]) != magic {
		return h, errors.New("not a heartbeat")
	}
	if b[len(magic)] != version {
		return h, fmt.Errorf("heartbeat version %d, want %d", b[len(magic)], version)
	}
	h.Incarnation = binary.BigEndian.Uint64(b[len(magic)+1:])
	h.Seq = binary.BigEndian.Uint64(b[len(magic)+9:])
	rest := b[headerLen:]
	next := func(max int) (string, bool) {
		if len(rest) < 1 || int(rest[0]) == 0 || int(rest[0]) > max || len(rest) < 1+int(rest[0]) {
			return "", false
		}
		s := string(rest[1 : 1+int(rest[0])])
		rest = rest[1+int(rest[0]):]
		return s, true
	}
	var ok bool
	if h.Name, ok = next(maxNameBytes); !ok {
		return heartbeat{}, errors.New("heartbeat with a bad node name")
	}
	if len(rest) < 1 || int(rest[0]) > maxInterfaces {
		return heartbeat{}, errors.New("heartbeat with a bad interface count")
	}
	n := int(rest[0])
	rest = rest[1:]
	for range n {
		i, ok := next(maxIfaceBytes)
		if !ok {
			return heartbeat{}, errors.New("heartbeat with a bad interface name")
		}
		h.Interfaces = append(h.Interfaces, i)
	}
	if len(rest) != 0 {
		return heartbeat{}, fmt.Errorf("heartbeat with %d bytes too many", len(rest))
	}
	return h, nil
}

// Peer is another node's agent: its name and the address its heartbeats come from and go to.
type Peer struct {
	Name string
	Addr netip.Addr
}

// MembersOptions configure Members; zero values take the defaults.
type MembersOptions struct {
	Node string
	// Bind is the address to listen on (default: every address).
	Bind              netip.Addr
	Port              int
	Interval, Timeout time.Duration
	Log               *slog.Logger
	// Interfaces, when set, is called every Interval: the interfaces this node can answer
	// on, sent to the others in each heartbeat.
	Interfaces func() []string
	// OnChange is called with the live nodes, sorted, whenever they change, and once at
	// start; calls do not overlap. Empty means this agent is in doubt (see Fresh): it must
	// answer for nothing.
	OnChange func(alive []string)
}

// Members tells which nodes' agents are alive from heartbeats they exchange over UDP, with
// no API server involved (the load does not grow with Services, and standalone mode works
// alike). Every Interval each agent sends a heartbeat to every peer; a peer not heard from
// for Timeout is dead. An agent that was itself stopped (SIGSTOP, a stall) longer than the
// Timeout knows nothing about the others any more: for a Timeout after it noticed, while
// heartbeats come in again, it is not Fresh, reports no live node (not even itself), and
// its responders must not answer (Responder.Gate). A starting agent doubts the same way.
type Members struct {
	opts        MembersOptions
	conn        *net.UDPConn
	incarnation uint64

	reportMu sync.Mutex // serializes report

	mu        sync.Mutex
	peers     map[string]netip.Addr // by name, from SetPeers
	seen      map[string]time.Time  // last heartbeat, by name
	inc       map[string]uint64     // last incarnation, by name
	seq       map[string]uint64     // last sequence number, by name
	ifaces    map[string][]string   // interfaces each node can answer on, by name (this one too)
	lastTick  time.Time             // when Run last ticked
	stalledAt time.Time             // when Run noticed it had stalled (zero: not in doubt)
	alive     []string              // as last reported to OnChange
	// ifacesChanged: a node's interfaces changed since the last report.
	ifacesChanged bool
	byAddr        map[netip.Addr]string // peer address -> name, to drop spoofed names
	errs          map[string]time.Time  // send errors logged, by peer, rate limited
}

// NewMembers listens on opts.Bind, port opts.Port (UDP).
func NewMembers(opts MembersOptions) (*Members, error) {
	if opts.Port == 0 {
		opts.Port = DefaultPort
	}
	if opts.Interval <= 0 {
		opts.Interval = DefaultInterval
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.Timeout <= opts.Interval {
		return nil, fmt.Errorf("l2announce: heartbeat timeout %v must be longer than the interval %v", opts.Timeout, opts.Interval)
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if _, err := (heartbeat{Name: opts.Node}).marshal(); err != nil {
		return nil, fmt.Errorf("l2announce: %w", err)
	}
	laddr := &net.UDPAddr{Port: opts.Port}
	if opts.Bind.IsValid() {
		laddr.IP = opts.Bind.AsSlice()
	}
	conn, err := net.ListenUDP("udp", laddr)
	if err != nil {
		return nil, fmt.Errorf("l2announce: heartbeats: %w", err)
	}
	return &Members{opts: opts, conn: conn, incarnation: uint64(time.Now().UnixNano()),
		peers: map[string]netip.Addr{}, seen: map[string]time.Time{}, inc: map[string]uint64{}, seq: map[string]uint64{}, ifaces: map[string][]string{},
		byAddr: map[netip.Addr]string{}, errs: map[string]time.Time{}}, nil
}

// Interval and Timeout are the heartbeat settings in effect.
func (m *Members) Interval() time.Duration { return m.opts.Interval }
func (m *Members) Timeout() time.Duration  { return m.opts.Timeout }

// SetPeers sets the other nodes to exchange heartbeats with (this node is ignored in it).
func (m *Members) SetPeers(peers []Peer) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.peers, m.byAddr = map[string]netip.Addr{}, map[netip.Addr]string{}
	for _, p := range peers {
		if p.Name == m.opts.Node || !p.Addr.IsValid() {
			continue
		}
		m.peers[p.Name] = p.Addr.Unmap()
		m.byAddr[p.Addr.Unmap()] = p.Name
	}
}

// Alive returns the live nodes (this one included), sorted.
func (m *Members) Alive() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.aliveLocked(time.Now())
}

func (m *Members) aliveLocked(now time.Time) []string {
	if !m.freshLocked(now) {
		return nil
	}
	out := []string{m.opts.Node}
	for name := range m.peers {
		if t, ok := m.seen[name]; ok && now.Sub(t) < m.opts.Timeout {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// Fresh reports whether this agent's view of the others is current: false for a Timeout
// after it noticed that it had itself been stopped or stalled for longer than that.
func (m *Members) Fresh() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.freshLocked(time.Now())
}

func (m *Members) freshLocked(now time.Time) bool {
	if !m.lastTick.IsZero() && now.Sub(m.lastTick) > m.opts.Timeout {
		return false // stalled right now, and Run has not noticed yet
	}
	return m.stalledAt.IsZero() || now.Sub(m.stalledAt) >= m.opts.Timeout
}

// Run sends and receives heartbeats until ctx ends.
func (m *Members) Run(ctx context.Context) error {
	stop := context.AfterFunc(ctx, func() { m.conn.Close() })
	received := make(chan struct{})
	go func() { defer close(received); m.receive() }()
	defer func() {
		stop()
		m.conn.Close()
		<-received // the socket is closed and nothing uses it when Run returns
	}()
	tick := time.NewTicker(m.opts.Interval)
	defer tick.Stop()
	var seq uint64
	// A starting agent knows nothing of the others yet: it doubts for a Timeout, while their
	// heartbeats come in, instead of taking every address for a moment.
	m.mu.Lock()
	m.stalledAt = time.Now()
	m.mu.Unlock()
	m.report()
	for {
		now := time.Now()
		m.mu.Lock()
		if !m.lastTick.IsZero() && now.Sub(m.lastTick) > m.opts.Timeout {
			// This process did not run for longer than a peer may be silent: the others have
			// taken its addresses. Forget what it knew of them and doubt itself until fresh
			// heartbeats come in.
			m.opts.Log.Warn("l2announce: this agent was stalled; answering nothing until its peers are heard again",
				"stalled", now.Sub(m.lastTick).Round(time.Millisecond))
			m.stalledAt = now
			m.seen = map[string]time.Time{}
		}
		m.lastTick = now
		peers := make(map[string]netip.Addr, len(m.peers))
		for k, v := range m.peers {
			peers[k] = v
		}
		m.mu.Unlock()
		seq++
		hb := heartbeat{Name: m.opts.Node, Incarnation: m.incarnation, Seq: seq}
		if m.opts.Interfaces != nil {
			hb.Interfaces = m.opts.Interfaces()
			if len(hb.Interfaces) > maxInterfaces {
				hb.Interfaces = hb.Interfaces[:maxInterfaces]
			}
			hb.Interfaces = slices.DeleteFunc(hb.Interfaces, func(i string) bool { return len(i) == 0 || len(i) > maxIfaceBytes })
			m.mu.Lock()
			m.ifacesChanged = m.ifacesChanged || !slices.Equal(m.ifaces[m.opts.Node], hb.Interfaces)
			m.ifaces[m.opts.Node] = hb.Interfaces
			m.mu.Unlock()
		}
		b, err := hb.marshal()
		if err != nil {
			m.opts.Log.Warn("l2announce: heartbeat", "error", err)
		}
		for name, addr := range peers {
			if b == nil {
				break
			}
			if _, err := m.conn.WriteToUDPAddrPort(b, netip.AddrPortFrom(addr, uint16(m.opts.Port))); err != nil {
				m.sendFailed(name, err)
			}
		}
		m.report()
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// Interfaces returns the interfaces each node said it can answer on (this one's included),
// by node name.
func (m *Members) Interfaces() map[string][]string {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[string][]string, len(m.ifaces))
	for k, v := range m.ifaces {
		out[k] = slices.Clone(v)
	}
	return out
}

// report calls OnChange if the live nodes changed, or a node's interfaces did (which can
// change the owners). It reads the clock once it has the report lock: a report of an older
// moment must not follow a newer one.
func (m *Members) report() {
	m.reportMu.Lock()
	defer m.reportMu.Unlock()
	m.mu.Lock()
	alive := m.aliveLocked(time.Now())
	changed := m.ifacesChanged || !slices.Equal(alive, m.alive)
	m.alive, m.ifacesChanged = alive, false
	m.mu.Unlock()
	if changed && m.opts.OnChange != nil {
		m.opts.OnChange(alive)
	}
}

func (m *Members) sendFailed(peer string, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if t, ok := m.errs[peer]; ok && time.Since(t) < time.Minute {
		return
	}
	m.errs[peer] = time.Now()
	m.opts.Log.Warn("l2announce: sending a heartbeat", "peer", peer, "error", err)
}

// newer reports whether hb is newer than the last heartbeat counted from its sender: a later
// sequence number of the same incarnation, or a later incarnation — or any once the sender
// has been silent for a Timeout (a restart whose clock went back must not be shut out).
// Called with mu held.
func (m *Members) newer(hb heartbeat, now time.Time) bool {
	inc, seq, seen := m.inc[hb.Name], m.seq[hb.Name], m.seen[hb.Name]
	switch {
	case seen.IsZero() || now.Sub(seen) >= m.opts.Timeout:
		return true
	case hb.Incarnation != inc:
		return hb.Incarnation > inc
	}
	return hb.Seq > seq
}

// receive records heartbeats until the socket closes. A heartbeat counts only from the
// address of the peer of that name, and not from an older incarnation.
func (m *Members) receive() {
	buf := make([]byte, maxHeartbeat+1) // one more: a longer datagram is not a heartbeat
	for {
		n, from, err := m.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		hb, err := parseHeartbeat(buf[:n])
		if err != nil {
			continue
		}
		now := time.Now()
		m.mu.Lock()
		if m.byAddr[from.Addr().Unmap()] == hb.Name && m.newer(hb, now) {
			m.inc[hb.Name], m.seq[hb.Name] = hb.Incarnation, hb.Seq
			m.seen[hb.Name] = now
			m.ifacesChanged = m.ifacesChanged || !slices.Equal(m.ifaces[hb.Name], hb.Interfaces)
			m.ifaces[hb.Name] = hb.Interfaces
		}
		m.mu.Unlock()
		m.report()
	}
}
