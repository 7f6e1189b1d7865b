package kubeapi_test

import (
	"fmt"
	"testing"

	"github.com/sluice-lb/sluice/test/kubeapi"
)

// acceptance is a valid object, often at a boundary of a rule.
type acceptance struct {
	name string
	kind string
	spec object
}

var acceptances = []acceptance{
	// IPPool.
	{"IPv4 cidr", ipPool, blocks(block("cidr", "198.51.100.0/24"))},
	{"IPv6 cidr", ipPool, blocks(block("cidr", "2001:db8::/64"))},
	{"IPv4 single-address cidr", ipPool, blocks(block("cidr", "192.0.2.7/32"))},
	{"IPv6 cidr written in capitals", ipPool, blocks(block("cidr", "2001:DB8:1::/64"))},
	{"IPv4 range", ipPool, blocks(block("start", "192.0.2.10", "stop", "192.0.2.20"))},
	{"IPv4 range ordered by number, not text", ipPool, blocks(block("start", "192.0.2.9", "stop", "192.0.2.10"))},
	{"IPv4 range across octets", ipPool, blocks(block("start", "198.51.100.255", "stop", "203.0.113.0"))},
	{"IPv4 range of one address", ipPool, blocks(block("start", "192.0.2.1", "stop", "192.0.2.1"))},
	{"IPv6 range", ipPool, blocks(block("start", "2001:db8::10", "stop", "2001:db8::1f"))},
	{"mixed blocks", ipPool, blocks(block("cidr", "192.0.2.0/25"), block("cidr", "2001:db8:1::/120"),
		block("start", "198.51.100.1", "stop", "198.51.100.9"), block("start", "2001:db8:2::1", "stop", "2001:db8:2::9"))},
	{"64 ranges (the most, at the highest CEL cost)", ipPool,
		blocks(repeat(block("start", "255.255.255.254", "stop", "255.255.255.255"), 64)...)},
	{"all the options", ipPool, spec(ipPool, "autoAssign", false, "avoidBuggyIPs", true, "priority", 1, "disabled", true,
		"namespaces", list("a", "b"), "serviceSelector", object{"matchLabels": object{"a": "b"}},
		"namespaceSelector", object{"matchExpressions": list(object{"key": "env", "operator": "Exists"})})},

	// BGPPeer: AS numbers.
	{"ASN 1", bgpPeer, spec(bgpPeer, "peerASN", 1, "localASN", 1)},
	{"ASN 4294967295", bgpPeer, spec(bgpPeer, "peerASN", int64(4294967295), "localASN", int64(4294967295))},
	// BGPPeer: timers.
	{"holdTime 0s", bgpPeer, spec(bgpPeer, "holdTime", "0s")},
	{"holdTime 0s with a keepaliveTime", bgpPeer, spec(bgpPeer, "holdTime", "0s", "keepaliveTime", "30s")},
	{"holdTime 3s", bgpPeer, spec(bgpPeer, "holdTime", "3s")},
	{"holdTime 3s, keepaliveTime 1s", bgpPeer, spec(bgpPeer, "holdTime", "3s", "keepaliveTime", "1s")},
	{"keepaliveTime just below holdTime", bgpPeer, spec(bgpPeer, "holdTime", "3s", "keepaliveTime", "2999ms")},
	{"holdTime 1m30s, keepaliveTime 1.5s", bgpPeer, spec(bgpPeer, "holdTime", "1m30s", "keepaliveTime", "1.5s")},
	{"holdTime 1h", bgpPeer, spec(bgpPeer, "holdTime", "1h")},
	{"keepaliveTime 89s with default holdTime", bgpPeer, spec(bgpPeer, "keepaliveTime", "89s")},
	{"connectRetryTime 1s", bgpPeer, spec(bgpPeer, "connectRetryTime", "1s")},
	{"restartTime 1s", bgpPeer, spec(bgpPeer, "gracefulRestart", object{"enabled": true, "restartTime": "1s"})},
	{"restartTime 4095s", bgpPeer, spec(bgpPeer, "gracefulRestart", object{"enabled": false, "restartTime": "4095s"})},
	// BGPPeer: the rest.
	{"IPv6 peer", bgpPeer, spec(bgpPeer, "peerAddress", "2001:db8::1", "sourceAddress", "2001:db8::2")},
	{"routerID IPv4", bgpPeer, spec(bgpPeer, "routerID", "255.255.255.255")},
	{"ebgpMultihop 1 and port 1", bgpPeer, spec(bgpPeer, "ebgpMultihop", 1, "peerPort", 1)},
	{"ebgpMultihop 255 and port 65535", bgpPeer, spec(bgpPeer, "ebgpMultihop", 255, "peerPort", 65535)},
	{"both families", bgpPeer, spec(bgpPeer, "families", list("ipv4-unicast", "ipv6-unicast"))},
	{"password in the agent's namespace", bgpPeer, spec(bgpPeer, "passwordSecretRef", object{"name": "bgp"})},

	// BGPAdvertisement.
	{"empty", bgpAdv, spec(bgpAdv)},
	{"communities of each form", bgpAdv, spec(bgpAdv, "communities", list("65000:100", "4200000000:1:2", "no-export"))},
	{"community boundaries", bgpAdv, spec(bgpAdv, "communities",
		list("0:0", "65535:65535", "4294967295:4294967295:4294967295", "0:0:0"))},
	{"every well-known community", bgpAdv, spec(bgpAdv, "communities", list("no-export", "no-advertise",
		"no-export-subconfed", "no-peer", "blackhole", "graceful-shutdown", "accept-own", "llgr-stale", "no-llgr"))},
	{"32 large communities (the most)", bgpAdv, spec(bgpAdv, "communities", distinct("4294967295:4294967295:%d", 32))},
	{"aggregation lengths 0", bgpAdv, spec(bgpAdv, "aggregationLength", 0, "aggregationLengthV6", 0)},
	{"aggregation lengths 32 and 128", bgpAdv, spec(bgpAdv, "aggregationLength", 32, "aggregationLengthV6", 128)},
	{"localPreference boundaries", bgpAdv, spec(bgpAdv, "localPreference", int64(4294967295))},
	{"every addressType", bgpAdv, spec(bgpAdv, "addressTypes", list("LoadBalancerIP", "ExternalIP", "ClusterIP", "PodCIDR"))},
	{"pools, peers and selectors", bgpAdv, spec(bgpAdv, "pools", list("a"), "peers", list("b"),
		"poolSelector", object{}, "serviceSelector", object{"matchLabels": object{"a": "b"}}, "nodeSelector", object{})},

	// L2Advertisement.
	{"empty", l2Adv, spec(l2Adv)},
	{"interface names", l2Adv, spec(l2Adv, "interfaces", list("eth0", "bond0.100", "enp0s31f6", "abcdefghijklmno", "br-lan_1@x"))},
	{"pools and selectors", l2Adv, spec(l2Adv, "pools", list("a"), "nodeSelector", object{"matchLabels": object{"a": "b"}})},
}

// distinct formats n different strings.
func distinct(format string, n int) []any {
	out := make([]any, n)
	for i := range out {
		out[i] = fmt.Sprintf(format, i)
	}
	return out
}

// TestAccepted proves that valid objects, many at a boundary of a rule, are accepted.
func TestAccepted(t *testing.T) {
	env := kubeapi.Shared(t)
	for _, tc := range acceptances {
		t.Run(tc.kind+"/"+tc.name, func(t *testing.T) {
			t.Parallel()
			if err := create(t, env, tc.kind, tc.spec); err != nil {
				t.Fatalf("rejected %v: %v", tc.spec, err)
			}
		})
	}
}
