package agent

import (
	"context"
	"net/netip"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/sluice-lb/sluice/internal/localapi"
	"github.com/sluice-lb/sluice/internal/model"
)

// announce brings the BGP speaker to what this node announces in model m. A node whose Node
// object was there and is gone has left the cluster: it withdraws everything at once (a Cease
// to every peer, graceful restart or not) instead of leaving routers to hold stale routes.
func (a *Agent) announce(m *model.Model, lbIPs map[types.NamespacedName][]netip.Addr) {
	known := slices.ContainsFunc(m.Nodes, func(n *model.Node) bool { return n.Name == a.cfg.NodeName })
	if a.nodeSeen && !known {
		a.log.Warn("bgp: this node's Node object is gone: withdrawing everything", "node", a.cfg.NodeName)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		a.speaker.Close(ctx, true)
		return
	}
	a.nodeSeen = a.nodeSeen || known
	d := a.planner.Plan(m, lbIPs)
	if w := strings.Join(d.Warnings, "; "); w != a.bgpWarnings {
		a.bgpWarnings = w
		if w != "" {
			a.log.Warn("bgp", "problem", w)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := a.speaker.Apply(ctx, d, nodeIPv4(m, a.cfg.NodeName)); err != nil {
		a.log.Warn("bgp: not every peer is configured as asked", "error", err)
	}
}

// nodeIPv4 is the first IPv4 address of the node (InternalIP first): the default router ID.
func nodeIPv4(m *model.Model, node string) netip.Addr {
	for _, a := range nodeAddresses(m, node) {
		if a.Is4() {
			return a
		}
	}
	return netip.Addr{}
}

// nodeAddresses are the addresses of the node's Node object (InternalIP first), none when it
// is unknown.
func nodeAddresses(m *model.Model, node string) []netip.Addr {
	for _, n := range m.Nodes {
		if n.Name == node {
			return n.Addresses
		}
	}
	return nil
}

// nodeZone is the node's topology.kubernetes.io/zone label, "" when it has none or is unknown.
func nodeZone(m *model.Model, node string) string {
	for _, n := range m.Nodes {
		if n.Name == node {
			return n.Labels[corev1.LabelTopologyZone]
		}
	}
	return ""
}

// BGPPeers returns the speaker's sessions and routes, for the local API.
func (a *Agent) BGPPeers(ctx context.Context) []localapi.BGPPeer {
	routes := a.speaker.Routes()
	out := []localapi.BGPPeer{}
	for _, st := range a.speaker.Status(ctx) {
		p := localapi.BGPPeer{Name: st.Name, Address: st.Address.String(), ASN: st.ASN, RouterID: st.RouterID.String(),
			State: st.State, Sent: st.Sent, LastError: st.LastError, Routes: []string{}}
		if st.Uptime > 0 {
			p.Uptime = st.Uptime.String()
		}
		for _, r := range routes[st.Name] {
			p.Routes = append(p.Routes, r.String())
		}
		out = append(out, p)
	}
	return out
}
