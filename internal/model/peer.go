package model

import (
	"fmt"
	"net/netip"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/sluice-lb/sluice/api/v1alpha1"
)

// Defaults of a BGP session, as in RFC 4271 and MetalLB.
const (
	DefaultPeerPort         = 179
	DefaultHoldTime         = 90 * time.Second
	DefaultConnectRetryTime = 120 * time.Second
	DefaultRestartTime      = 120 * time.Second
	// ListenPort is where a node listens for the sessions of passive peers.
	ListenPort = 179
	maxASN     = 1<<32 - 1
)

// Peer is a validated BGPPeer.
type Peer struct {
	Name             string
	Address          netip.Addr
	ASN              uint32
	LocalASN         uint32
	Port             uint16
	SourceAddress    netip.Addr // invalid: chosen by the kernel
	RouterID         netip.Addr // invalid: the node's
	HoldTime         time.Duration
	KeepaliveTime    time.Duration
	ConnectRetryTime time.Duration
	EBGPMultihop     uint8
	// Passive: the router opens the session; the node listens on port ListenPort.
	Passive bool
	// Password is the TCP-MD5 password read from PasswordSecretRef; empty for none.
	Password        string `json:"-"`
	GracefulRestart bool
	RestartTime     time.Duration
	Families        []v1alpha1.Family
	NodeSelector    labels.Selector // nil: every node
}

// secretKey names a Secret.
type secretKey struct{ namespace, name string }

func buildPeer(o *v1alpha1.BGPPeer, secrets map[secretKey]*corev1.Secret, defaultNamespace string) (*Peer, []Problem) {
	ps := &problems{ref: ObjectRef{Kind: "BGPPeer", Name: o.Name}}
	s := o.Spec
	p := &Peer{Name: o.Name, Port: DefaultPeerPort, EBGPMultihop: 1, ConnectRetryTime: DefaultConnectRetryTime}

	if a, err := parseAddr(s.PeerAddress); err != nil {
		ps.reject("spec.peerAddress", "%v", err)
	} else {
		p.Address = a
	}
	p.ASN = asn(ps, "spec.peerASN", s.PeerASN)
	p.LocalASN = asn(ps, "spec.localASN", s.LocalASN)
	if s.PeerPort != 0 {
		if s.PeerPort < 1 || s.PeerPort > 65535 {
			ps.reject("spec.peerPort", "must be between 1 and 65535, got %d", s.PeerPort)
		}
		p.Port = uint16(s.PeerPort)
	}
	if s.SourceAddress != "" {
		if a, err := parseAddr(s.SourceAddress); err != nil {
			ps.reject("spec.sourceAddress", "%v", err)
		} else if p.Address.IsValid() && a.BitLen() != p.Address.BitLen() {
			ps.reject("spec.sourceAddress", "%s is not of the family of peerAddress %s", a, p.Address)
		} else {
			p.SourceAddress = a
		}
	}
	if s.RouterID != "" {
		if a, err := parseAddr(s.RouterID); err != nil || !a.Is4() {
			ps.reject("spec.routerID", "%q is not an IPv4 address", s.RouterID)
		} else {
			p.RouterID = a
		}
	}
	p.HoldTime = duration(s.HoldTime, DefaultHoldTime)
	if p.HoldTime != 0 && p.HoldTime < 3*time.Second || p.HoldTime > 65535*time.Second {
		ps.reject("spec.holdTime", "must be 0 (no keepalives) or between 3s and 65535s, got %s", p.HoldTime)
	}
	p.KeepaliveTime = duration(s.KeepaliveTime, p.HoldTime/3)
	if p.HoldTime != 0 && p.KeepaliveTime >= p.HoldTime {
		ps.reject("spec.keepaliveTime", "%s must be less than holdTime %s", p.KeepaliveTime, p.HoldTime)
	}
	if p.KeepaliveTime < 0 {
		ps.reject("spec.keepaliveTime", "must not be negative")
	}
	p.ConnectRetryTime = duration(s.ConnectRetryTime, DefaultConnectRetryTime)
	if p.ConnectRetryTime < time.Second {
		ps.reject("spec.connectRetryTime", "must be at least 1s, got %s", p.ConnectRetryTime)
	}
	p.Passive = s.Passive
	if s.EBGPMultihop != 0 {
		if s.EBGPMultihop < 1 || s.EBGPMultihop > 255 {
			ps.reject("spec.ebgpMultihop", "must be between 1 and 255, got %d", s.EBGPMultihop)
		}
		p.EBGPMultihop = uint8(s.EBGPMultihop)
	}
	if ref := s.PasswordSecretRef; ref != nil {
		ns := ref.Namespace
		if ns == "" {
			ns = defaultNamespace
		}
		sec, ok := secrets[secretKey{ns, ref.Name}]
		switch {
		case !ok:
			ps.reject("spec.passwordSecretRef", "Secret %s/%s not found", ns, ref.Name)
		case len(sec.Data["password"]) == 0 && sec.StringData["password"] == "":
			ps.reject("spec.passwordSecretRef", "Secret %s/%s has no \"password\" key", ns, ref.Name)
		case len(sec.Data["password"]) > 0:
			p.Password = string(sec.Data["password"])
		default:
			p.Password = sec.StringData["password"]
		}
	}
	if gr := s.GracefulRestart; gr != nil && gr.Enabled {
		p.GracefulRestart = true
		p.RestartTime = duration(gr.RestartTime, DefaultRestartTime)
		if p.RestartTime < time.Second || p.RestartTime > 4095*time.Second {
			ps.reject("spec.gracefulRestart.restartTime", "must be between 1s and 4095s, got %s", p.RestartTime)
		}
	}
	// By default a session carries its own family: IPv4 prefixes over an IPv4 session, IPv6
	// over IPv6 (as MetalLB does). Carrying the other family needs a next hop of that family,
	// which the peer must accept (RFC 8950 for IPv4 over IPv6): ask for it with families.
	p.Families = []v1alpha1.Family{v1alpha1.FamilyIPv4Unicast}
	if p.Address.Is6() {
		p.Families = []v1alpha1.Family{v1alpha1.FamilyIPv6Unicast}
	}
	if len(s.Families) > 0 {
		p.Families = nil
		for i, f := range s.Families {
			if f != v1alpha1.FamilyIPv4Unicast && f != v1alpha1.FamilyIPv6Unicast {
				ps.reject(fmt.Sprintf("spec.families[%d]", i), "unknown family %q (want ipv4-unicast or ipv6-unicast)", f)
				continue
			}
			p.Families = append(p.Families, f)
		}
	}
	p.NodeSelector = selector(ps, "spec.nodeSelector", s.NodeSelector)
	if ps.rejected() {
		return nil, ps.list
	}
	return p, ps.list
}

func asn(ps *problems, field string, v int64) uint32 {
	if v < 1 || v > maxASN {
		ps.reject(field, "must be between 1 and %d, got %d", int64(maxASN), v)
		return 0
	}
	return uint32(v)
}

func duration(d *metav1.Duration, def time.Duration) time.Duration {
	if d == nil {
		return def
	}
	return d.Duration
}

// resolvePeerConflicts keeps the oldest of several peers with the same address and port: one
// node cannot hold two sessions to the same router endpoint. Likewise for passive peers
// listening on the same local address and port.
func resolvePeerConflicts(peers []*Peer) ([]*Peer, []Problem) {
	type endpoint struct {
		addr netip.Addr
		port uint16
	}
	seen, listening := map[endpoint]string{}, map[endpoint]string{}
	var kept []*Peer
	var list []Problem
	for _, p := range peers {
		ep := endpoint{p.Address, p.Port}
		if older, dup := seen[ep]; dup {
			list = append(list, Problem{
				Object: ObjectRef{Kind: "BGPPeer", Name: p.Name}, Field: "spec.peerAddress",
				Message:  fmt.Sprintf("%s port %d is already the address of older BGPPeer %s", p.Address, p.Port, older),
				Rejected: true, Conflict: true,
			})
			continue
		}
		var listen endpoint
		if p.Passive {
			listen = endpoint{p.ListenAddress(), ListenPort}
			if older, dup := listening[listen]; dup {
				list = append(list, Problem{
					Object: ObjectRef{Kind: "BGPPeer", Name: p.Name}, Field: "spec.passive",
					Message: fmt.Sprintf("older passive BGPPeer %s already listens on %s: give one of them another sourceAddress",
						older, netip.AddrPortFrom(listen.addr, listen.port)),
					Rejected: true, Conflict: true,
				})
				continue
			}
			listening[listen] = p.Name
		}
		seen[ep] = p.Name
		kept = append(kept, p)
	}
	return kept, list
}

// ListenAddress is the local address a passive peer's session is accepted on: its
// SourceAddress, else the unspecified address of its family.
func (p *Peer) ListenAddress() netip.Addr {
	switch {
	case p.SourceAddress.IsValid():
		return p.SourceAddress
	case p.Address.Is6():
		return netip.IPv6Unspecified()
	}
	return netip.IPv4Unspecified()
}
