package migrate

import (
	"fmt"
	"strings"
	"testing"
)

// TestMetalLBSemantics: where MetalLB's meaning is subtle, the converted objects mean the
// same to Sluice, or a note says what differs.
func TestMetalLBSemantics(t *testing.T) {
	const peer = "apiVersion: metallb.io/v1beta2\nkind: BGPPeer\nmetadata: {name: %s, namespace: metallb-system}\nspec: {%s}\n"
	tests := []struct {
		name     string
		docs     []string
		out, not []string // must and must not appear in the output
		level    Level
		object   string
		field    string
		text     string
	}{
		{name: "one BGPPeer per router address",
			docs: []string{fmt.Sprintf(peer, "rack-a", "myASN: 1, peerASN: 2, peerAddress: 10.0.0.1, nodeSelectors: [{matchLabels: {rack: a}}]"),
				fmt.Sprintf(peer, "rack-b", "myASN: 1, peerASN: 2, peerAddress: 10.0.0.1, nodeSelectors: [{matchLabels: {rack: b}}]")},
			out: []string{"name: rack-a"}, not: []string{"name: rack-b"},
			level: Error, object: "BGPPeer metallb-system/rack-b", field: "spec.peerAddress", text: "already the address of BGPPeer rack-a"},
		{name: "a Secret name copied from two sources",
			docs: []string{fmt.Sprintf(peer, "a", "myASN: 1, peerASN: 2, peerAddress: 10.0.0.1, password: one"),
				fmt.Sprintf(peer, "b", "myASN: 1, peerASN: 2, peerAddress: 10.0.0.2, passwordSecret: {name: a-bgp-password, namespace: other}"),
				"apiVersion: v1\nkind: Secret\nmetadata: {name: a-bgp-password, namespace: other}\nstringData: {password: two}\n"},
			not:   []string{"password: two", "name: b\n"},
			level: Error, object: "BGPPeer metallb-system/b", field: "spec.passwordSecret", text: "would be the copy of other/a-bgp-password and of generated"},
		{name: "a keepalive alone sets the hold time",
			docs:  []string{fmt.Sprintf(peer, "r", "myASN: 1, peerASN: 2, peerAddress: 10.0.0.1, keepaliveTime: 90s")},
			out:   []string{"holdTime: 4m30s", "keepaliveTime: 1m30s"},
			level: Info, object: "BGPPeer metallb-system/r", field: "spec.holdTime", text: "three times it"},
		{name: "a keepalive as long as the hold time",
			docs:  []string{fmt.Sprintf(peer, "r", "myASN: 1, peerASN: 2, peerAddress: 10.0.0.1, keepaliveTime: 60s, holdTime: 60s")},
			out:   []string{"holdTime: 1m0s", "keepaliveTime: 20s"},
			level: Warning, object: "BGPPeer metallb-system/r", field: "spec.keepaliveTime", text: "a third of it"},
		{name: "dual-stack sessions carry both families",
			docs:  []string{fmt.Sprintf(peer, "r", "myASN: 1, peerASN: 2, peerAddress: 2001:db8::1, dualStackAddressFamily: true")},
			out:   []string{"families:\n  - ipv4-unicast\n  - ipv6-unicast"},
			level: "", object: "", field: "", text: ""},
		{name: "a restricted pool is tried before unrestricted ones",
			docs: []string{"apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: team-a}\nspec: {addresses: [192.0.2.0/28], serviceAllocation: {namespaces: [a]}}\n",
				"apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: general}\nspec: {addresses: [192.0.2.32/28]}\n"},
			out: []string{"name: team-a\nspec:\n  blocks:\n  - cidr: 192.0.2.0/28\n  namespaces:\n  - a\n  priority: 1073741824"}},
		{name: "a pool restricting nothing is never auto-assigned",
			docs:  []string{"apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: p}\nspec: {addresses: [192.0.2.0/28], serviceAllocation: {priority: 5}}\n"},
			out:   []string{"autoAssign: false"},
			level: Info, object: "IPAddressPool p", field: "spec.serviceAllocation", text: "never assigns from it automatically"},
		{name: "namespaces and a namespace selector on the name merge",
			docs: []string{"apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: p}\nspec: {addresses: [192.0.2.0/28], serviceAllocation: {namespaces: [a], namespaceSelectors: [{matchLabels: {kubernetes.io/metadata.name: b}}]}}\n"},
			out:  []string{"namespaceSelector:\n    matchExpressions:\n    - key: kubernetes.io/metadata.name\n      operator: In\n      values:\n      - a\n      - b"}},
		{name: "an empty pool selector covers every pool",
			docs:  []string{goodPool, "apiVersion: metallb.io/v1beta1\nkind: L2Advertisement\nmetadata: {name: l}\nspec: {ipAddressPools: [good], ipAddressPoolSelectors: [{}]}\n"},
			not:   []string{"pools:\n  - good"},
			level: Info, object: "L2Advertisement l", field: "spec.ipAddressPoolSelectors", text: "covers all of them"},
		{name: "deployment tools' labels are not carried over",
			docs: []string{"apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: p, labels: {app.kubernetes.io/instance: metallb, argocd.argoproj.io/instance: metallb, tier: prod}}\nspec: {addresses: [192.0.2.0/28]}\n"},
			out:  []string{"labels:\n    tier: prod\n"}, not: []string{"instance"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, out := readConvert(t, strings.Join(tt.docs, "---\n"))
			for _, s := range tt.out {
				if !strings.Contains(out, s) {
					t.Errorf("output lacks %q:\n%s", s, out)
				}
			}
			for _, s := range tt.not {
				if strings.Contains(out[strings.Index(out, "\n---"):], s) {
					t.Errorf("output holds %q:\n%s", s, out)
				}
			}
			if tt.level != "" && !has(r.Notes, tt.level, tt.object, tt.field, tt.text) {
				t.Errorf("no %s note on %q field %q saying %q; notes:\n%s", tt.level, tt.object, tt.field, tt.text, notesText(r.Notes))
			}
		})
	}
}
