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
	peerASN := s.PeerASN
	switch {
	case s.PeerAddress == "" && s.Interface != "":
		c.note(Error, o, field("interface"), "not converted: Sluice has no unnumbered BGP (peering over an interface); give the router's address as peerAddress")
		return
	case s.PeerASN == 0 && s.DynamicASN == "internal" && s.MyASN != 0:
		peerASN = s.MyASN // iBGP: the peer's AS is ours
		c.note(Info, o, field("dynamicASN"), "internal: becomes peerASN %d, the local AS", s.MyASN)
	case s.PeerASN == 0 && s.DynamicASN != "":
		c.note(Error, o, field("dynamicASN"), "not converted: %q: Sluice needs the peer's AS number; set peerASN", s.DynamicASN)
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
	if s.Interface != "" {
		c.note(Warning, o, field("interface"), "ignored: Sluice peers with peerAddress %s over the route to it", addr)
	}
	port := s.PeerPort
	if port == 0 {
		port = 179
	}
	key := netip.AddrPortFrom(addr, port)
	if other, ok := c.peerAddrs[key]; ok {
		c.note(Error, o, field("peerAddress"), "not converted: %s is already the address of BGPPeer %s; Sluice takes one BGPPeer per router address: merge their node selectors into that one", key, other)
		return
	}
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
	if c.taken["BGPPeer//"+name] != "" {
		c.note(Error, o, "metadata.name", "not converted: BGPPeer %q is already made from %s", name, c.taken["BGPPeer//"+name])
		return
	}
	spec := v1alpha1.BGPPeerSpec{PeerAddress: addr.String(), PeerASN: int64(peerASN), LocalASN: int64(s.MyASN),
		PeerPort: int32(s.PeerPort), SourceAddress: s.SourceAddress, RouterID: s.RouterID,
		HoldTime: s.HoldTime, KeepaliveTime: s.KeepaliveTime, ConnectRetryTime: s.ConnectTime, NodeSelector: one}
	c.timers(o, field, &spec)
	if s.EBGPMultiHop {
		spec.EBGPMultihop = 255
		c.note(Info, o, field("ebgpMultiHop"), "becomes ebgpMultihop: 255 (any number of hops, as FRR's ebgp-multihop)")
	}
	if s.EnableGracefulRestart {
		spec.GracefulRestart = &v1alpha1.GracefulRestart{Enabled: true}
	}
	// A session carries its own family in both (the default); dualStackAddressFamily asks
	// for both on one session.
	if s.DualStackAddressFamily {
		spec.Families = []v1alpha1.Family{v1alpha1.FamilyIPv4Unicast, v1alpha1.FamilyIPv6Unicast}
	}
	if s.BFDProfile != "" {
		c.note(Warning, o, field("bfdProfile"), "Sluice has no BFD: the session is not BFD-protected (BFDProfile %q); failover waits for the hold time, so set a short holdTime", s.BFDProfile)
	}
	if s.VRF != "" {
		c.note(Warning, o, field("vrf"), "Sluice peers from the default VRF only: the session to %s is kept but made outside VRF %q; check the route to the router", addr, s.VRF)
	}
	ref, ok := c.password(o, field, name, s)
	if !ok {
		return
	}
	spec.PasswordSecretRef = ref
	if !c.add(o, &v1alpha1.BGPPeer{ObjectMeta: meta(name, labels), Spec: spec}) {
		return
	}
	c.peerAddrs[key] = name
	mlbName := name
	if o.spec != nil {
		mlbName = o.Name // advertisements name MetalLB's peer
	}
	c.peers[mlbName] = name
}

// timers makes MetalLB's timers valid for Sluice as MetalLB reads them: a keepalive alone
// means a hold time three times as long; a keepalive as long as the hold time becomes a third
// of it (Sluice wants it shorter).
func (c *converter) timers(o *Object, field func(string) string, spec *v1alpha1.BGPPeerSpec) {
	ka, hold := spec.KeepaliveTime, spec.HoldTime
	switch {
	case ka != nil && hold == nil && ka.Duration > 0:
		spec.HoldTime = &metav1.Duration{Duration: 3 * ka.Duration}
		c.note(Info, o, field("holdTime"), "unset with keepaliveTime %s: becomes %s, three times it, as MetalLB does", ka.Duration, spec.HoldTime.Duration)
	case ka != nil && hold != nil && hold.Duration > 0 && ka.Duration >= hold.Duration:
		spec.KeepaliveTime = &metav1.Duration{Duration: hold.Duration / 3}
		c.note(Warning, o, field("keepaliveTime"), "%s is not shorter than holdTime %s: becomes %s, a third of it", ka.Duration, hold.Duration, spec.KeepaliveTime.Duration)
	}
}

// password returns the Secret reference of a peer's TCP-MD5 password: a clear-text password
// becomes a Secret "<peer>-bgp-password", a referenced Secret is copied into the agent's
// namespace when the input has it. ok is false when the peer must not be converted: its
// password would be lost or another's.
func (c *converter) password(o *Object, field func(string) string, name string, s *bgpPeerSpec) (ref *v1alpha1.SecretReference, ok bool) {
	src := s.PasswordSecret
	if src != nil && src.Name == "" {
		src = nil
	}
	switch {
	case src != nil && s.Password != "":
		c.note(Warning, o, field("password"), "both password and passwordSecret are set: passwordSecret is used, as MetalLB refuses both")
	case s.Password != "":
		sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name + "-bgp-password", Namespace: c.opts.Namespace},
			Type: corev1.SecretTypeBasicAuth, StringData: map[string]string{"password": s.Password}}
		if !c.add(o, sec) {
			return nil, false
		}
		c.secretFrom[sec.Name] = "generated"
		c.note(Info, o, field("password"), "moved into Secret %s/%s (key \"password\"): keep that file out of version control", sec.Namespace, sec.Name)
		return &v1alpha1.SecretReference{Name: sec.Name}, true
	case src == nil:
		return nil, true
	}
	ns := src.Namespace
	if ns == "" {
		ns = o.Namespace
	}
	if ns == c.opts.Namespace {
		if c.secrets[ns+"/"+src.Name] == nil {
			c.toCopy[src.Name] = true // already where the agent reads it, but not in the input
		}
		return &v1alpha1.SecretReference{Name: src.Name}, true
	}
	from := ns + "/" + src.Name
	switch was, ok := c.secretFrom[src.Name]; {
	case ok && was == from:
		return &v1alpha1.SecretReference{Name: src.Name}, true // copied for another peer
	case ok:
		c.note(Error, o, field("passwordSecret"), "not converted: Secret %s/%s would be the copy of %s and of %s; rename one", c.opts.Namespace, src.Name, from, was)
		return nil, false
	}
	orig := c.secrets[from]
	if orig == nil {
		c.note(Warning, o, field("passwordSecret"), "Secret %s is not in the input: copy it into %s (key \"password\") before the agent starts, since the agent reads Secrets only there", from, c.opts.Namespace)
		c.toCopy[src.Name] = true
		return &v1alpha1.SecretReference{Name: src.Name}, true
	}
	cp := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: src.Name, Namespace: c.opts.Namespace},
		Type: orig.Type, Data: orig.Data, StringData: orig.StringData}
	if !c.add(o, cp) {
		return nil, false
	}
	c.secretFrom[src.Name] = from
	c.note(Info, o, field("passwordSecret"), "Secret %s copied into %s", from, c.opts.Namespace)
	return &v1alpha1.SecretReference{Name: src.Name}, true
}
