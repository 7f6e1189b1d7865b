package model

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func service(ns, name string, ann map[string]string) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Annotations: ann},
		Spec: corev1.ServiceSpec{
			Type:       corev1.ServiceTypeLoadBalancer,
			ClusterIPs: []string{"10.96.0.10"},
			Ports:      []corev1.ServicePort{{Name: "http", Port: 80}},
		},
	}
}

func TestServiceAnnotationsFromMetalLBAndCilium(t *testing.T) {
	cases := []struct {
		ann          map[string]string
		lbIP         string
		wantIPs      string
		wantPool     string
		wantShare    string
		wantProblems []string
	}{
		{ann: map[string]string{"metallb.universe.tf/loadBalancerIPs": "203.0.113.5, 2001:db8::5", "metallb.universe.tf/address-pool": "prod", "metallb.universe.tf/allow-shared-ip": "k"},
			wantIPs: "203.0.113.5,2001:db8::5", wantPool: "prod", wantShare: "k"},
		{ann: map[string]string{"metallb.io/loadBalancerIPs": "203.0.113.6", "metallb.io/address-pool": "p2"}, wantIPs: "203.0.113.6", wantPool: "p2"},
		{ann: map[string]string{"lbipam.cilium.io/ips": "203.0.113.7", "lbipam.cilium.io/sharing-key": "web"}, wantIPs: "203.0.113.7", wantShare: "web"},
		{ann: map[string]string{"io.cilium/lb-ipam-ips": "203.0.113.8"}, wantIPs: "203.0.113.8"},
		{lbIP: "203.0.113.9", wantIPs: "203.0.113.9"},
		{ann: map[string]string{"sluice.dev/ips": "203.0.113.1", "metallb.io/loadBalancerIPs": "203.0.113.2"}, wantIPs: "203.0.113.1",
			wantProblems: []string{`metadata.annotations[metallb.io/loadBalancerIPs]: "203.0.113.2" disagrees with sluice.dev/ips="203.0.113.1"`}},
		{ann: map[string]string{"sluice.dev/ips": "203.0.113.1,bogus"}, lbIP: "203.0.113.3", wantIPs: "203.0.113.1",
			wantProblems: []string{`metadata.annotations: requested address ignored: "bogus" is not an IP address`, "spec.loadBalancerIP: ignored"}},
	}
	for i, tc := range cases {
		svc := service("ns", "web", tc.ann)
		svc.Spec.LoadBalancerIP = tc.lbIP
		m, problems := Build(Objects{Services: []*corev1.Service{svc}}, Options{})
		s := m.Services[0]
		var ips []string
		for _, a := range s.RequestedIPs {
			ips = append(ips, a.String())
		}
		if strings.Join(ips, ",") != tc.wantIPs || s.Pool != tc.wantPool || s.SharingKey != tc.wantShare {
			t.Errorf("case %d: ips=%v pool=%q share=%q", i, ips, s.Pool, s.SharingKey)
		}
		if len(problems) != len(tc.wantProblems) {
			t.Errorf("case %d: problems %v, want %v", i, problems, tc.wantProblems)
			continue
		}
		for j, want := range tc.wantProblems {
			if !strings.Contains(problems[j].Error(), want) || problems[j].Rejected {
				t.Errorf("case %d: problem %q does not contain %q (or rejects the Service)", i, problems[j].Error(), want)
			}
		}
	}
}

func TestServiceClassAndEndpoints(t *testing.T) {
	other := service("ns", "other", nil)
	other.Spec.LoadBalancerClass = ptr("example.com/lb")
	ours := service("ns", "web", nil)
	ours.Spec.LoadBalancerClass = ptr(LoadBalancerClass)
	ours.Spec.SessionAffinity = corev1.ServiceAffinityClientIP
	plain := service("ns", "plain", nil)
	plain.Spec.Type = corev1.ServiceTypeClusterIP
	port := func(name string, p int32) discoveryv1.EndpointPort {
		return discoveryv1.EndpointPort{Name: &name, Port: &p}
	}
	slice := func(name string, eps ...discoveryv1.Endpoint) *discoveryv1.EndpointSlice {
		return &discoveryv1.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{Namespace: "ns", Name: name, Labels: map[string]string{discoveryv1.LabelServiceName: "web"}},
			AddressType: discoveryv1.AddressTypeIPv4, Ports: []discoveryv1.EndpointPort{port("http", 8080)}, Endpoints: eps,
		}
	}
	slices := []*discoveryv1.EndpointSlice{
		slice("web-b", discoveryv1.Endpoint{Addresses: []string{"192.0.2.11"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr(false), Serving: ptr(true), Terminating: ptr(true)}, NodeName: ptr("n2")}),
		slice("web-a", discoveryv1.Endpoint{Addresses: []string{"192.0.2.10"}, NodeName: ptr("n1")}, discoveryv1.Endpoint{Addresses: []string{"192.0.2.11"}}),
	}
	m, problems := Build(Objects{Services: []*corev1.Service{other, ours, plain}, EndpointSlices: slices}, Options{})
	if len(problems) != 0 {
		t.Fatalf("problems: %v", problems)
	}
	byName := map[string]*Service{}
	for _, s := range m.Services {
		byName[s.Key.Name] = s
	}
	if byName["other"].Ours || !byName["web"].Ours || byName["plain"].Ours {
		t.Fatalf("class: other=%v web=%v plain=%v", byName["other"].Ours, byName["web"].Ours, byName["plain"].Ours)
	}
	web := byName["web"]
	if web.AffinityTimeout != 3*time.Hour {
		t.Fatalf("ClientIP affinity must default to 10800s, got %s", web.AffinityTimeout)
	}
	want := []Endpoint{
		{Addr: netip.MustParseAddr("192.0.2.10"), Node: "n1", Ready: true, Serving: true, Ports: map[string]uint16{"http": 8080}},
		{Addr: netip.MustParseAddr("192.0.2.11"), Ready: true, Serving: true, Ports: map[string]uint16{"http": 8080}},
	}
	if len(web.Endpoints) != 2 || web.Endpoints[0].Addr != want[0].Addr || web.Endpoints[0].Node != "n1" || !web.Endpoints[0].Ready ||
		web.Endpoints[1].Addr != want[1].Addr || web.Endpoints[1].Terminating || web.Endpoints[0].Ports["http"] != 8080 {
		t.Fatalf("endpoints = %+v, want %+v (slice web-a listed first wins for 192.0.2.11)", web.Endpoints, want)
	}
}

func TestRangeOfPrefix(t *testing.T) {
	cases := map[string]string{
		"203.0.113.0/24": "203.0.113.255", "203.0.113.8/29": "203.0.113.15", "203.0.113.5/32": "203.0.113.5",
		"2001:db8::/64": "2001:db8::ffff:ffff:ffff:ffff", "2001:db8::/127": "2001:db8::1", "0.0.0.0/0": "255.255.255.255",
	}
	for p, last := range cases {
		r := RangeOfPrefix(netip.MustParsePrefix(p))
		if r.Last.String() != last || r.String() != p {
			t.Errorf("%s: last %s string %s", p, r.Last, r)
		}
	}
	r := Range{First: netip.MustParseAddr("203.0.113.10"), Last: netip.MustParseAddr("203.0.113.20")}
	if r.String() != "203.0.113.10-203.0.113.20" || r.Size().Int64() != 11 || !r.Contains(netip.MustParseAddr("203.0.113.20")) || r.Contains(netip.MustParseAddr("203.0.113.21")) {
		t.Fatalf("range %s size %s", r, r.Size())
	}
	if RangeOfPrefix(netip.MustParsePrefix("2001:db8::/64")).Size().String() != "18446744073709551616" {
		t.Fatal("IPv6 /64 size")
	}
}

func TestParseCommunity(t *testing.T) {
	good := map[string]string{"65000:100": "65000:100", "0:0": "0:0", "4200000000:1:2": "4200000000:1:2", "no-export": "65535:65281", "blackhole": "65535:666"}
	for in, want := range good {
		c, err := ParseCommunity(in)
		if err != nil || c.String() != want {
			t.Errorf("%s: %v %v", in, c, err)
		}
	}
	for _, bad := range []string{"70000:1", "1:70000", "1:2:3:4", "foo", "", "1:", ":1", "-1:2", "4294967296:1:1"} {
		if _, err := ParseCommunity(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func FuzzParseCommunity(f *testing.F) {
	for _, s := range []string{"65000:100", "1:2:3", "no-export", "x:y"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseCommunity(s)
		if err != nil {
			return
		}
		// Anything accepted must print back to something that parses to the same value.
		again, err := ParseCommunity(c.String())
		if err != nil || again != c {
			t.Fatalf("%q -> %v -> %v %v", s, c, again, err)
		}
	})
}

// TestServiceSourceRanges: spec.loadBalancerSourceRanges, else the annotation, as kube-proxy
// reads them: masked, duplicates dropped; an invalid range is reported and ignored while the
// others still restrict; with none valid the Service stays restricted (nobody admitted).
func TestServiceSourceRanges(t *testing.T) {
	for _, c := range []struct {
		name       string
		spec       []string
		annotation string
		restricted bool
		want       string
		problem    string
	}{
		{name: "none", restricted: false, want: "[]"},
		{name: "spec", spec: []string{"10.0.0.1/8", " 2001:db8::/32", "10.0.0.0/8", "::ffff:10.0.0.0/104"}, restricted: true, want: "[10.0.0.0/8 2001:db8::/32]"},
		{name: "annotation", annotation: "192.0.2.0/24, 198.51.100.0/24", restricted: true, want: "[192.0.2.0/24 198.51.100.0/24]"},
		{name: "spec wins", spec: []string{"10.0.0.0/8"}, annotation: "192.0.2.0/24", restricted: true, want: "[10.0.0.0/8]"},
		{name: "one invalid", spec: []string{"10.0.0.0/8", "300.0.0.0/8"}, restricted: true, want: "[10.0.0.0/8]",
			problem: `spec.loadBalancerSourceRanges[1]: "300.0.0.0/8" is not a CIDR`},
		{name: "none valid", annotation: "nonsense", restricted: true, want: "[]",
			problem: "metadata.annotations[service.beta.kubernetes.io/load-balancer-source-ranges][0]"},
	} {
		t.Run(c.name, func(t *testing.T) {
			o := service("ns", "web", nil)
			o.Spec.LoadBalancerSourceRanges = c.spec
			if c.annotation != "" {
				o.Annotations = map[string]string{AnnotationSourceRanges: c.annotation}
			}
			m, problems := Build(Objects{Services: []*corev1.Service{o}}, Options{})
			s := m.Services[0]
			if s.SourceRestricted != c.restricted || fmt.Sprint(s.SourceRanges) != c.want {
				t.Errorf("restricted %v ranges %v, want %v %s", s.SourceRestricted, s.SourceRanges, c.restricted, c.want)
			}
			switch {
			case c.problem == "" && len(problems) > 0:
				t.Errorf("problems: %v", problems)
			case c.problem != "" && (len(problems) != 1 || !strings.Contains(problems[0].Error(), c.problem)):
				t.Errorf("problems %v, want one with %q", problems, c.problem)
			}
		})
	}
}

// TestEndpointHints: an EndpointSlice's topology hints reach the model's endpoints.
func TestEndpointHints(t *testing.T) {
	o := service("ns", "web", nil)
	port, name := int32(8080), "http"
	sl := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: "ns", Name: "web-1", Labels: map[string]string{discoveryv1.LabelServiceName: "web"}},
		AddressType: discoveryv1.AddressTypeIPv4, Ports: []discoveryv1.EndpointPort{{Name: &name, Port: &port}},
		Endpoints: []discoveryv1.Endpoint{
			{Addresses: []string{"10.1.0.1"}, Zone: ptr("a"), Hints: &discoveryv1.EndpointHints{
				ForZones: []discoveryv1.ForZone{{Name: "a"}, {Name: "b"}}, ForNodes: []discoveryv1.ForNode{{Name: "n1"}}}},
			{Addresses: []string{"10.1.0.2"}},
		},
	}
	m, problems := Build(Objects{Services: []*corev1.Service{o}, EndpointSlices: []*discoveryv1.EndpointSlice{sl}}, Options{})
	if len(problems) > 0 {
		t.Fatal(problems)
	}
	eps := m.Services[0].Endpoints
	if len(eps) != 2 || fmt.Sprint(eps[0].ForZones, eps[0].ForNodes) != "[a b] [n1]" || eps[1].ForZones != nil || eps[1].ForNodes != nil {
		t.Fatalf("endpoints %+v", eps)
	}
}

// TestServiceForwardingMode: the forwarding-mode annotation (or Cilium's) picks SNAT or DSR;
// any other value is reported and leaves the node's default.
func TestServiceForwardingMode(t *testing.T) {
	for _, c := range []struct {
		ann     map[string]string
		want    string
		problem string
	}{
		{nil, "", ""},
		{map[string]string{"sluice.dev/forwarding-mode": "dsr"}, ForwardingDSR, ""},
		{map[string]string{"service.cilium.io/forwarding-mode": "snat"}, ForwardingSNAT, ""},
		{map[string]string{"sluice.dev/forwarding-mode": "direct"}, "", `"direct" is not snat or dsr`},
	} {
		o := service("ns", "web", nil)
		o.Annotations = c.ann
		m, problems := Build(Objects{Services: []*corev1.Service{o}}, Options{})
		if got := m.Services[0].ForwardingMode; got != c.want {
			t.Errorf("%v: mode %q, want %q", c.ann, got, c.want)
		}
		if (c.problem == "") != (len(problems) == 0) || (c.problem != "" && !strings.Contains(problems[0].Error(), c.problem)) {
			t.Errorf("%v: problems %v, want %q", c.ann, problems, c.problem)
		}
	}
}

// TestServiceOtherClassServed: Options.LoadBalancerClass serves another implementation's
// class (MetalLB's --lb-class) in place of sluice.dev/lb; a Service without a class stays
// served, and one of sluice.dev/lb no longer is.
func TestServiceOtherClassServed(t *testing.T) {
	metallb := service("ns", "metallb", nil)
	metallb.Spec.LoadBalancerClass = ptr("metallb.io/metallb")
	sluice := service("ns", "sluice", nil)
	sluice.Spec.LoadBalancerClass = ptr(LoadBalancerClass)
	plain := service("ns", "plain", nil)
	ours := func(opts Options) map[string]bool {
		m, problems := Build(Objects{Services: []*corev1.Service{metallb, sluice, plain}}, opts)
		if len(problems) != 0 {
			t.Fatalf("problems: %v", problems)
		}
		got := map[string]bool{}
		for _, s := range m.Services {
			got[s.Key.Name] = s.Ours
		}
		return got
	}
	if got := ours(Options{}); got["metallb"] || !got["sluice"] || !got["plain"] {
		t.Errorf("default class: %v", got)
	}
	if got := ours(Options{LoadBalancerClass: "metallb.io/metallb"}); !got["metallb"] || got["sluice"] || !got["plain"] {
		t.Errorf("class metallb.io/metallb: %v", got)
	}
	// The Builder rebuilds its Services when the class changes.
	b := &Builder{}
	in := Objects{Services: []*corev1.Service{metallb}}
	m, _ := b.Build(in, Options{})
	m2, _ := b.Build(in, Options{LoadBalancerClass: "metallb.io/metallb"})
	if m.Services[0].Ours || !m2.Services[0].Ours {
		t.Errorf("Builder: ours %v then %v", m.Services[0].Ours, m2.Services[0].Ours)
	}
}
