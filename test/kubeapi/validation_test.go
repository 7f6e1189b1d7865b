package kubeapi_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/sluice-lb/sluice/api/v1alpha1"
	"github.com/sluice-lb/sluice/test/kubeapi"
)

// object is a JSON object: a spec, a block.
type object = map[string]any

// list builds a JSON array.
func list(items ...any) []any { return items }

// Kinds of the sluice.dev API.
const (
	ipPool  = "IPPool"
	bgpPeer = "BGPPeer"
	bgpAdv  = "BGPAdvertisement"
	l2Adv   = "L2Advertisement"
)

// validSpec is a minimal valid spec of each kind; cases change one thing in it.
func validSpec(kind string) object {
	switch kind {
	case ipPool:
		return object{"blocks": list(object{"cidr": "192.0.2.0/24"})}
	case bgpPeer:
		return object{"peerAddress": "192.0.2.1", "peerASN": int64(64512), "localASN": int64(64513)}
	default:
		return object{}
	}
}

// spec is validSpec(kind) with the given fields set (nil deletes one).
func spec(kind string, fields ...any) object {
	s := validSpec(kind)
	for i := 0; i+1 < len(fields); i += 2 {
		if fields[i+1] == nil {
			delete(s, fields[i].(string))
		} else {
			s[fields[i].(string)] = fields[i+1]
		}
	}
	return s
}

// blocks is an IPPool spec with these blocks.
func blocks(bs ...any) object { return spec(ipPool, "blocks", append([]any{}, bs...)) }

// block builds an IP block from key/value pairs.
func block(kv ...string) object {
	b := object{}
	for i := 0; i+1 < len(kv); i += 2 {
		b[kv[i]] = kv[i+1]
	}
	return b
}

// create creates an object of the kind with the spec and a unique name, and deletes it
// when the test ends.
func create(t *testing.T, env *kubeapi.Env, kind string, s object) error {
	t.Helper()
	obj := &unstructured.Unstructured{Object: object{"spec": s}}
	obj.SetGroupVersionKind(v1alpha1.GroupVersion.WithKind(kind))
	obj.SetName(kubeapi.UniqueName(t))
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	err := env.CreateObjects(ctx, []*unstructured.Unstructured{obj})
	if err == nil {
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := env.Client.Delete(ctx, obj); err != nil && !apierrors.IsNotFound(err) {
				t.Errorf("delete %s: %v", kubeapi.Describe(obj), err)
			}
		})
	}
	return err
}

// rejection is an invalid object and the error the API server must give for it.
type rejection struct {
	name  string
	kind  string
	spec  object
	field string // the path of the invalid field, as the error names it
	msg   string // the rule's message, or the schema constraint's text
	// causes is how many causes the error may list (default 1: only the intended one),
	// not counting the API server's note that it skipped the CEL rules.
	causes int
}

// celSkipped is the API server's note, in an extra cause, that it did not evaluate the CEL
// rules because the object already failed its schema.
const celSkipped = "some validation rules were not checked because the object was invalid"

var rejections = []rejection{
	// IPPool blocks: the CEL rules of IPBlock.
	{name: "block with cidr and start/stop", kind: ipPool,
		spec:  blocks(block("cidr", "192.0.2.0/24", "start", "192.0.2.1", "stop", "192.0.2.2")),
		field: "spec.blocks[0]", msg: "a block has either cidr or start/stop, not both"},
	{name: "block with cidr and start", kind: ipPool,
		spec:  blocks(block("cidr", "192.0.2.0/24", "start", "192.0.2.1")),
		field: "spec.blocks[0]", msg: "a block has either cidr or start/stop, not both", causes: 2},
	{name: "block with neither", kind: ipPool, spec: blocks(object{}),
		field: "spec.blocks[0]", msg: "a block needs cidr or start/stop"},
	{name: "start without stop", kind: ipPool, spec: blocks(block("start", "192.0.2.1")),
		field: "spec.blocks[0]", msg: "start and stop go together"},
	{name: "stop without start", kind: ipPool, spec: blocks(block("stop", "192.0.2.1")),
		field: "spec.blocks[0]", msg: "start and stop go together"},
	{name: "cidr is an address", kind: ipPool, spec: blocks(block("cidr", "192.0.2.1")),
		field: "spec.blocks[0].cidr", msg: "cidr must be a CIDR such as 192.0.2.0/24 or 2001:db8::/64"},
	{name: "cidr prefix too long", kind: ipPool, spec: blocks(block("cidr", "192.0.2.0/33")),
		field: "spec.blocks[0].cidr", msg: "cidr must be a CIDR"},
	{name: "cidr is a word", kind: ipPool, spec: blocks(block("cidr", "default")),
		field: "spec.blocks[0].cidr", msg: "cidr must be a CIDR"},
	{name: "cidr with host bits v4", kind: ipPool, spec: blocks(block("cidr", "192.0.2.1/24")),
		field: "spec.blocks[0].cidr", msg: "cidr must have no host bits set"},
	{name: "cidr with host bits v6", kind: ipPool, spec: blocks(block("cidr", "2001:db8::1/64")),
		field: "spec.blocks[0].cidr", msg: "cidr must have no host bits set"},
	{name: "start not an IP", kind: ipPool, spec: blocks(block("start", "192.0.2.256", "stop", "192.0.2.9")),
		field: "spec.blocks[0].start", msg: "start must be an IP address"},
	{name: "stop not an IP", kind: ipPool, spec: blocks(block("start", "192.0.2.1", "stop", "192.0.2")),
		field: "spec.blocks[0].stop", msg: "stop must be an IP address"},
	{name: "IPv4-mapped IPv6 range", kind: ipPool, spec: blocks(block("start", "::ffff:192.0.2.1", "stop", "::ffff:192.0.2.9")),
		field: "spec.blocks[0].start", msg: "start must be an IP address", causes: 2},
	{name: "start and stop of different families", kind: ipPool,
		spec:  blocks(block("start", "192.0.2.1", "stop", "2001:db8::1")),
		field: "spec.blocks[0]", msg: "start and stop must be of the same address family"},
	{name: "IPv4 start after stop", kind: ipPool, spec: blocks(block("start", "192.0.2.10", "stop", "192.0.2.9")),
		field: "spec.blocks[0]", msg: "start must not be after stop"},
	{name: "IPv4 start after stop in the first octet", kind: ipPool,
		spec:  blocks(block("start", "203.0.113.0", "stop", "198.51.100.255")),
		field: "spec.blocks[0]", msg: "start must not be after stop"},
	{name: "second block invalid", kind: ipPool,
		spec:  blocks(block("cidr", "192.0.2.0/24"), block("start", "192.0.2.10", "stop", "192.0.2.9")),
		field: "spec.blocks[1]", msg: "start must not be after stop"},
	{name: "zero blocks", kind: ipPool, spec: blocks(),
		field: "spec.blocks", msg: "should have at least 1 items"},
	{name: "no blocks field", kind: ipPool, spec: spec(ipPool, "blocks", nil),
		field: "spec.blocks", msg: "Required value"},
	{name: "65 blocks", kind: ipPool, spec: blocks(repeat(block("cidr", "192.0.2.0/24"), 65)...),
		field: "spec.blocks", msg: "must have at most 64 items"},
	{name: "negative priority", kind: ipPool, spec: spec(ipPool, "priority", -1),
		field: "spec.priority", msg: "should be greater than or equal to 0"},
	{name: "duplicate namespace", kind: ipPool, spec: spec(ipPool, "namespaces", list("a", "a")),
		field: "spec.namespaces[1]", msg: "Duplicate value"},

	// BGPPeer: AS numbers.
	{name: "peerASN 0", kind: bgpPeer, spec: spec(bgpPeer, "peerASN", 0),
		field: "spec.peerASN", msg: "peerASN must be between 1 and 4294967295"},
	{name: "localASN 0", kind: bgpPeer, spec: spec(bgpPeer, "localASN", 0),
		field: "spec.localASN", msg: "localASN must be between 1 and 4294967295"},
	{name: "peerASN 4294967296", kind: bgpPeer, spec: spec(bgpPeer, "peerASN", int64(4294967296)),
		field: "spec.peerASN", msg: "peerASN must be between 1 and 4294967295"},
	{name: "localASN 4294967296", kind: bgpPeer, spec: spec(bgpPeer, "localASN", int64(4294967296)),
		field: "spec.localASN", msg: "localASN must be between 1 and 4294967295"},
	{name: "negative peerASN", kind: bgpPeer, spec: spec(bgpPeer, "peerASN", -64512),
		field: "spec.peerASN", msg: "peerASN must be between 1 and 4294967295"},
	{name: "no peerASN", kind: bgpPeer, spec: spec(bgpPeer, "peerASN", nil),
		field: "spec.peerASN", msg: "Required value"},

	// BGPPeer: timers.
	{name: "holdTime 1s", kind: bgpPeer, spec: spec(bgpPeer, "holdTime", "1s"),
		field: "spec", msg: "holdTime must be 0 (no keepalives) or at least 3s"},
	{name: "holdTime 2s", kind: bgpPeer, spec: spec(bgpPeer, "holdTime", "2s"),
		field: "spec", msg: "holdTime must be 0 (no keepalives) or at least 3s"},
	{name: "holdTime 2999ms", kind: bgpPeer, spec: spec(bgpPeer, "holdTime", "2999ms"),
		field: "spec", msg: "holdTime must be 0 (no keepalives) or at least 3s"},
	{name: "holdTime above 65535s", kind: bgpPeer, spec: spec(bgpPeer, "holdTime", "65536s"),
		field: "spec", msg: "holdTime must be at most 65535s"},
	{name: "holdTime not a duration", kind: bgpPeer, spec: spec(bgpPeer, "holdTime", "90"),
		field: "spec.holdTime", msg: "should match", causes: 2},
	{name: "keepaliveTime equal to holdTime", kind: bgpPeer,
		spec:  spec(bgpPeer, "holdTime", "30s", "keepaliveTime", "30s"),
		field: "spec", msg: "keepaliveTime must be less than holdTime"},
	{name: "keepaliveTime above holdTime", kind: bgpPeer,
		spec:  spec(bgpPeer, "holdTime", "3s", "keepaliveTime", "1m"),
		field: "spec", msg: "keepaliveTime must be less than holdTime"},
	{name: "keepaliveTime 90s with default holdTime", kind: bgpPeer, spec: spec(bgpPeer, "keepaliveTime", "90s"),
		field: "spec", msg: "keepaliveTime must be less than the default holdTime (90s)"},
	{name: "keepaliveTime 2m with default holdTime", kind: bgpPeer, spec: spec(bgpPeer, "keepaliveTime", "2m"),
		field: "spec", msg: "keepaliveTime must be less than the default holdTime (90s)"},
	{name: "connectRetryTime 999ms", kind: bgpPeer, spec: spec(bgpPeer, "connectRetryTime", "999ms"),
		field: "spec.connectRetryTime", msg: "connectRetryTime must be at least 1s"},
	{name: "connectRetryTime 0s", kind: bgpPeer, spec: spec(bgpPeer, "connectRetryTime", "0s"),
		field: "spec.connectRetryTime", msg: "connectRetryTime must be at least 1s"},
	{name: "restartTime 0s", kind: bgpPeer,
		spec:  spec(bgpPeer, "gracefulRestart", object{"enabled": true, "restartTime": "0s"}),
		field: "spec.gracefulRestart.restartTime", msg: "restartTime must be between 1s and 4095s"},
	{name: "restartTime 4096s", kind: bgpPeer,
		spec:  spec(bgpPeer, "gracefulRestart", object{"enabled": true, "restartTime": "4096s"}),
		field: "spec.gracefulRestart.restartTime", msg: "restartTime must be between 1s and 4095s"},
	{name: "gracefulRestart without enabled", kind: bgpPeer,
		spec:  spec(bgpPeer, "gracefulRestart", object{"restartTime": "60s"}),
		field: "spec.gracefulRestart.enabled", msg: "Required value"},

	// BGPPeer: addresses.
	{name: "routerID IPv6", kind: bgpPeer, spec: spec(bgpPeer, "routerID", "2001:db8::1"),
		field: "spec.routerID", msg: "routerID must be an IPv4 address"},
	{name: "routerID a number", kind: bgpPeer, spec: spec(bgpPeer, "routerID", "3221225985"),
		field: "spec.routerID", msg: "routerID must be an IPv4 address"},
	{name: "peerAddress a hostname", kind: bgpPeer, spec: spec(bgpPeer, "peerAddress", "router.example"),
		field: "spec.peerAddress", msg: "peerAddress must be an IP address"},
	{name: "peerAddress a CIDR", kind: bgpPeer, spec: spec(bgpPeer, "peerAddress", "192.0.2.1/32"),
		field: "spec.peerAddress", msg: "peerAddress must be an IP address"},
	{name: "no peerAddress", kind: bgpPeer, spec: spec(bgpPeer, "peerAddress", nil),
		field: "spec.peerAddress", msg: "Required value"},
	{name: "sourceAddress not an IP", kind: bgpPeer, spec: spec(bgpPeer, "sourceAddress", "eth0"),
		field: "spec.sourceAddress", msg: "sourceAddress must be an IP address"},

	// BGPPeer: the rest of the schema.
	{name: "unknown family", kind: bgpPeer, spec: spec(bgpPeer, "families", list("ipv4-multicast")),
		field: "spec.families[0]", msg: `Unsupported value: "ipv4-multicast"`},
	{name: "duplicate family", kind: bgpPeer, spec: spec(bgpPeer, "families", list("ipv4-unicast", "ipv4-unicast")),
		field: "spec.families[1]", msg: "Duplicate value"},
	{name: "ebgpMultihop 0", kind: bgpPeer, spec: spec(bgpPeer, "ebgpMultihop", 0),
		field: "spec.ebgpMultihop", msg: "should be greater than or equal to 1"},
	{name: "ebgpMultihop 256", kind: bgpPeer, spec: spec(bgpPeer, "ebgpMultihop", 256),
		field: "spec.ebgpMultihop", msg: "should be less than or equal to 255"},
	{name: "peerPort 0", kind: bgpPeer, spec: spec(bgpPeer, "peerPort", 0),
		field: "spec.peerPort", msg: "should be greater than or equal to 1"},
	{name: "peerPort 65536", kind: bgpPeer, spec: spec(bgpPeer, "peerPort", 65536),
		field: "spec.peerPort", msg: "should be less than or equal to 65535"},
	{name: "passwordSecretRef without name", kind: bgpPeer,
		spec:  spec(bgpPeer, "passwordSecretRef", object{"name": ""}),
		field: "spec.passwordSecretRef.name", msg: "should be at least 1 chars long"},

	// BGPAdvertisement.
	{name: "community with a 17-bit part", kind: bgpAdv, spec: spec(bgpAdv, "communities", list("70000:1")),
		field: "spec.communities[0]", msg: communityMsg},
	{name: "community 65536:0", kind: bgpAdv, spec: spec(bgpAdv, "communities", list("65536:0")),
		field: "spec.communities[0]", msg: communityMsg},
	{name: "community with four parts", kind: bgpAdv, spec: spec(bgpAdv, "communities", list("1:2:3:4")),
		field: "spec.communities[0]", msg: communityMsg},
	{name: "large community with a 33-bit part", kind: bgpAdv, spec: spec(bgpAdv, "communities", list("4294967296:1:2")),
		field: "spec.communities[0]", msg: communityMsg},
	{name: "unknown community name", kind: bgpAdv, spec: spec(bgpAdv, "communities", list("foo")),
		field: "spec.communities[0]", msg: communityMsg},
	{name: "community name in upper case", kind: bgpAdv, spec: spec(bgpAdv, "communities", list("NO-EXPORT")),
		field: "spec.communities[0]", msg: communityMsg},
	{name: "community with an empty part", kind: bgpAdv, spec: spec(bgpAdv, "communities", list("65000:")),
		field: "spec.communities[0]", msg: communityMsg},
	{name: "second community invalid", kind: bgpAdv, spec: spec(bgpAdv, "communities", list("no-export", "1:2:3:4")),
		field: "spec.communities[1]", msg: communityMsg},
	{name: "aggregationLength 33", kind: bgpAdv, spec: spec(bgpAdv, "aggregationLength", 33),
		field: "spec.aggregationLength", msg: "should be less than or equal to 32"},
	{name: "aggregationLength -1", kind: bgpAdv, spec: spec(bgpAdv, "aggregationLength", -1),
		field: "spec.aggregationLength", msg: "should be greater than or equal to 0"},
	{name: "aggregationLengthV6 129", kind: bgpAdv, spec: spec(bgpAdv, "aggregationLengthV6", 129),
		field: "spec.aggregationLengthV6", msg: "should be less than or equal to 128"},
	{name: "unknown addressType", kind: bgpAdv, spec: spec(bgpAdv, "addressTypes", list("NodeIP")),
		field: "spec.addressTypes[0]", msg: `Unsupported value: "NodeIP"`},
	{name: "localPreference 4294967296", kind: bgpAdv, spec: spec(bgpAdv, "localPreference", int64(4294967296)),
		field: "spec.localPreference", msg: "should be less than or equal to 4294967295"},
	{name: "negative localPreference", kind: bgpAdv, spec: spec(bgpAdv, "localPreference", -1),
		field: "spec.localPreference", msg: "should be greater than or equal to 0"},
	{name: "duplicate peer", kind: bgpAdv, spec: spec(bgpAdv, "peers", list("a", "a")),
		field: "spec.peers[1]", msg: "Duplicate value"},

	// L2Advertisement.
	{name: "interface with a slash", kind: l2Adv, spec: spec(l2Adv, "interfaces", list("eth0/1")),
		field: "spec.interfaces[0]", msg: "should match '^[^/\\s:]+$'"},
	{name: "interface with a colon", kind: l2Adv, spec: spec(l2Adv, "interfaces", list("eth0:1")),
		field: "spec.interfaces[0]", msg: "should match"},
	{name: "interface with a space", kind: l2Adv, spec: spec(l2Adv, "interfaces", list("eth 0")),
		field: "spec.interfaces[0]", msg: "should match"},
	{name: "interface name of 16 bytes", kind: l2Adv, spec: spec(l2Adv, "interfaces", list("abcdefghijklmnop")),
		field: "spec.interfaces[0]", msg: "may not be more than 15"},
	{name: "empty interface name", kind: l2Adv, spec: spec(l2Adv, "interfaces", list("")),
		field: "spec.interfaces[0]", msg: "should match"},
	{name: "duplicate interface", kind: l2Adv, spec: spec(l2Adv, "interfaces", list("eth0", "eth0")),
		field: "spec.interfaces[1]", msg: "Duplicate value"},
}

const communityMsg = "a community is AA:NN (16-bit parts), a large community A:B:C (32-bit parts), or a well-known name such as no-export"

func repeat(v any, n int) []any {
	out := make([]any, n)
	for i := range out {
		out[i] = v
	}
	return out
}

// TestRejected proves that the API server itself rejects each invalid object, for the
// intended reason: the error is Invalid, names the field and carries the rule's message.
func TestRejected(t *testing.T) {
	env := kubeapi.Shared(t)
	for _, tc := range rejections {
		t.Run(tc.kind+"/"+tc.name, func(t *testing.T) {
			t.Parallel()
			err := create(t, env, tc.kind, tc.spec)
			if err == nil {
				t.Fatalf("accepted %v", tc.spec)
			}
			var status *apierrors.StatusError
			if !errors.As(err, &status) || !apierrors.IsInvalid(err) {
				t.Fatalf("want an Invalid error, got %v", err)
			}
			var causes []string
			found := false
			if d := status.ErrStatus.Details; d != nil {
				for _, c := range d.Causes {
					if strings.Contains(c.Message, celSkipped) {
						continue
					}
					causes = append(causes, fmt.Sprintf("%s: %s", c.Field, c.Message))
					if c.Field == tc.field && strings.Contains(c.Message, tc.msg) {
						found = true
					}
				}
			}
			t.Logf("rejected: %s", strings.Join(causes, "; "))
			if !found {
				t.Errorf("no cause with field %s and message %q in:\n\t%s", tc.field, tc.msg, strings.Join(causes, "\n\t"))
			}
			if want := max(tc.causes, 1); len(causes) > want {
				t.Errorf("%d causes, want at most %d:\n\t%s", len(causes), want, strings.Join(causes, "\n\t"))
			}
			if !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("error text %q lacks %q", err, tc.msg)
			}
		})
	}
}
