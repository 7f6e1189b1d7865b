package model

import (
	"math/rand"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sluice-lb/sluice/api/v1alpha1"
)

func meta(name string, age int) metav1.ObjectMeta {
	return metav1.ObjectMeta{Name: name, CreationTimestamp: metav1.NewTime(time.Unix(1700000000, 0).Add(time.Duration(age) * time.Minute))}
}

func pool(name string, age int, blocks ...v1alpha1.IPBlock) *v1alpha1.IPPool {
	return &v1alpha1.IPPool{ObjectMeta: meta(name, age), Spec: v1alpha1.IPPoolSpec{Blocks: blocks}}
}

func cidr(c string) v1alpha1.IPBlock       { return v1alpha1.IPBlock{CIDR: c} }
func rng(a, b string) v1alpha1.IPBlock     { return v1alpha1.IPBlock{Start: a, Stop: b} }
func dur(d time.Duration) *metav1.Duration { return &metav1.Duration{Duration: d} }
func ptr[T any](v T) *T                    { return &v }
func peerSpec() v1alpha1.BGPPeerSpec {
	return v1alpha1.BGPPeerSpec{PeerAddress: "192.0.2.1", PeerASN: 64512, LocalASN: 64513}
}
func peer(name string, s v1alpha1.BGPPeerSpec) *v1alpha1.BGPPeer {
	return &v1alpha1.BGPPeer{ObjectMeta: meta(name, 0), Spec: s}
}

// TestBuildRejectsBadObjects: each bad object yields a Problem naming it and the field, and a
// good pool next to it survives untouched.
func TestBuildRejectsBadObjects(t *testing.T) {
	withPeer := func(f func(*v1alpha1.BGPPeerSpec)) Objects {
		s := peerSpec()
		f(&s)
		return Objects{Peers: []*v1alpha1.BGPPeer{peer("bad", s)}}
	}
	cases := []struct {
		name     string
		in       Objects
		kind     string
		field    string
		message  string
		rejected bool
	}{
		{"not a cidr", Objects{Pools: []*v1alpha1.IPPool{pool("bad", 1, cidr("203.0.113.0/33"))}}, "IPPool", "spec.blocks[0]", "is not a CIDR", true},
		{"host bits", Objects{Pools: []*v1alpha1.IPPool{pool("bad", 1, cidr("203.0.113.1/24"))}}, "IPPool", "spec.blocks[0]", "host bits set (did you mean 203.0.113.0/24?)", true},
		{"cidr and range", Objects{Pools: []*v1alpha1.IPPool{pool("bad", 1, v1alpha1.IPBlock{CIDR: "203.0.113.0/28", Start: "203.0.113.1", Stop: "203.0.113.2"})}}, "IPPool", "spec.blocks[0]", "either cidr or start/stop", true},
		{"empty block", Objects{Pools: []*v1alpha1.IPPool{pool("bad", 1, v1alpha1.IPBlock{})}}, "IPPool", "spec.blocks[0]", "needs cidr or start/stop", true},
		{"start only", Objects{Pools: []*v1alpha1.IPPool{pool("bad", 1, v1alpha1.IPBlock{Start: "203.0.113.1"})}}, "IPPool", "spec.blocks[0]", "go together", true},
		{"start after stop v6", Objects{Pools: []*v1alpha1.IPPool{pool("bad", 1, rng("2001:db8::9", "2001:db8::1"))}}, "IPPool", "spec.blocks[0]", "is after stop", true},
		{"mixed family", Objects{Pools: []*v1alpha1.IPPool{pool("bad", 1, rng("203.0.113.1", "2001:db8::1"))}}, "IPPool", "spec.blocks[0]", "same address family", true},
		{"no blocks", Objects{Pools: []*v1alpha1.IPPool{pool("bad", 1)}}, "IPPool", "spec.blocks", "at least one block", true},
		{"self overlap", Objects{Pools: []*v1alpha1.IPPool{pool("bad", 1, cidr("203.0.113.0/28"), rng("203.0.113.10", "203.0.113.20"))}}, "IPPool", "spec.blocks[1]", "overlaps spec.blocks[0]", true},
		{"bad selector", Objects{Pools: []*v1alpha1.IPPool{{ObjectMeta: meta("bad", 1), Spec: v1alpha1.IPPoolSpec{Blocks: []v1alpha1.IPBlock{cidr("203.0.113.0/28")}, ServiceSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "a", Operator: "Bogus"}}}}}}}, "IPPool", "spec.serviceSelector", "invalid label selector", true},
		{"peer asn 0", withPeer(func(s *v1alpha1.BGPPeerSpec) { s.PeerASN = 0 }), "BGPPeer", "spec.peerASN", "between 1 and 4294967295", true},
		{"local asn too big", withPeer(func(s *v1alpha1.BGPPeerSpec) { s.LocalASN = 1 << 32 }), "BGPPeer", "spec.localASN", "between 1 and 4294967295", true},
		{"peer address", withPeer(func(s *v1alpha1.BGPPeerSpec) { s.PeerAddress = "router.example" }), "BGPPeer", "spec.peerAddress", "not an IP address", true},
		{"hold 2s", withPeer(func(s *v1alpha1.BGPPeerSpec) { s.HoldTime = dur(2 * time.Second) }), "BGPPeer", "spec.holdTime", "between 3s and 65535s", true},
		{"hold too long", withPeer(func(s *v1alpha1.BGPPeerSpec) { s.HoldTime = dur(65536 * time.Second) }), "BGPPeer", "spec.holdTime", "between 3s and 65535s", true},
		{"keepalive >= hold", withPeer(func(s *v1alpha1.BGPPeerSpec) {
			s.HoldTime = dur(9 * time.Second)
			s.KeepaliveTime = dur(9 * time.Second)
		}), "BGPPeer", "spec.keepaliveTime", "less than holdTime", true},
		{"router id v6", withPeer(func(s *v1alpha1.BGPPeerSpec) { s.RouterID = "2001:db8::1" }), "BGPPeer", "spec.routerID", "not an IPv4 address", true},
		{"source family", withPeer(func(s *v1alpha1.BGPPeerSpec) { s.SourceAddress = "2001:db8::1" }), "BGPPeer", "spec.sourceAddress", "not of the family", true},
		{"multihop", withPeer(func(s *v1alpha1.BGPPeerSpec) { s.EBGPMultihop = 300 }), "BGPPeer", "spec.ebgpMultihop", "between 1 and 255", true},
		{"family", withPeer(func(s *v1alpha1.BGPPeerSpec) { s.Families = []v1alpha1.Family{"l2vpn-evpn"} }), "BGPPeer", "spec.families[0]", "unknown family", true},
		{"missing secret", withPeer(func(s *v1alpha1.BGPPeerSpec) { s.PasswordSecretRef = &v1alpha1.SecretReference{Name: "nope"} }), "BGPPeer", "spec.passwordSecretRef", "Secret sluice-system/nope not found", true},
		{"restart time", withPeer(func(s *v1alpha1.BGPPeerSpec) {
			s.GracefulRestart = &v1alpha1.GracefulRestart{Enabled: true, RestartTime: dur(5000 * time.Second)}
		}), "BGPPeer", "spec.gracefulRestart.restartTime", "between 1s and 4095s", true},
		{"address type", Objects{BGPAdverts: []*v1alpha1.BGPAdvertisement{{ObjectMeta: meta("bad", 0), Spec: v1alpha1.BGPAdvertisementSpec{AddressTypes: []v1alpha1.AddressType{"NodeIP"}}}}}, "BGPAdvertisement", "spec.addressTypes[0]", "unknown address type", true},
		{"community", Objects{BGPAdverts: []*v1alpha1.BGPAdvertisement{{ObjectMeta: meta("bad", 0), Spec: v1alpha1.BGPAdvertisementSpec{Communities: []v1alpha1.Community{"70000:1"}}}}}, "BGPAdvertisement", "spec.communities[0]", "16-bit number", true},
		{"aggregation", Objects{BGPAdverts: []*v1alpha1.BGPAdvertisement{{ObjectMeta: meta("bad", 0), Spec: v1alpha1.BGPAdvertisementSpec{AggregationLength: ptr[int32](33)}}}}, "BGPAdvertisement", "spec.aggregationLength", "between 0 and 32", true},
		{"unknown pool is a warning", Objects{BGPAdverts: []*v1alpha1.BGPAdvertisement{{ObjectMeta: meta("bad", 0), Spec: v1alpha1.BGPAdvertisementSpec{Pools: []string{"ghost"}}}}}, "BGPAdvertisement", "spec.pools[0]", `IPPool "ghost" does not exist`, false},
		{"unknown peer is a warning", Objects{BGPAdverts: []*v1alpha1.BGPAdvertisement{{ObjectMeta: meta("bad", 0), Spec: v1alpha1.BGPAdvertisementSpec{Peers: []string{"ghost"}}}}}, "BGPAdvertisement", "spec.peers[0]", `BGPPeer "ghost" does not exist`, false},
		{"interface", Objects{L2Adverts: []*v1alpha1.L2Advertisement{{ObjectMeta: meta("bad", 0), Spec: v1alpha1.L2AdvertisementSpec{Interfaces: []string{"eth0/1"}}}}}, "L2Advertisement", "spec.interfaces[0]", "not an interface name", true},
	}
	good := pool("good", 0, cidr("198.51.100.0/24"))
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			in := tc.in
			in.Pools = append([]*v1alpha1.IPPool{good}, in.Pools...)
			m, problems := Build(in, Options{Namespace: "sluice-system"})
			if len(problems) != 1 {
				t.Fatalf("want exactly one problem, got %d: %v", len(problems), problems)
			}
			p := problems[0]
			if p.Object.Kind != tc.kind || p.Object.Name != "bad" || p.Field != tc.field || p.Rejected != tc.rejected || !strings.Contains(p.Message, tc.message) {
				t.Fatalf("problem = %+v\nwant kind %s name bad field %s rejected %v message containing %q", p, tc.kind, tc.field, tc.rejected, tc.message)
			}
			if !strings.Contains(p.Error(), tc.kind+" bad") || !strings.Contains(p.Error(), tc.field) {
				t.Fatalf("Error() = %q does not name the object and field", p.Error())
			}
			if m.Pool("good") == nil || len(m.Pools) != 1+boolInt(tc.kind == "IPPool" && !tc.rejected) {
				t.Fatalf("the good pool must survive alone, got %d pools", len(m.Pools))
			}
			rejectedKept := tc.rejected && (len(m.Peers) > 0 || len(m.BGPAdverts) > 0 || len(m.L2Adverts) > 0)
			warnedDropped := !tc.rejected && tc.kind == "BGPAdvertisement" && len(m.BGPAdverts) != 1
			if rejectedKept || warnedDropped {
				t.Fatalf("rejected=%v but model has peers=%d bgp=%d l2=%d", tc.rejected, len(m.Peers), len(m.BGPAdverts), len(m.L2Adverts))
			}
		})
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func TestBuildDefaultsAndSecrets(t *testing.T) {
	s := peerSpec()
	s.PasswordSecretRef = &v1alpha1.SecretReference{Name: "md5"}
	s.GracefulRestart = &v1alpha1.GracefulRestart{Enabled: true}
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "sluice-system", Name: "md5"}, Data: map[string][]byte{"password": []byte("s3cret")}}
	m, problems := Build(Objects{Peers: []*v1alpha1.BGPPeer{peer("r1", s)}, Secrets: []*corev1.Secret{secret},
		BGPAdverts: []*v1alpha1.BGPAdvertisement{{ObjectMeta: meta("adv", 0)}},
		Pools:      []*v1alpha1.IPPool{pool("p", 0, cidr("203.0.113.0/28"))}}, Options{Namespace: "sluice-system"})
	if len(problems) != 0 {
		t.Fatalf("unexpected problems: %v", problems)
	}
	p := m.Peers[0]
	if p.Password != "s3cret" || p.Port != 179 || p.HoldTime != 90*time.Second || p.KeepaliveTime != 30*time.Second ||
		p.ConnectRetryTime != 120*time.Second || p.EBGPMultihop != 1 || !p.GracefulRestart || p.RestartTime != 120*time.Second || !slices.Equal(p.Families, []v1alpha1.Family{v1alpha1.FamilyIPv4Unicast}) {
		t.Fatalf("defaults not applied: %+v", p)
	}
	a := m.BGPAdverts[0]
	if a.AggregationLength != 32 || a.AggregationLengthV6 != 128 || len(a.AddressTypes) != 1 || a.AddressTypes[0] != v1alpha1.AddressLoadBalancerIP || !a.Pools.Matches(m.Pools[0]) {
		t.Fatalf("advert defaults not applied: %+v", a)
	}
	if !m.Pools[0].AutoAssign {
		t.Fatal("autoAssign must default to true")
	}
}

// TestPoolConflictOlderWins: of two overlapping pools the older keeps its addresses, whatever
// the input order, and the newer is rejected naming the older.
func TestPoolConflictOlderWins(t *testing.T) {
	older := pool("older", 1, cidr("203.0.113.0/24"))
	newer := pool("newer", 2, rng("203.0.113.200", "203.0.114.10"))
	for _, in := range [][]*v1alpha1.IPPool{{older, newer}, {newer, older}} {
		m, problems := Build(Objects{Pools: in}, Options{})
		if len(m.Pools) != 1 || m.Pools[0].Name != "older" {
			t.Fatalf("want only the older pool, got %v", m.Pools)
		}
		if len(problems) != 1 || problems[0].Object.Name != "newer" || !strings.Contains(problems[0].Message, "older IPPool older") {
			t.Fatalf("problems = %v", problems)
		}
	}
	// A peer on the same endpoint as an older one is rejected the same way.
	m, problems := Build(Objects{Peers: []*v1alpha1.BGPPeer{
		{ObjectMeta: meta("b", 2), Spec: peerSpec()}, {ObjectMeta: meta("a", 1), Spec: peerSpec()},
	}}, Options{})
	if len(m.Peers) != 1 || m.Peers[0].Name != "a" || len(problems) != 1 || !strings.Contains(problems[0].Message, "older BGPPeer a") {
		t.Fatalf("peers = %v problems = %v", m.Peers, problems)
	}

	// Passive peers of one family listen on one socket: the newer is rejected, unless it
	// listens on a sourceAddress of its own; an IPv6 one listens on [::]:179 beside them.
	passive := func(name string, age int, addr, source string) *v1alpha1.BGPPeer {
		s := peerSpec()
		s.PeerAddress, s.SourceAddress, s.Passive = addr, source, true
		return &v1alpha1.BGPPeer{ObjectMeta: meta(name, age), Spec: s}
	}
	m, problems = Build(Objects{Peers: []*v1alpha1.BGPPeer{
		passive("p2", 2, "192.0.2.2", ""), passive("p1", 1, "192.0.2.1", ""),
		passive("p3", 3, "192.0.2.3", "192.0.2.100"), passive("p6", 4, "2001:db8::1", ""),
	}}, Options{})
	var names []string
	for _, p := range m.Peers {
		names = append(names, p.Name)
	}
	if !slices.Equal(names, []string{"p1", "p3", "p6"}) || len(problems) != 1 || problems[0].Object.Name != "p2" ||
		problems[0].Field != "spec.passive" || !strings.Contains(problems[0].Message, "older passive BGPPeer p1 already listens on 0.0.0.0:179") {
		t.Fatalf("passive peers = %v problems = %v", names, problems)
	}
}

// TestBuildOrderIndependent: the same objects in any order give the same model and problems.
func TestBuildOrderIndependent(t *testing.T) {
	in := Objects{
		Pools: []*v1alpha1.IPPool{
			pool("a", 3, cidr("203.0.113.0/26")), pool("b", 1, cidr("203.0.113.32/27")),
			pool("c", 2, rng("2001:db8::1", "2001:db8::ff")), pool("d", 4, cidr("198.51.100.0/24")), pool("bad", 0, cidr("x")),
		},
		Peers:      []*v1alpha1.BGPPeer{peer("p1", peerSpec()), {ObjectMeta: meta("p2", 5), Spec: peerSpec()}},
		BGPAdverts: []*v1alpha1.BGPAdvertisement{{ObjectMeta: meta("x", 0), Spec: v1alpha1.BGPAdvertisementSpec{Pools: []string{"a", "zz"}}}, {ObjectMeta: meta("y", 0)}},
		Services:   []*corev1.Service{service("ns", "s1", nil), service("ns", "s0", nil), service("other", "s0", nil)},
	}
	want, wantProblems := Build(in, Options{})
	if len(wantProblems) == 0 {
		t.Fatal("the input was meant to have problems")
	}
	r := rand.New(rand.NewSource(1))
	for i := 0; i < 50; i++ {
		shuffled := Objects{Pools: shuffle(r, in.Pools), Peers: shuffle(r, in.Peers), BGPAdverts: shuffle(r, in.BGPAdverts), Services: shuffle(r, in.Services)}
		got, gotProblems := Build(shuffled, Options{})
		if !reflect.DeepEqual(got, want) || !reflect.DeepEqual(gotProblems, wantProblems) {
			t.Fatalf("run %d: order changed the result\n got %v %v\nwant %v %v", i, got.Pools, gotProblems, want.Pools, wantProblems)
		}
	}
	if in.Pools[0].Name != "a" {
		t.Fatal("Build must not reorder its input")
	}
}

func shuffle[T any](r *rand.Rand, in []T) []T {
	out := append([]T(nil), in...)
	r.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}

// TestExternalIPsPolicy: an external IP is kept only inside an IPPool or --external-ip-cidrs
// (CVE-2020-8554); each other one is reported, and ignored, not the whole Service.
func TestExternalIPsPolicy(t *testing.T) {
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: "web"}, Spec: corev1.ServiceSpec{
		Type: corev1.ServiceTypeClusterIP, ExternalIPs: []string{"203.0.113.5", "198.18.0.7", "192.0.2.1"}}}
	m, problems := Build(Objects{Pools: []*v1alpha1.IPPool{pool("p", 1, cidr("203.0.113.0/24"))}, Services: []*corev1.Service{svc}},
		Options{ExternalIPCIDRs: []netip.Prefix{netip.MustParsePrefix("198.18.0.0/24")}})
	if len(m.Services) != 1 || !slices.Equal(m.Services[0].ExternalIPs, []netip.Addr{netip.MustParseAddr("203.0.113.5"), netip.MustParseAddr("198.18.0.7")}) {
		t.Fatalf("external IPs kept: %+v", m.Services)
	}
	if len(problems) != 1 || problems[0].Rejected || problems[0].Field != "spec.externalIPs[2]" || !strings.Contains(problems[0].Message, "192.0.2.1 is in no IPPool") {
		t.Fatalf("problems = %v", problems)
	}
}
