package migrate

import (
	"fmt"
	"net/netip"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sluice-lb/sluice/api/v1alpha1"
)

// bgpPeer converts a BGPPeer (v1beta1 or v1beta2).
func (c *converter) bgpPeer(o *Object) {
	c.peer(o, "spec.", o.Name, o.spec.(*bgpPeerSpec), o.Labels)
}

// legacyPeers converts the peers of a legacy ConfigMap, naming each after its address.
func (c *converter) legacyPeers(o *Object) {
	for i, lp := range o.config.Peers {
		field := fmt.Sprintf("data.config.peers[%d].", i)
		s := &bgpPeerSpec{MyASN: lp.MyASN, PeerASN: lp.PeerASN, PeerAddress: lp.PeerAddress,
			SourceAddress: lp.SourceAddress, PeerPort: lp.PeerPort, RouterID: lp.RouterID,
			Password: lp.Password, BFDProfile: lp.BFDProfile, EBGPMultiHop: lp.EBGPMultiHop}
		for _, d := range []struct {
			name string
			in   string
			out  **metav1.Duration
		}{{"hold-time", lp.HoldTime, &s.HoldTime}, {"keepalive-time", lp.KeepaliveTime, &s.KeepaliveTime}} {
			if d.in == "" {
				continue
			}
			v, err := time.ParseDuration(d.in)
			if err != nil {
				c.note(Error, o, field+d.name, "left out: %q is not a duration", shorten(d.in))
				continue
			}
			*d.out = &metav1.Duration{Duration: v}
		}
		sels, err := legacySelectors(lp.NodeSelectors)
		if err != nil {
			c.note(Error, o, field+"node-selectors", "peer %s not converted: %v", lp.PeerAddress, err)
			continue
		}
		s.NodeSelectors = sels
		name := "peer-" + strings.NewReplacer(".", "-", ":", "-").Replace(strings.ToLower(lp.PeerAddress))
		for n := 2; c.taken["BGPPeer//"+name] != ""; n++ {
			name = fmt.Sprintf("peer-%s-%d", strings.NewReplacer(".", "-", ":", "-").Replace(strings.ToLower(lp.PeerAddress)), n)
		}
		c.peer(o, field, name, s, nil)
	}
}

// legacyNames are the legacy ConfigMap's spellings of the peer fields notes name.
var legacyNames = map[string]string{"interface": "interface", "dynamicASN": "dynamic-asn", "peerASN": "peer-asn",
	"myASN": "my-asn", "peerAddress": "peer-address", "ebgpMultiHop": "ebgp-multihop", "bfdProfile": "bfd-profile",
	"vrf": "vrf", "nodeSelectors": "node-selectors", "password": "password", "passwordSecret": "password-secret"}

// peer converts one peer named name; prefix prefixes its fields in notes.
func (c *converter) peer(o *Object, prefix, name string, s *bgpPeerSpec, labels map[string]string) {
	field := func(f string) string {
		if o.config != nil {
			f = legacyNames[f]
		}
		return prefix + f
	}
	switch {
	case s.PeerAddress == "" && s.Interface != "":
		c.note(Error, o, field("interface"), "not converted: Sluice has no unnumbered BGP (peering over an interface); give the router's address as peerAddress")
		return
	case s.PeerASN == 0 && s.DynamicASN != "":
		c.note(Error, o, field("dynamicASN"), "not converted: Sluice needs the peer's AS number; set peerASN")
		return
	case s.PeerASN == 0:
		c.note(Error, o, field("peerASN"), "not converted: no peer AS number")
		return
	case s.MyASN == 0:
		c.note(Error, o, field("myASN"), "not converted: no local AS number")
		return
	}
	addr, err := netip.ParseAddr(s.PeerAddress)
	if err != nil {
		c.note(Error, o, field("peerAddress"), "not converted: %q is not an IP address", shorten(s.PeerAddress))
		return
	}
	spec := v1alpha1.BGPPeerSpec{PeerAddress: addr.String(), PeerASN: int64(s.PeerASN), LocalASN: int64(s.MyASN),
		PeerPort: int32(s.PeerPort), SourceAddress: s.SourceAddress, RouterID: s.RouterID,
		HoldTime: s.HoldTime, KeepaliveTime: s.KeepaliveTime, ConnectRetryTime: s.ConnectTime}
	if s.EBGPMultiHop {
		spec.EBGPMultihop = 255
		c.note(Info, o, field("ebgpMultiHop"), "becomes ebgpMultihop: 255 (any number of hops, as FRR's ebgp-multihop)")
	}
	if s.EnableGracefulRestart {
		spec.GracefulRestart = &v1alpha1.GracefulRestart{Enabled: true}
	}
	if !s.DualStackAddressFamily {
		// A MetalLB session carries its own family unless told otherwise; Sluice's carries both.
		spec.Families = []v1alpha1.Family{v1alpha1.FamilyIPv4Unicast}
		if addr.Is6() && !addr.Is4In6() {
			spec.Families = []v1alpha1.Family{v1alpha1.FamilyIPv6Unicast}
		}
	}
	if s.BFDProfile != "" {
		c.note(Warning, o, field("bfdProfile"), "Sluice has no BFD: the session is not BFD-protected (BFDProfile %q); failover waits for the hold time, so set a short holdTime", s.BFDProfile)
	}
	if s.VRF != "" {
		c.note(Warning, o, field("vrf"), "Sluice peers from the default VRF only: the session to %s is kept but made outside VRF %q; check the route to the router", addr, s.VRF)
	}
	spec.PasswordSecretRef = c.password(o, field, name, s)

	one, alts, err := anyOf(s.NodeSelectors)
	switch {
	case err != nil:
		c.note(Error, o, field("nodeSelectors"), "not converted: %v", err)
		return
	case alts != nil:
		// Two BGPPeers of one address are one too many for Sluice, whatever their nodes.
		c.note(Error, o, field("nodeSelectors"), "not converted: a BGPPeer takes one node selector and these %d cannot be merged into one; label the nodes they match alike and select that label", len(s.NodeSelectors))
		return
	}
	p := &v1alpha1.BGPPeer{ObjectMeta: meta(name, labels), Spec: spec}
	p.Spec.NodeSelector = one
	if !c.add(o, p) {
		return
	}
	key := name
	if o.spec != nil {
		key = o.Name // advertisements name MetalLB's peer
	}
	c.peers[key] = name
}

// password returns the Secret reference of a peer's TCP-MD5 password: a clear-text password
// becomes a Secret "<peer>-bgp-password", a referenced Secret is copied into the agent's
// namespace when the input has it.
func (c *converter) password(o *Object, field func(string) string, name string, s *bgpPeerSpec) *v1alpha1.SecretReference {
	ref := s.PasswordSecret
	if ref != nil && ref.Name == "" {
		ref = nil
	}
	switch {
	case ref != nil && s.Password != "":
		c.note(Warning, o, field("password"), "both password and passwordSecret are set: passwordSecret is used, as MetalLB refuses both")
	case s.Password != "":
		sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name + "-bgp-password", Namespace: c.opts.Namespace},
			Type: corev1.SecretTypeBasicAuth, StringData: map[string]string{"password": s.Password}}
		if !c.add(o, sec) {
			return nil
		}
		c.note(Info, o, field("password"), "moved into Secret %s/%s (key \"password\"): keep that file out of version control", sec.Namespace, sec.Name)
		return &v1alpha1.SecretReference{Name: sec.Name}
	case ref == nil:
		return nil
	}
	ns := ref.Namespace
	if ns == "" {
		ns = o.Namespace
	}
	if ns == c.opts.Namespace {
		return &v1alpha1.SecretReference{Name: ref.Name}
	}
	orig := c.secrets[ns+"/"+ref.Name]
	if orig == nil {
		c.note(Warning, o, field("passwordSecret"), "Secret %s/%s is not in the input: copy it into %s (key \"password\") before the agent starts, since the agent reads Secrets only there", ns, ref.Name, c.opts.Namespace)
		return &v1alpha1.SecretReference{Name: ref.Name}
	}
	if c.taken["Secret/"+c.opts.Namespace+"/"+ref.Name] == "" {
		cp := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: ref.Name, Namespace: c.opts.Namespace},
			Type: orig.Type, Data: orig.Data, StringData: orig.StringData}
		if !c.add(o, cp) {
			return nil
		}
		c.note(Info, o, field("passwordSecret"), "Secret %s/%s copied into %s", ns, ref.Name, c.opts.Namespace)
	}
	return &v1alpha1.SecretReference{Name: ref.Name}
}
