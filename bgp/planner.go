package bgp

import (
	"maps"
	"net/netip"
	"slices"

	"k8s.io/apimachinery/pkg/types"

	"github.com/sluice-lb/sluice/internal/model"
)

// Planner computes what one node announces, model after model (those of one
// model.Builder), as DesiredFor does, but in proportion to what changed: while the
// configuration (model.Model.ConfigGeneration) and the node's own Node are the same, it
// works out again only the Services whose object or addresses changed, and each Desired says
// which prefixes changed since the one before (Since, Changed), so that the Speaker sends
// only those. Anything else makes it plan from scratch. Its Desired equals DesiredFor's (see
// TestPlannerSameAsDesiredFor).
type Planner struct {
	node string
	seq  uint64

	// The basis of the last plan: when any of it changes, the plan starts over.
	gen   uint64
	self  *model.Node
	hasLB bool // lbIPs was given
	plan  *plan
	last  Desired

	services map[types.NamespacedName]plannedService
	// merged counts, per peer and prefix, the advertisements that announce it.
	merged map[string]map[netip.Prefix]map[*model.BGPAdvert]int
}

type plannedService struct {
	svc *model.Service
	ips []netip.Addr // its entry of lbIPs
	out []announcement
}

// announcement is one advertisement announcing a prefix to peers.
type announcement struct {
	peers  []string
	advert *model.BGPAdvert
	prefix netip.Prefix
}

// NewPlanner returns a Planner for node.
func NewPlanner(node string) *Planner { return &Planner{node: node} }

// Plan computes what the node announces in m (see DesiredFor for lbIPs).
func (p *Planner) Plan(m *model.Model, lbIPs map[types.NamespacedName][]netip.Addr) Desired {
	p.seq++
	var self *model.Node
	for _, n := range m.Nodes {
		if n.Name == p.node {
			self = n
		}
	}
	if p.plan == nil || m.ConfigGeneration == 0 || m.ConfigGeneration != p.gen || self != p.self || (lbIPs != nil) != p.hasLB {
		return p.full(m, self, lbIPs)
	}
	touched := map[string]map[netip.Prefix]bool{}
	before, seen := len(p.services), 0
	for _, s := range m.Services {
		ips := lbIPs[s.Key]
		old, ok := p.services[s.Key]
		if ok {
			seen++
			if old.svc == s && slices.Equal(old.ips, ips) {
				continue
			}
		}
		p.count(old.out, -1, touched)
		ps := p.planService(m, s, lbIPs)
		p.count(ps.out, 1, touched)
		p.services[s.Key] = ps
	}
	if seen < before { // some are gone
		keys := make(map[types.NamespacedName]bool, len(m.Services))
		for _, s := range m.Services {
			keys[s.Key] = true
		}
		for k, ps := range p.services {
			if !keys[k] {
				p.count(ps.out, -1, touched)
				delete(p.services, k)
			}
		}
	}
	d := p.last
	d.Seq, d.Since, d.Changed = p.seq, p.last.Seq, map[string][]netip.Prefix{}
	d.Paths = maps.Clone(d.Paths)
	for peer, prefixes := range touched {
		paths := slices.Clone(d.Paths[peer])
		for prefix := range prefixes {
			d.Changed[peer] = append(d.Changed[peer], prefix)
			i, found := slices.BinarySearchFunc(paths, prefix, func(x Path, y netip.Prefix) int { return comparePrefixes(x.Prefix, y) })
			adverts := p.merged[peer][prefix]
			switch {
			case len(adverts) == 0 && found:
				paths = slices.Delete(paths, i, i+1)
			case len(adverts) == 0:
			case found:
				paths[i] = pathOf(prefix, adverts)
			default:
				paths = slices.Insert(paths, i, pathOf(prefix, adverts))
			}
		}
		if len(paths) == 0 {
			delete(d.Paths, peer)
		} else {
			d.Paths[peer] = paths
		}
	}
	p.last = d
	return d
}

// full plans from scratch.
func (p *Planner) full(m *model.Model, self *model.Node, lbIPs map[types.NamespacedName][]netip.Addr) Desired {
	p.gen, p.self, p.hasLB = m.ConfigGeneration, self, lbIPs != nil
	p.plan = planConfig(m, p.node)
	p.services = make(map[types.NamespacedName]plannedService, len(m.Services))
	p.merged = map[string]map[netip.Prefix]map[*model.BGPAdvert]int{}
	var pods []announcement
	p.plan.podCIDRs(func(peers []string, a *model.BGPAdvert, prefix netip.Prefix) {
		pods = append(pods, announcement{peers, a, prefix})
	})
	p.count(pods, 1, nil)
	for _, s := range m.Services {
		ps := p.planService(m, s, lbIPs)
		p.count(ps.out, 1, nil)
		p.services[s.Key] = ps
	}
	d := p.plan.desired
	d.Seq, d.Paths = p.seq, map[string][]Path{}
	for peer, prefixes := range p.merged {
		paths := make([]Path, 0, len(prefixes))
		for prefix, adverts := range prefixes {
			paths = append(paths, pathOf(prefix, adverts))
		}
		slices.SortFunc(paths, func(x, y Path) int { return comparePrefixes(x.Prefix, y.Prefix) })
		d.Paths[peer] = paths
	}
	p.last = d
	return d
}

func (p *Planner) planService(m *model.Model, s *model.Service, lbIPs map[types.NamespacedName][]netip.Addr) plannedService {
	ps := plannedService{svc: s, ips: lbIPs[s.Key]}
	p.plan.service(m, s, lbIPs, func(peers []string, a *model.BGPAdvert, prefix netip.Prefix) {
		ps.out = append(ps.out, announcement{peers, a, prefix})
	})
	return ps
}

// count adds (by 1 or -1) announcements to the merged counts, noting what it touched.
func (p *Planner) count(out []announcement, by int, touched map[string]map[netip.Prefix]bool) {
	for _, a := range out {
		for _, peer := range a.peers {
			prefixes := p.merged[peer]
			if prefixes == nil {
				prefixes = map[netip.Prefix]map[*model.BGPAdvert]int{}
				p.merged[peer] = prefixes
			}
			adverts := prefixes[a.prefix]
			if adverts == nil {
				adverts = map[*model.BGPAdvert]int{}
				prefixes[a.prefix] = adverts
			}
			if adverts[a.advert] += by; adverts[a.advert] == 0 {
				delete(adverts, a.advert)
			}
			if len(adverts) == 0 {
				delete(prefixes, a.prefix)
			}
			if touched != nil {
				if touched[peer] == nil {
					touched[peer] = map[netip.Prefix]bool{}
				}
				touched[peer][a.prefix] = true
			}
		}
	}
}

// pathOf is the path of prefix announced by adverts: their merge (see Path).
func pathOf(prefix netip.Prefix, adverts map[*model.BGPAdvert]int) Path {
	var at attrs
	for a := range adverts {
		at.add(a)
	}
	return at.path(prefix)
}
