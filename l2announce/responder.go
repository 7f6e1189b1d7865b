package l2announce

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/ndp"
	"github.com/mdlayher/packet"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"
)

// Announcement bursts: on taking an address over, a responder sends gratuitous ARP /
// unsolicited neighbor advertisements at once and then after each of these pauses, so that
// a neighbor that missed the first one (a busy switch, a lost frame) still learns the new
// owner quickly.
var burst = []time.Duration{0, 100 * time.Millisecond, 400 * time.Millisecond}

// Counters are a responder's counts, read with Load.
type Counters struct {
	ARPReplies, NDPAdvertisements atomic.Uint64 // answers to requests / solicitations
	Gratuitous                    atomic.Uint64 // gratuitous ARP and unsolicited NA sent
}

// Responder answers, on one interface, ARP requests (IPv4) and NDP neighbor solicitations
// (IPv6) for the addresses it is given, with the interface's hardware address, and
// announces each address it is newly given. Addresses it is not given are never answered
// for: a node that loses an address stops answering at the next Set.
type Responder struct {
	ifi *net.Interface
	log *slog.Logger
	arp *arpConn         // nil: no ARP socket
	ndp *ipv6.PacketConn // ICMPv6 (NDP messages only); nil: no IPv6
	// Counters of this responder.
	Counters Counters
	// Gate, when set, must say yes before anything is sent: Members.Fresh, so that an agent
	// resumed after a stall does not answer from an ownership that has moved meanwhile.
	Gate func() bool

	closed atomic.Bool

	mu     sync.Mutex
	owned  map[netip.Addr]bool
	groups map[netip.Addr]int // solicited-node multicast groups joined, by how many owned addresses
}

// NewResponder opens the ARP and NDP sockets of interface name: ARP when it has an IPv4
// address, NDP when IPv6 is on. It needs CAP_NET_RAW.
func NewResponder(name string, log *slog.Logger) (*Responder, error) {
	ifi, err := net.InterfaceByName(name)
	if err != nil {
		return nil, fmt.Errorf("l2announce: %w", err)
	}
	if len(ifi.HardwareAddr) != 6 {
		return nil, fmt.Errorf("l2announce: %s has no Ethernet address", name)
	}
	r := &Responder{ifi: ifi, log: log.With("interface", name), owned: map[netip.Addr]bool{}, groups: map[netip.Addr]int{}}
	var errs []error
	if r.arp, err = listenARP(ifi); err != nil {
		errs = append(errs, fmt.Errorf("ARP: %w", err))
	}
	if r.ndp, err = listenNDP(); err != nil {
		errs = append(errs, fmt.Errorf("NDP: %w", err))
	}
	if r.arp == nil && r.ndp == nil {
		return nil, fmt.Errorf("l2announce: %s: %w", name, errors.Join(errs...))
	}
	for _, err := range errs {
		r.log.Info("l2announce: answering one family only", "why", err)
	}
	return r, nil
}

// listenNDP opens an ICMPv6 socket for neighbor solicitations, hop limit 255 (RFC 4861),
// telling each message's interface. It is not ndp.Conn: that names the interface by name on
// every send, which resolves in the calling thread's network namespace; this one uses only
// interface indexes (ndp still encodes and parses the messages). IPV6_FREEBIND lets it send
// from the Service address, which is on no interface: an advertisement comes from the
// address it advertises, as the kernel's own do (and as tools such as ndisc6 expect of a
// global target).
func listenNDP() (*ipv6.PacketConn, error) {
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_FREEBIND, 1) }); err != nil {
			return err
		}
		return serr
	}}
	c, err := lc.ListenPacket(context.Background(), "ip6:ipv6-icmp", "::")
	if err != nil {
		return nil, err
	}
	pc := ipv6.NewPacketConn(c)
	var f ipv6.ICMPFilter
	f.SetAll(true)
	f.Accept(ipv6.ICMPTypeNeighborSolicitation)
	for _, err := range []error{
		pc.SetHopLimit(ndp.HopLimit), pc.SetMulticastHopLimit(ndp.HopLimit), pc.SetICMPFilter(&f),
		pc.SetControlMessage(ipv6.FlagInterface|ipv6.FlagHopLimit, true),
	} {
		if err != nil {
			c.Close()
			return nil, err
		}
	}
	return pc, nil
}

// arpConn is a raw socket for ARP on one interface. Unlike arp.Client it needs no IPv4 address
// on the interface: a node may answer for Service addresses on an interface that has none
// (a dedicated VIP interface, one still waiting for DHCP).
type arpConn struct {
	ifi *net.Interface
	c   *packet.Conn
	buf []byte
}

func listenARP(ifi *net.Interface) (*arpConn, error) {
	c, err := packet.Listen(ifi, packet.Raw, int(ethernet.EtherTypeARP), nil)
	if err != nil {
		return nil, err
	}
	return &arpConn{ifi: ifi, c: c, buf: make([]byte, 1514)}, nil
}

// read returns the next ARP packet; an error for a frame that is not one.
func (a *arpConn) read() (*arp.Packet, error) {
	n, _, err := a.c.ReadFrom(a.buf)
	if err != nil {
		return nil, err
	}
	var f ethernet.Frame
	if err := f.UnmarshalBinary(a.buf[:n]); err != nil {
		return nil, err
	}
	if f.EtherType != ethernet.EtherTypeARP {
		return nil, errors.New("not ARP")
	}
	p := new(arp.Packet)
	if err := p.UnmarshalBinary(f.Payload); err != nil {
		return nil, err
	}
	return p, nil
}

// write sends p in an Ethernet frame to dst.
func (a *arpConn) write(p *arp.Packet, dst net.HardwareAddr) error {
	pb, err := p.MarshalBinary()
	if err != nil {
		return err
	}
	fb, err := (&ethernet.Frame{Destination: dst, Source: a.ifi.HardwareAddr, EtherType: ethernet.EtherTypeARP, Payload: pb}).MarshalBinary()
	if err != nil {
		return err
	}
	_, err = a.c.WriteTo(fb, &packet.Addr{HardwareAddr: dst})
	return err
}

// sendNDP sends m from src to dst out of the responder's interface.
func (r *Responder) sendNDP(m ndp.Message, src, dst netip.Addr) error {
	b, err := ndp.MarshalMessage(m)
	if err != nil {
		return err
	}
	cm := &ipv6.ControlMessage{HopLimit: ndp.HopLimit, IfIndex: r.ifi.Index, Src: src.AsSlice()}
	_, err = r.ndp.WriteTo(b, cm, &net.IPAddr{IP: dst.WithZone("").AsSlice()})
	return err
}

// HardwareAddr is the address the responder answers with.
func (r *Responder) HardwareAddr() net.HardwareAddr { return r.ifi.HardwareAddr }

// Owned returns the addresses the responder answers for, sorted.
func (r *Responder) Owned() []netip.Addr {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]netip.Addr, 0, len(r.owned))
	for a := range r.owned {
		out = append(out, a)
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return out
}

// Set makes the responder answer for exactly addrs. Each address it did not answer for
// before is announced in a burst (gratuitous ARP, unsolicited NA); for IPv6 it joins the
// address's solicited-node multicast group. It returns the addresses newly taken.
func (r *Responder) Set(ctx context.Context, addrs []netip.Addr) []netip.Addr {
	r.mu.Lock()
	want := map[netip.Addr]bool{}
	var added []netip.Addr
	for _, a := range addrs {
		a = a.Unmap()
		if want[a] || (a.Is4() && r.arp == nil) || (a.Is6() && r.ndp == nil) {
			continue
		}
		want[a] = true
		if !r.owned[a] {
			added = append(added, a)
			r.join(a)
		}
	}
	for a := range r.owned {
		if !want[a] {
			r.leave(a)
		}
	}
	r.owned = want
	r.mu.Unlock()
	if len(added) > 0 {
		go r.announce(ctx, added)
	}
	return added
}

// Reannounce sends the announcement burst for every address the responder answers for:
// after a partition heals, neighbours may still hold the hardware address of a node that
// answered for an address meanwhile.
func (r *Responder) Reannounce(ctx context.Context) {
	if owned := r.Owned(); len(owned) > 0 {
		go r.announce(ctx, owned)
	}
}

// join and leave keep the solicited-node group of a joined while an IPv6 address that maps
// to it is owned. Called with mu held.
func (r *Responder) join(a netip.Addr) {
	if !a.Is6() {
		return
	}
	g, err := ndp.SolicitedNodeMulticast(a)
	if err != nil {
		return
	}
	if r.groups[g]++; r.groups[g] == 1 {
		if err := r.ndp.JoinGroup(r.ifi, &net.IPAddr{IP: g.AsSlice()}); err != nil {
			r.log.Warn("l2announce: joining the solicited-node group", "address", a, "group", g, "error", err)
		}
	}
}

func (r *Responder) leave(a netip.Addr) {
	if !a.Is6() {
		return
	}
	g, err := ndp.SolicitedNodeMulticast(a)
	if err != nil {
		return
	}
	if r.groups[g]--; r.groups[g] <= 0 {
		delete(r.groups, g)
		if err := r.ndp.LeaveGroup(r.ifi, &net.IPAddr{IP: g.AsSlice()}); err != nil {
			r.log.Debug("l2announce: leaving the solicited-node group", "group", g, "error", err)
		}
	}
}

// announce sends the burst for addrs, stopping early for an address a later Set dropped.
func (r *Responder) announce(ctx context.Context, addrs []netip.Addr) {
	var prev time.Duration
	for _, at := range burst {
		select {
		case <-ctx.Done():
			return
		case <-time.After(at - prev):
		}
		prev = at
		for _, a := range addrs {
			r.mu.Lock()
			still := r.owned[a]
			r.mu.Unlock()
			if !still || r.closed.Load() || !r.open() {
				continue
			}
			if err := r.gratuitous(a); err != nil {
				r.log.Warn("l2announce: announcing", "address", a, "error", err)
				continue
			}
			r.Counters.Gratuitous.Add(1)
		}
	}
}

// gratuitous sends one gratuitous ARP (IPv4) or unsolicited, overriding NA to all nodes
// (IPv6) for a. The ARP is an announcement as RFC 5227 has it — a broadcast request with the
// address as both sender and target — which Linux neighbours take at once, even within the
// lock time after another update (a reply to broadcast would wait it out).
func (r *Responder) gratuitous(a netip.Addr) error {
	if a.Is4() {
		p, err := arp.NewPacket(arp.OperationRequest, r.ifi.HardwareAddr, a, ethernet.Broadcast, a)
		if err != nil {
			return err
		}
		p.TargetHardwareAddr = net.HardwareAddr{0, 0, 0, 0, 0, 0}
		return r.arp.write(p, ethernet.Broadcast)
	}
	na := &ndp.NeighborAdvertisement{Override: true, TargetAddress: a,
		Options: []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Target, Addr: r.ifi.HardwareAddr}}}
	return r.sendNDP(na, a, netip.IPv6LinkLocalAllNodes())
}

// Run answers requests until ctx ends or the sockets fail.
func (r *Responder) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	errc := make(chan error, 2)
	if r.arp != nil {
		wg.Add(1)
		go func() { defer wg.Done(); errc <- r.serveARP(ctx) }()
	}
	if r.ndp != nil {
		wg.Add(1)
		go func() { defer wg.Done(); errc <- r.serveNDP(ctx) }()
	}
	stop := context.AfterFunc(ctx, func() { r.closeSockets() })
	defer stop()
	wg.Wait()
	close(errc)
	var errs []error
	for err := range errc {
		if err != nil && ctx.Err() == nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Close closes the sockets; Run returns.
func (r *Responder) Close() error { return r.closeSockets() }

func (r *Responder) closeSockets() error {
	if r.closed.Swap(true) {
		return nil
	}
	var errs []error
	if r.arp != nil {
		errs = append(errs, r.arp.c.Close())
	}
	if r.ndp != nil {
		errs = append(errs, r.ndp.Close())
	}
	return errors.Join(errs...)
}

func (r *Responder) serveARP(ctx context.Context) error {
	for {
		p, err := r.arp.read()
		if err != nil {
			if r.readFailed(ctx, err) {
				return nil
			}
			continue
		}
		if !r.shouldAnswerARP(p) {
			continue
		}
		reply, err := arp.NewPacket(arp.OperationReply, r.ifi.HardwareAddr, p.TargetIP, p.SenderHardwareAddr, p.SenderIP)
		if err == nil {
			err = r.arp.write(reply, p.SenderHardwareAddr)
		}
		if err != nil {
			r.log.Warn("l2announce: ARP reply", "address", p.TargetIP, "to", p.SenderIP, "error", err)
			continue
		}
		r.Counters.ARPReplies.Add(1)
	}
}

// readFailed handles a read error: it reports whether the responder is closed. A socket
// error (the interface going down, say) pauses the loop a little; a frame that does not
// parse (garbage, another protocol) is skipped at once.
func (r *Responder) readFailed(ctx context.Context, err error) bool {
	if r.closed.Load() || ctx.Err() != nil {
		return true
	}
	if ne := net.Error(nil); errors.As(err, &ne) {
		time.Sleep(10 * time.Millisecond)
	}
	return false
}

// shouldAnswerARP: a request, not our own, not gratuitous, for an owned address.
func (r *Responder) shouldAnswerARP(p *arp.Packet) bool {
	if p.Operation != arp.OperationRequest || slices.Equal(p.SenderHardwareAddr, r.ifi.HardwareAddr) || p.SenderIP == p.TargetIP {
		return false
	}
	r.mu.Lock()
	owned := r.owned[p.TargetIP]
	r.mu.Unlock()
	return owned && r.open()
}

// open reports whether the Gate lets the responder send.
func (r *Responder) open() bool { return r.Gate == nil || r.Gate() }

func (r *Responder) serveNDP(ctx context.Context) error {
	buf := make([]byte, 1500)
	for {
		n, cm, src, err := r.ndp.ReadFrom(buf)
		if err != nil {
			if r.readFailed(ctx, err) {
				return nil
			}
			continue
		}
		// Only this interface's, and only with hop limit 255: from the link (RFC 4861 7.1.1).
		if cm == nil || cm.IfIndex != r.ifi.Index || cm.HopLimit != ndp.HopLimit {
			continue
		}
		m, err := ndp.ParseMessage(buf[:n])
		if err != nil {
			continue // not a valid NDP message: skip it
		}
		ns, ok := m.(*ndp.NeighborSolicitation)
		if !ok {
			continue
		}
		from, ok := netip.AddrFromSlice(src.(*net.IPAddr).IP)
		if !ok {
			continue
		}
		r.mu.Lock()
		owned := r.owned[ns.TargetAddress]
		r.mu.Unlock()
		if !owned || !r.open() {
			continue
		}
		na := &ndp.NeighborAdvertisement{Solicited: true, Override: true, TargetAddress: ns.TargetAddress,
			Options: []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Target, Addr: r.ifi.HardwareAddr}}}
		dst := from
		if from.IsUnspecified() { // duplicate address detection: tell everyone (RFC 4861 7.2.4)
			na.Solicited, dst = false, netip.IPv6LinkLocalAllNodes()
		}
		if err := r.sendNDP(na, ns.TargetAddress, dst); err != nil {
			r.log.Warn("l2announce: neighbor advertisement", "address", ns.TargetAddress, "to", from, "error", err)
			continue
		}
		r.Counters.NDPAdvertisements.Add(1)
	}
}
