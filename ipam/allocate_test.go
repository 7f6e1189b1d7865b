package ipam

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// Every test runs through allocate(), which also checks that 20 shuffles of the input give
// the same result.

func TestAutoAssignLowestFree(t *testing.T) {
	r := allocate(t, Options{},
		pool("default", 0, "203.0.113.0/30"),
		service("a/one", 1),
		service("a/two", 2),
		service("b/held", 3, holding("203.0.113.1")),
	)
	// held keeps .1 although it is the youngest; the others take .0 and .2 in age order.
	expect(t, r, "b/held", "203.0.113.1", true, Allocated, "203.0.113.1 from pool default")
	expect(t, r, "a/one", "203.0.113.0", true, Allocated)
	expect(t, r, "a/two", "203.0.113.2", true, Allocated)
	if u := r.Pools["default"]; u.Used["IPv4"] != 3 || u.Free["IPv4"].Int64() != 1 {
		t.Errorf("pool use %v free %v, want 3 used and 1 free", u.Used, u.Free)
	}
}

func TestExhausted(t *testing.T) {
	r := allocate(t, Options{},
		pool("tiny", 0, "203.0.113.8-203.0.113.9"),
		service("a/one", 1), service("a/two", 2), service("a/three", 3),
	)
	expect(t, r, "a/one", "203.0.113.8", true, Allocated)
	expect(t, r, "a/two", "203.0.113.9", true, Allocated)
	expect(t, r, "a/three", "", false, PoolExhausted, "no free IPv4 address in pool tiny")
}

func TestAvoidBuggyIPs(t *testing.T) {
	r := allocate(t, Options{},
		pool("buggy", 0, "198.51.100.254-198.51.101.1", avoidBuggy),
		service("a/one", 1), service("a/two", 2), service("a/three", 3),
		service("a/asks", 4, annotated("sluice.dev/ips", "198.51.100.255")),
	)
	expect(t, r, "a/one", "198.51.100.254", true, Allocated)
	expect(t, r, "a/two", "198.51.101.1", true, Allocated)
	expect(t, r, "a/three", "", false, PoolExhausted)
	expect(t, r, "a/asks", "", false, RequestedUnavailable, "avoidBuggyIPs")
	if u := r.Pools["buggy"]; u.Used["IPv4"] != 2 || u.Free["IPv4"].Int64() != 0 {
		t.Errorf("pool use %v free %v, want 2 used, 0 free (.255 and .0 are not counted)", u.Used, u.Free)
	}
}

func TestPriority(t *testing.T) {
	r := allocate(t, Options{},
		pool("unset", 0, "10.0.0.0/30"), // priority 0: after every positive one
		pool("second", 1, "10.0.1.0/30", priority(2)),
		pool("first-old", 2, "10.0.2.0/31", priority(1)),
		pool("first-new", 3, "10.0.3.0/31", priority(1)),
		service("a/s1", 1), service("a/s2", 2), service("a/s3", 3), service("a/s4", 4), service("a/s5", 5),
	)
	expect(t, r, "a/s1", "10.0.2.0", true, Allocated, "pool first-old")
	expect(t, r, "a/s2", "10.0.2.1", true, Allocated)
	expect(t, r, "a/s3", "10.0.3.0", true, Allocated, "pool first-new")
	expect(t, r, "a/s5", "10.0.1.0", true, Allocated, "pool second")
}

func TestAutoAssignOff(t *testing.T) {
	r := allocate(t, Options{},
		pool("reserved", 0, "192.0.2.0/30", noAuto),
		service("a/auto", 1),
		service("a/named", 2, annotated("sluice.dev/pool", "reserved")),
		service("a/asks", 3, loadBalancerIP("192.0.2.3")),
	)
	expect(t, r, "a/auto", "", false, NoPool, "autoAssign")
	expect(t, r, "a/named", "192.0.2.0", true, Allocated)
	expect(t, r, "a/asks", "192.0.2.3", true, Allocated)
}

func TestSelectorsAndNamespaces(t *testing.T) {
	r := allocate(t, Options{},
		namespace("prod", "env=prod"), namespace("dev", "env=dev"),
		pool("prod-only", 0, "10.1.0.0/30", namespaceSelector("env", "prod"), priority(1)),
		pool("web-only", 1, "10.2.0.0/30", serviceSelector("tier", "web"), priority(2)),
		pool("team", 2, "10.3.0.0/30", onlyNamespaces("team-a"), priority(3)),
		pool("rest", 3, "10.4.0.0/30"),
		service("prod/api", 1),
		service("dev/web", 2, labelled("tier", "web")),
		service("team-a/x", 3),
		service("dev/other", 4),
		service("dev/named", 5, annotated("sluice.dev/pool", "prod-only")),
	)
	expect(t, r, "prod/api", "10.1.0.0", true, Allocated)
	expect(t, r, "dev/web", "10.2.0.0", true, Allocated)
	expect(t, r, "team-a/x", "10.3.0.0", true, Allocated)
	expect(t, r, "dev/other", "10.4.0.0", true, Allocated)
	expect(t, r, "dev/named", "", false, NoPool, "namespace dev does not match its namespaceSelector")
}

func TestDisabledKeepsButBlocks(t *testing.T) {
	r := allocate(t, Options{},
		pool("off", 0, "10.0.0.0/29", disabled),
		service("a/held", 1, holding("10.0.0.5")),
		service("a/new", 2),
		service("a/asks", 3, annotated("metallb.io/loadBalancerIPs", "10.0.0.6")),
	)
	expect(t, r, "a/held", "10.0.0.5", true, Allocated)
	expect(t, r, "a/new", "", false, NoPool)
	expect(t, r, "a/asks", "", false, RequestedUnavailable, "disabled")
}

func TestRequestedAnnotations(t *testing.T) {
	r := allocate(t, Options{},
		pool("p", 0, "10.0.0.0/24 2001:db8::/120"),
		service("a/spec", 1, loadBalancerIP("10.0.0.10")),
		service("a/sluice", 2, annotated("sluice.dev/ips", "10.0.0.11")),
		service("a/metallb", 3, annotated("metallb.io/loadBalancerIPs", "10.0.0.12")),
		service("a/metallb-old", 4, annotated("metallb.universe.tf/loadBalancerIPs", "10.0.0.13")),
		service("a/cilium", 5, annotated("lbipam.cilium.io/ips", "10.0.0.14")),
		service("a/dual", 6, annotated("sluice.dev/ips", "10.0.0.15,2001:db8::15"), policy(corev1.IPFamilyPolicyRequireDualStack)),
		service("a/nowhere", 7, annotated("sluice.dev/ips", "172.16.0.1")),
		service("a/taken", 8, annotated("sluice.dev/ips", "10.0.0.10")),
	)
	expect(t, r, "a/spec", "10.0.0.10", true, Allocated)
	expect(t, r, "a/sluice", "10.0.0.11", true, Allocated)
	expect(t, r, "a/metallb", "10.0.0.12", true, Allocated)
	expect(t, r, "a/metallb-old", "10.0.0.13", true, Allocated)
	expect(t, r, "a/cilium", "10.0.0.14", true, Allocated)
	expect(t, r, "a/dual", "10.0.0.15 2001:db8::15", true, Allocated)
	expect(t, r, "a/nowhere", "", false, RequestedUnavailable, "requested 172.16.0.1 is in no pool")
	expect(t, r, "a/taken", "", false, RequestedUnavailable, "used by Service a/spec")
}

func TestPoolByName(t *testing.T) {
	r := allocate(t, Options{},
		pool("a", 0, "10.0.0.0/30", priority(1)),
		pool("b", 1, "10.1.0.0/30"),
		service("x/sluice", 1, annotated("sluice.dev/pool", "b")),
		service("x/metallb", 2, annotated("metallb.universe.tf/address-pool", "b")),
		service("x/missing", 3, annotated("sluice.dev/pool", "nope")),
		service("x/wrong", 4, annotated("sluice.dev/pool", "a"), annotated("sluice.dev/ips", "10.1.0.3")),
	)
	expect(t, r, "x/sluice", "10.1.0.0", true, Allocated)
	expect(t, r, "x/metallb", "10.1.0.1", true, Allocated)
	expect(t, r, "x/missing", "", false, UnknownPool, "pool nope does not exist")
	expect(t, r, "x/wrong", "", false, RequestedUnavailable, "not in pool a")
}

func TestFamilies(t *testing.T) {
	v4only := pool("v4", 0, "10.0.0.0/30")
	r := allocate(t, Options{},
		v4only, pool("v6", 1, "2001:db8::/126"),
		service("a/single6", 1, policy(corev1.IPFamilyPolicySingleStack, corev1.IPv6Protocol)),
		service("a/prefer", 2, policy(corev1.IPFamilyPolicyPreferDualStack, corev1.IPv6Protocol, corev1.IPv4Protocol)),
		service("a/require", 3, policy(corev1.IPFamilyPolicyRequireDualStack)),
		service("a/default", 4),
	)
	expect(t, r, "a/single6", "2001:db8::", true, Allocated)
	expect(t, r, "a/prefer", "2001:db8::1 10.0.0.0", true, Allocated) // the Service's family order
	expect(t, r, "a/require", "10.0.0.1 2001:db8::2", true, Allocated)
	expect(t, r, "a/default", "10.0.0.2", true, Allocated)

	r = allocate(t, Options{},
		v4only,
		service("a/prefer", 1, policy(corev1.IPFamilyPolicyPreferDualStack)),
		service("a/require", 2, policy(corev1.IPFamilyPolicyRequireDualStack)),
	)
	expect(t, r, "a/prefer", "10.0.0.0", false, PartiallyAllocated, "no pool that serves this Service has IPv6 addresses")
	expect(t, r, "a/require", "", false, NoPool, "RequireDualStack needs every family")
	if u := r.Pools["v4"]; u.Used["IPv4"] != 1 {
		t.Errorf("RequireDualStack's IPv4 address was not given back: %v used", u.Used)
	}
}

func TestSharing(t *testing.T) {
	r := allocate(t, Options{},
		pool("p", 0, "10.0.0.0/28"),
		service("a/http", 1, sharing("k"), ports("TCP/80")),
		service("a/dns", 2, sharing("k"), ports("UDP/53", "TCP/53")),
		service("a/clash", 3, sharing("k"), ports("TCP/80")), // port 80 taken on the shared address
		service("a/nokey", 4, ports("TCP/8080")),             // no key: never shares
		service("a/metallb", 5, annotated("metallb.universe.tf/allow-shared-ip", "k"), ports("TCP/443")),
		service("a/cilium", 6, annotated("lbipam.cilium.io/sharing-key", "k"), ports("TCP/444")),
	)
	expect(t, r, "a/http", "10.0.0.0", true, Allocated)
	expect(t, r, "a/dns", "10.0.0.0", true, Allocated)
	expect(t, r, "a/clash", "10.0.0.1", true, Allocated)
	expect(t, r, "a/nokey", "10.0.0.2", true, Allocated)
	expect(t, r, "a/metallb", "10.0.0.0", true, Allocated)
	expect(t, r, "a/cilium", "10.0.0.0", true, Allocated)
	if u := r.Pools["p"]; u.Used["IPv4"] != 3 {
		t.Errorf("%d addresses used, want 3 (shared ones count once)", u.Used["IPv4"])
	}

	// Requested shared addresses follow the same rules.
	r = allocate(t, Options{},
		pool("p", 0, "10.0.0.0/28"),
		service("a/one", 1, sharing("k"), annotated("sluice.dev/ips", "10.0.0.9"), ports("TCP/80")),
		service("a/two", 2, sharing("k"), annotated("sluice.dev/ips", "10.0.0.9"), ports("TCP/81")),
		service("a/three", 3, sharing("other"), annotated("sluice.dev/ips", "10.0.0.9"), ports("TCP/82")),
	)
	expect(t, r, "a/one", "10.0.0.9", true, Allocated)
	expect(t, r, "a/two", "10.0.0.9", true, Allocated)
	expect(t, r, "a/three", "", false, RequestedUnavailable, "used by Service a/one")
}

func TestSharingLocalAndNamespaces(t *testing.T) {
	r := allocate(t, Options{},
		pool("p", 0, "10.0.0.0/28"),
		service("a/l1", 1, sharing("k"), ports("TCP/80"), local("app=x")),
		service("a/l2", 2, sharing("k"), ports("TCP/81"), local("app=x")), // same pods: shares
		service("a/l3", 3, sharing("k"), ports("TCP/82"), local("app=y")), // other pods: not
		service("a/c", 4, sharing("k"), ports("TCP/83")),                  // Cluster with Local ones: not
	)
	expect(t, r, "a/l1", "10.0.0.0", true, Allocated)
	expect(t, r, "a/l2", "10.0.0.0", true, Allocated)
	expect(t, r, "a/l3", "10.0.0.1", true, Allocated)
	expect(t, r, "a/c", "10.0.0.2", true, Allocated)

	r = allocate(t, Options{},
		pool("p", 0, "10.0.0.0/28"),
		service("a/base", 1, sharing("k"), ports("TCP/80"), annotated("sluice.dev/sharing-cross-namespace", "b,c")),
		service("b/both", 2, sharing("k"), ports("TCP/81"), annotated("lbipam.cilium.io/sharing-cross-namespace", "a")),
		service("c/oneside", 3, sharing("k"), ports("TCP/82")),
		service("d/star", 4, sharing("k"), ports("TCP/83"), annotated("sluice.dev/sharing-cross-namespace", "*")),
	)
	expect(t, r, "a/base", "10.0.0.0", true, Allocated)
	expect(t, r, "b/both", "10.0.0.0", true, Allocated)
	expect(t, r, "c/oneside", "10.0.0.1", true, Allocated) // it does not allow a
	expect(t, r, "d/star", "10.0.0.2", true, Allocated)    // a does not allow d, c allows no namespace
}

func TestClass(t *testing.T) {
	p := pool("p", 0, "10.0.0.0/28")
	r := allocate(t, Options{}, p,
		service("a/none", 1),
		service("a/ours", 2, class("sluice.dev/lb")),
		service("a/theirs", 3, class("metallb.io/lb")),
		service("a/cluster", 4, clusterIP),
	)
	expect(t, r, "a/none", "10.0.0.0", true, Allocated)
	expect(t, r, "a/ours", "10.0.0.1", true, Allocated)
	for _, k := range []string{"a/theirs", "a/cluster"} {
		if r.Of(key(k)) != nil {
			t.Errorf("%s was allocated: not ours", k)
		}
	}
	r = allocate(t, Options{RequireClass: true}, p, service("a/none", 1), service("a/ours", 2, class("sluice.dev/lb")))
	if r.Of(key("a/none")) != nil {
		t.Errorf("with RequireClass a class-less Service was allocated")
	}
	expect(t, r, "a/ours", "10.0.0.0", true, Allocated)
}

// An address in use never moves: not for a shrunk, edited or deleted pool, not for another
// Service's deletion; the Service is told when its address is outside every pool.
func TestStability(t *testing.T) {
	r := allocate(t, Options{},
		pool("shrunk", 0, "10.0.0.0/30"), // was 10.0.0.0/28
		pool("narrowed", 1, "10.1.0.0/28", serviceSelector("tier", "web")),
		service("a/shrunk", 1, holding("10.0.0.9")),
		service("a/deleted-pool", 2, holding("10.9.0.1")),
		service("a/narrowed", 3, holding("10.1.0.5")),
		service("a/younger", 4, holding("10.0.0.2")), // an older neighbour was deleted: stays
	)
	expect(t, r, "a/shrunk", "10.0.0.9", true, OutsidePools, "10.0.0.9 kept: it is in use but in no pool now")
	expect(t, r, "a/deleted-pool", "10.9.0.1", true, OutsidePools)
	expect(t, r, "a/narrowed", "10.1.0.5", true, OutsidePools, "pool narrowed no longer serves this Service")
	expect(t, r, "a/younger", "10.0.0.2", true, Allocated)

	// Two Services claim one address in their status: the older keeps it.
	r = allocate(t, Options{},
		pool("p", 0, "10.0.0.0/30"),
		service("a/older", 1, holding("10.0.0.1")),
		service("a/newer", 2, holding("10.0.0.1")),
	)
	expect(t, r, "a/older", "10.0.0.1", true, Allocated)
	expect(t, r, "a/newer", "10.0.0.0", true, Allocated, "10.0.0.1 is held by the older Service a/older")
}

// A Service that stops asking for its address loses it: another address requested, another
// pool named, a family dropped.
func TestStopsAsking(t *testing.T) {
	r := allocate(t, Options{},
		pool("a", 0, "10.0.0.0/28"),
		pool("b", 1, "10.1.0.0/28"),
		service("x/rerequest", 1, holding("10.0.0.1"), annotated("sluice.dev/ips", "10.0.0.7")),
		service("x/repool", 2, holding("10.0.0.2"), annotated("sluice.dev/pool", "b")),
		service("x/refamily", 3, holding("10.0.0.3", "2001:db8::1"), policy(corev1.IPFamilyPolicySingleStack, corev1.IPv6Protocol)),
		service("x/next", 4),
	)
	expect(t, r, "x/rerequest", "10.0.0.7", true, Allocated)
	expect(t, r, "x/repool", "10.1.0.0", true, Allocated)
	expect(t, r, "x/refamily", "2001:db8::1", true, OutsidePools)
	expect(t, r, "x/next", "10.0.0.0", true, Allocated) // .1, .2 and .3 are free again, .0 first

	// Asking for an address of one family leaves the other family's address alone.
	r = allocate(t, Options{},
		pool("a", 0, "10.0.0.0/28 2001:db8::/124"),
		service("x/older", 1),
		service("x/dual", 2, holding("10.0.0.5", "2001:db8::5"), policy(corev1.IPFamilyPolicyPreferDualStack),
			annotated("sluice.dev/ips", "10.0.0.5")),
	)
	expect(t, r, "x/dual", "10.0.0.5 2001:db8::5", true, Allocated)
}

func TestPoolUseDualStack(t *testing.T) {
	r := allocate(t, Options{},
		pool("p", 0, "10.0.0.0/29 10.0.1.0/30 2001:db8::/64"),
		service("a/x", 1, policy(corev1.IPFamilyPolicyRequireDualStack)),
	)
	u := r.Pools["p"]
	if u.Used["IPv4"] != 1 || u.Used["IPv6"] != 1 || u.Free["IPv4"].Int64() != 11 || u.Free["IPv6"].String() != "18446744073709551615" {
		t.Errorf("use %v free %v", u.Used, u.Free)
	}
}
