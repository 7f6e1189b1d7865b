package bgp

import (
	"net/netip"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/types"

	"github.com/sluice-lb/sluice/internal/model"
	"github.com/sluice-lb/sluice/internal/modeltest"
)

// modelOf builds the model of a YAML document stream, as the agent reads it.
func modelOf(t *testing.T, yaml string) *model.Model { return modeltest.ModelOf(t, yaml) }

// paths renders the desired paths of each peer as "peer: prefix attrs | prefix attrs".
func paths(d Desired) map[string]string {
	out := map[string]string{}
	for peer, ps := range d.Paths {
		var s []string
		for _, p := range ps {
			s = append(s, p.String())
		}
		out[peer] = strings.Join(s, " | ")
	}
	return out
}

const base = `
apiVersion: v1
kind: Node
metadata: {name: node-1, labels: {rack: a}}
spec: {podCIDRs: [10.244.1.0/24, "2001:db8:244:1::/64"]}
status: {addresses: [{type: InternalIP, address: 198.51.100.11}]}
---
apiVersion: v1
kind: Node
metadata: {name: node-2, labels: {rack: b}}
status: {addresses: [{type: InternalIP, address: 198.51.100.12}]}
---
apiVersion: sluice.dev/v1alpha1
kind: IPPool
metadata: {name: public, labels: {tier: public}}
spec: {blocks: [{cidr: 203.0.113.0/28}, {cidr: "2001:db8:100::/120"}]}
---
apiVersion: sluice.dev/v1alpha1
kind: IPPool
metadata: {name: private}
spec: {blocks: [{cidr: 192.0.2.0/28}]}
---
apiVersion: sluice.dev/v1alpha1
kind: BGPPeer
metadata: {name: tor}
spec: {peerAddress: 198.51.100.1, peerASN: 64512, localASN: 64513}
---
apiVersion: sluice.dev/v1alpha1
kind: BGPPeer
metadata: {name: rack-b-only}
spec: {peerAddress: 198.51.100.2, peerASN: 64512, localASN: 64513, nodeSelector: {matchLabels: {rack: b}}}
---
apiVersion: sluice.dev/v1alpha1
kind: BGPPeer
metadata: {name: ibgp}
spec: {peerAddress: 198.51.100.3, peerASN: 64513, localASN: 64513}
---
# Where external IPs may be (CVE-2020-8554): an IPPool nothing is allocated from.
apiVersion: sluice.dev/v1alpha1
kind: IPPool
metadata: {name: external-ips}
spec: {autoAssign: false, blocks: [{cidr: 198.18.0.48/29}]}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: demo, labels: {app: web}}
spec: {type: LoadBalancer, clusterIPs: [10.96.0.10], externalIPs: [198.18.0.50, 192.0.2.99], ports: [{port: 80}]}
status: {loadBalancer: {ingress: [{ip: 203.0.113.1}, {ip: "2001:db8:100::1"}]}}
---
apiVersion: v1
kind: Service
metadata: {name: internal, namespace: demo}
spec: {type: LoadBalancer, ports: [{port: 80}]}
status: {loadBalancer: {ingress: [{ip: 192.0.2.5}]}}
---
apiVersion: v1
kind: Service
metadata: {name: local, namespace: demo}
spec: {type: LoadBalancer, externalTrafficPolicy: Local, ports: [{name: http, port: 80}]}
status: {loadBalancer: {ingress: [{ip: 203.0.113.2}]}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: local-1, namespace: demo, labels: {kubernetes.io/service-name: local}}
addressType: IPv4
ports: [{name: http, port: 8080}]
endpoints:
  - {addresses: [10.244.1.2], nodeName: node-1, conditions: {ready: true}}
  - {addresses: [10.244.2.2], nodeName: node-2, conditions: {ready: false}}
`

// advertisements overlap: one prefix gets several, with different communities and local
// preferences.
const advertisements = `
---
apiVersion: sluice.dev/v1alpha1
kind: BGPAdvertisement
metadata: {name: public}
spec: {poolSelector: {matchLabels: {tier: public}}, communities: ["64512:100", no-export]}
---
apiVersion: sluice.dev/v1alpha1
kind: BGPAdvertisement
metadata: {name: public-aggregate-ibgp}
spec: {pools: [public], peers: [ibgp], aggregationLength: 28, aggregationLengthV6: 120, localPreference: 200, communities: ["64512:7:7"]}
---
apiVersion: sluice.dev/v1alpha1
kind: BGPAdvertisement
metadata: {name: private-ibgp}
spec: {pools: [private], peers: [ibgp], localPreference: 50, communities: ["64512:100"]}
---
apiVersion: sluice.dev/v1alpha1
kind: BGPAdvertisement
metadata: {name: cluster-and-pods}
spec: {addressTypes: [ClusterIP, ExternalIP, PodCIDR], peers: [tor], serviceSelector: {matchLabels: {app: web}}, nodeSelector: {matchLabels: {rack: a}}}
`

func TestDesired(t *testing.T) {
	m := modelOf(t, base+advertisements)
	got := paths(DesiredFor(m, "node-1", nil))
	want := map[string]string{
		// node-1 has local's ready endpoint; rack-b-only does not select node-1.
		"tor": "10.96.0.10/32 | 10.244.1.0/24 | 198.18.0.50/32 | 203.0.113.1/32 64512:100 65535:65281 | 203.0.113.2/32 64512:100 65535:65281 | " +
			"2001:db8:100::1/128 64512:100 65535:65281 | 2001:db8:244:1::/64",
		// Overlapping advertisements merge: the union of the communities, the highest local preference.
		"ibgp": "192.0.2.5/32 64512:100 local-pref 50 | 203.0.113.0/28 64512:7:7 local-pref 200 | 203.0.113.1/32 64512:100 65535:65281 | " +
			"203.0.113.2/32 64512:100 65535:65281 | 2001:db8:100::/120 64512:7:7 local-pref 200 | 2001:db8:100::1/128 64512:100 65535:65281",
	}
	if len(got) != len(want) {
		t.Errorf("peers %v, want %v", keys(got), keys(want))
	}
	for peer, w := range want {
		if got[peer] != w {
			t.Errorf("%s:\n got %s\nwant %s", peer, got[peer], w)
		}
	}

	// node-2: rack-b-only is its peer too; local's endpoint there is not ready, so 203.0.113.2
	// is not announced from it; cluster-and-pods selects rack a only.
	d := DesiredFor(m, "node-2", nil)
	if names := peerNames(d); names != "ibgp rack-b-only tor" {
		t.Errorf("node-2 peers %s", names)
	}
	if p := paths(d)["tor"]; p != "203.0.113.1/32 64512:100 65535:65281 | 2001:db8:100::1/128 64512:100 65535:65281" {
		t.Errorf("node-2 tor: %s", p)
	}
}

func TestDesiredStandaloneAllocation(t *testing.T) {
	m := modelOf(t, base+`
---
apiVersion: sluice.dev/v1alpha1
kind: BGPAdvertisement
metadata: {name: all}
`)
	lbIPs := map[types.NamespacedName][]netip.Addr{
		{Namespace: "demo", Name: "web"}: {netip.MustParseAddr("203.0.113.9")}, // the allocation, not the status
	}
	got := paths(DesiredFor(m, "node-1", lbIPs))["tor"]
	if got != "203.0.113.9/32" {
		t.Errorf("tor: %s, want only the allocated address of web", got)
	}
}

func TestDesiredUnknownNode(t *testing.T) {
	m := modelOf(t, base+`
---
apiVersion: sluice.dev/v1alpha1
kind: BGPAdvertisement
metadata: {name: all}
`)
	d := DesiredFor(m, "node-9", nil)
	if len(d.Warnings) != 1 || !strings.Contains(d.Warnings[0], `Node "node-9" is unknown`) {
		t.Errorf("warnings %v", d.Warnings)
	}
	if names := peerNames(d); names != "ibgp tor" {
		t.Errorf("peers %s", names)
	}
	// local (eTP Local) has no ready endpoint on node-9.
	if got := paths(d)["tor"]; got != "192.0.2.5/32 | 203.0.113.1/32 | 2001:db8:100::1/128" {
		t.Errorf("tor: %s", got)
	}
}

func keys(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func peerNames(d Desired) string {
	var s []string
	for _, p := range d.Peers {
		s = append(s, p.Name)
	}
	return strings.Join(s, " ")
}
