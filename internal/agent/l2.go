package agent

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/vishvananda/netlink"
	"k8s.io/apimachinery/pkg/types"

	"github.com/sluice-lb/sluice/internal/localapi"
	"github.com/sluice-lb/sluice/internal/model"
	"github.com/sluice-lb/sluice/l2announce"
)

// l2 runs the node's L2 announcements: the candidates of the last model, the live nodes from
// the heartbeats, and a responder per interface answering for the addresses this node owns.
// It starts its heartbeats with the first model in which this node may answer for an address.
type l2 struct {
	cfg Config
	log *slog.Logger

	mu         sync.Mutex
	ctx        context.Context // the agent's run context, once Run has started
	members    *l2announce.Members
	cands      []l2announce.Candidate
	alive      []string
	responders map[string]*l2announce.Responder // by interface
	owned      map[netip.Addr][]string          // address -> interfaces answered on
	takeovers  uint64
	// event, when set (Kubernetes mode), records an Event on a Service this node starts
	// answering for.
	event func(svc types.NamespacedName, uid types.UID, note string)
}

func newL2(cfg Config, log *slog.Logger) *l2 {
	return &l2{cfg: cfg, log: log, responders: map[string]*l2announce.Responder{}, owned: map[netip.Addr][]string{}}
}

// start records the agent's run context — the heartbeats and responders live as long — and
// the Event recorder (nil: none).
func (l *l2) start(ctx context.Context, event func(types.NamespacedName, types.UID, string)) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.ctx, l.event = ctx, event
}

// update takes the candidates of a new model.
func (l *l2) update(m *model.Model, lbIPs map[types.NamespacedName][]netip.Addr) {
	cands := l2announce.Candidates(m, lbIPs)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.cands = cands
	mine := slices.ContainsFunc(cands, func(c l2announce.Candidate) bool { return slices.Contains(c.Nodes, l.cfg.NodeName) })
	if l.members == nil && mine && l.ctx != nil {
		l.startMembers()
	}
	if l.members != nil {
		l.members.SetPeers(peersOf(m, cands))
	}
	l.recompute()
}

// startMembers starts the heartbeats. Called with mu held. A failure (the port taken) is
// logged and tried again at the next model.
func (l *l2) startMembers() {
	m, err := l2announce.NewMembers(l2announce.MembersOptions{
		Node: l.cfg.NodeName, Port: l.cfg.L2.Port, Interval: l.cfg.L2.Interval, Timeout: l.cfg.L2.Timeout,
		Log: l.log, OnChange: l.aliveChanged, Interfaces: l.answerable,
	})
	if err != nil {
		l.log.Error("l2: cannot exchange heartbeats: answering for no address", "error", err)
		return
	}
	l.members = m
	ctx := l.ctx
	go func() {
		if err := m.Run(ctx); err != nil {
			l.log.Error("l2: heartbeats stopped", "error", err)
		}
	}()
	l.log.Info("l2: heartbeats started", "port", l.cfg.L2.Port, "interval", m.Interval(), "timeout", m.Timeout())
}

// peersOf are the nodes that may answer for some candidate, at their first address.
func peersOf(m *model.Model, cands []l2announce.Candidate) []l2announce.Peer {
	want := map[string]bool{}
	for _, c := range cands {
		for _, n := range c.Nodes {
			want[n] = true
		}
	}
	var peers []l2announce.Peer
	for _, n := range m.Nodes {
		if want[n.Name] && len(n.Addresses) > 0 {
			peers = append(peers, l2announce.Peer{Name: n.Name, Addr: n.Addresses[0]})
		}
	}
	return peers
}

func (l *l2) aliveChanged(alive []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	changed := !slices.Equal(alive, l.alive)
	if changed {
		l.log.Info("l2: live nodes", "alive", alive)
	}
	l.alive = alive
	l.recompute()
	if changed && l.ctx != nil {
		// A node joining may have answered for this node's addresses while they could not
		// hear each other: tell the neighbours again who answers now.
		for _, r := range l.responders {
			r.Reannounce(l.ctx)
		}
	}
}

// recompute sets every responder to the addresses this node owns now. Called with mu held.
func (l *l2) recompute() {
	owned := map[netip.Addr][]string{}
	byIface := map[string][]netip.Addr{}
	alive := l.alive
	if l.members == nil {
		alive = nil
	}
	var here []string // the interfaces this node can answer on
	if l.members != nil {
		here = l.members.Interfaces()[l.cfg.NodeName]
	}
	var defaults []string // the default interfaces, listed once if needed
	for _, c := range l2announce.Owned(l.eligible(), alive, l.cfg.NodeName) {
		ifaces := c.Interfaces
		if len(ifaces) == 0 {
			if defaults == nil {
				defaults = l.defaultInterfaces()
			}
			ifaces = defaults
		}
		ifaces = slices.DeleteFunc(slices.Clone(ifaces), func(i string) bool { return !slices.Contains(here, i) })
		owned[c.Addr] = ifaces
		for _, i := range ifaces {
			byIface[i] = append(byIface[i], c.Addr)
		}
		if _, had := l.owned[c.Addr]; !had {
			l.takeovers++
			l.log.Info("l2: answering for an address", "address", c.Addr, "service", c.Service.String(), "interfaces", ifaces)
			if l.event != nil {
				l.event(c.Service, c.ServiceUID, fmt.Sprintf("%s answers ARP/NDP for %s on %s", l.cfg.NodeName, c.Addr, strings.Join(ifaces, ", ")))
			}
		}
	}
	for a := range l.owned {
		if _, has := owned[a]; !has {
			l.log.Info("l2: no longer answering for an address", "address", a)
		}
	}
	l.owned = owned
	for name := range byIface {
		if _, ok := l.responders[name]; !ok && l.ctx != nil {
			l.openResponder(name)
		}
	}
	for name, r := range l.responders {
		if len(byIface[name]) == 0 {
			// Nothing to answer for here: close it, so that an interface gone or recreated
			// (a bond, a VLAN) is opened afresh when it is needed again.
			r.Set(l.ctx, nil)
			_ = r.Close()
			delete(l.responders, name)
			continue
		}
		r.Set(l.ctx, byIface[name])
	}
}

// openResponder opens the responder of an interface. Called with mu held. A failure (the
// interface missing) is logged; the next recompute tries again.
func (l *l2) openResponder(name string) {
	r, err := l2announce.NewResponder(name, l.log)
	if err != nil {
		l.log.Warn("l2: cannot answer on an interface", "interface", name, "error", err)
		return
	}
	r.Gate = l.members.Fresh
	l.responders[name] = r
	ctx := l.ctx
	go func() {
		if err := r.Run(ctx); err != nil {
			l.log.Warn("l2: responder stopped", "interface", name, "error", err)
		}
	}()
}

// eligible are the candidates less, for each, the nodes that cannot answer on its
// interfaces: those whose heartbeats name none of the advertisement's interfaces (or none at
// all, for the default ones). Called with mu held.
func (l *l2) eligible() []l2announce.Candidate {
	if l.members == nil {
		return l.cands
	}
	has := l.members.Interfaces()
	out := make([]l2announce.Candidate, 0, len(l.cands))
	for _, c := range l.cands {
		c.Nodes = slices.DeleteFunc(slices.Clone(c.Nodes), func(n string) bool {
			ifaces := has[n]
			if len(c.Interfaces) == 0 {
				return len(ifaces) == 0
			}
			return !slices.ContainsFunc(c.Interfaces, func(i string) bool { return slices.Contains(ifaces, i) })
		})
		out = append(out, c)
	}
	return out
}

// answerable are the interfaces this node can answer on now: of those the candidates name,
// and the default ones, those that exist, are up and have an Ethernet address. Its
// heartbeats carry them, every interval: one interface dump, made without the lock.
func (l *l2) answerable() []string {
	l.mu.Lock()
	var names []string
	for _, c := range l.cands {
		names = append(names, c.Interfaces...)
	}
	l.mu.Unlock()
	links, err := netlink.LinkList()
	if err != nil {
		l.log.Warn("l2: listing interfaces", "error", err)
		return nil
	}
	names = append(names, l.defaultOf(links)...)
	slices.Sort(names)
	names = slices.Compact(names)
	var out []string
	for _, link := range links {
		a := link.Attrs()
		if slices.Contains(names, a.Name) && a.Flags&net.FlagUp != 0 && len(a.HardwareAddr) == 6 {
			out = append(out, a.Name)
		}
	}
	slices.Sort(out)
	return out
}

// defaultTypes are the kinds of link answered on when no interface is named: NICs, bonds,
// VLANs and bridges — not the veths, tunnels and pod interfaces of container networking
// (Calico's cali*, Cilium's lxc*, ...), whatever their names.
var defaultTypes = []string{"device", "bond", "vlan", "bridge"}

// defaultInterfaces are the interfaces answered on for an advertisement naming none: the
// datapath's --devices when given (traffic must arrive where it is balanced), else every
// NIC, bond, VLAN or bridge that is up, has an Ethernet address and is not a bridge port.
func (l *l2) defaultInterfaces() []string {
	var links []netlink.Link
	if len(l.cfg.Devices) == 0 {
		var err error
		if links, err = netlink.LinkList(); err != nil {
			l.log.Warn("l2: listing interfaces", "error", err)
		}
	}
	return l.defaultOf(links)
}

// defaultOf is defaultInterfaces given the node's links.
func (l *l2) defaultOf(links []netlink.Link) []string {
	if len(l.cfg.Devices) > 0 {
		return slices.Clone(l.cfg.Devices)
	}
	var out []string
	for _, link := range links {
		a := link.Attrs()
		if a.Flags&net.FlagUp == 0 || len(a.HardwareAddr) != 6 || a.MasterIndex != 0 || !slices.Contains(defaultTypes, link.Type()) {
			continue
		}
		out = append(out, a.Name)
	}
	slices.Sort(out)
	return out
}

// status is the local API's view: every candidate address with its owner.
func (l *l2) status() localapi.L2Status {
	l.mu.Lock()
	defer l.mu.Unlock()
	st := localapi.L2Status{Node: l.cfg.NodeName, Alive: slices.Clone(l.alive), Owners: []localapi.L2Owner{}}
	if st.Alive == nil || l.members == nil {
		st.Alive = []string{}
	}
	cands := l.eligible()
	owners := l2announce.Owners(cands, st.Alive)
	for _, c := range cands {
		st.Owners = append(st.Owners, localapi.L2Owner{Address: c.Addr.String(), Service: c.Service.String(), Owner: owners[c.Addr],
			Candidates: c.Nodes, Interfaces: l.owned[c.Addr]})
	}
	return st
}

// l2Collector reads the L2 state at scrape time.
type l2Collector struct{ l *l2 }

var (
	l2OwnedDesc     = prometheus.NewDesc("sluice_l2_owned_addresses", "Service addresses this node answers for over ARP/NDP.", nil, nil)
	l2AliveDesc     = prometheus.NewDesc("sluice_l2_live_nodes", "Nodes whose agents this one hears (itself included; 0 while it doubts its view).", nil, nil)
	l2TakeoverDesc  = prometheus.NewDesc("sluice_l2_takeovers_total", "Addresses this node started answering for.", nil, nil)
	l2AnswersDesc   = prometheus.NewDesc("sluice_l2_answers_total", "ARP replies and neighbor advertisements sent in answer, by interface and protocol.", []string{"interface", "protocol"}, nil)
	l2GratuitousDes = prometheus.NewDesc("sluice_l2_announcements_total", "Gratuitous ARP and unsolicited neighbor advertisements sent, by interface.", []string{"interface"}, nil)
)

func (c l2Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{l2OwnedDesc, l2AliveDesc, l2TakeoverDesc, l2AnswersDesc, l2GratuitousDes} {
		ch <- d
	}
}

func (c l2Collector) Collect(ch chan<- prometheus.Metric) {
	l := c.l
	l.mu.Lock()
	defer l.mu.Unlock()
	ch <- prometheus.MustNewConstMetric(l2OwnedDesc, prometheus.GaugeValue, float64(len(l.owned)))
	ch <- prometheus.MustNewConstMetric(l2AliveDesc, prometheus.GaugeValue, float64(len(l.alive)))
	ch <- prometheus.MustNewConstMetric(l2TakeoverDesc, prometheus.CounterValue, float64(l.takeovers))
	for name, r := range l.responders {
		ch <- prometheus.MustNewConstMetric(l2AnswersDesc, prometheus.CounterValue, float64(r.Counters.ARPReplies.Load()), name, "arp")
		ch <- prometheus.MustNewConstMetric(l2AnswersDesc, prometheus.CounterValue, float64(r.Counters.NDPAdvertisements.Load()), name, "ndp")
		ch <- prometheus.MustNewConstMetric(l2GratuitousDes, prometheus.CounterValue, float64(r.Counters.Gratuitous.Load()), name)
	}
}
