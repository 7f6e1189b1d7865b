package kubeapi_test

import (
	"context"
	"reflect"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sluice-lb/sluice/api/v1alpha1"
	"github.com/sluice-lb/sluice/test/kubeapi"
)

// TestTypedRoundTrip creates objects from the Go types, with every field set, and reads
// them back unchanged: the Go types' JSON (metav1.Duration as "1m30s", say) passes the
// schema and the CEL rules, and nothing is pruned.
func TestTypedRoundTrip(t *testing.T) {
	env := kubeapi.Shared(t)
	selector := &metav1.LabelSelector{MatchLabels: map[string]string{"tier": "frontend"}}
	d := func(x time.Duration) *metav1.Duration { return &metav1.Duration{Duration: x} }
	objs := []client.Object{
		&v1alpha1.IPPool{Spec: v1alpha1.IPPoolSpec{
			Blocks: []v1alpha1.IPBlock{{CIDR: "192.0.2.0/24"}, {CIDR: "2001:db8::/120"},
				{Start: "198.51.100.9", Stop: "198.51.100.10"}, {Start: "2001:db8:1::1", Stop: "2001:db8:1::ff"}},
			AutoAssign: ptr.To(false), AvoidBuggyIPs: true, ServiceSelector: selector, NamespaceSelector: selector,
			Namespaces: []string{"a", "b"}, Priority: 5, Disabled: true,
		}},
		&v1alpha1.BGPPeer{Spec: v1alpha1.BGPPeerSpec{
			PeerAddress: "2001:db8::1", PeerASN: 4294967295, LocalASN: 64512, PeerPort: 1179,
			SourceAddress: "2001:db8::2", RouterID: "192.0.2.1",
			HoldTime: d(90 * time.Second), KeepaliveTime: d(1500 * time.Millisecond), ConnectRetryTime: d(time.Minute),
			EBGPMultihop:      255,
			PasswordSecretRef: &v1alpha1.SecretReference{Name: "bgp", Namespace: "sluice-system"},
			GracefulRestart:   &v1alpha1.GracefulRestart{Enabled: true, RestartTime: d(2 * time.Minute)},
			Families:          []v1alpha1.Family{v1alpha1.FamilyIPv4Unicast, v1alpha1.FamilyIPv6Unicast},
			NodeSelector:      selector,
		}},
		&v1alpha1.BGPPeer{Spec: v1alpha1.BGPPeerSpec{ // hold time 0: no keepalives
			PeerAddress: "192.0.2.1", PeerASN: 1, LocalASN: 1, HoldTime: d(0), KeepaliveTime: d(0),
		}},
		&v1alpha1.BGPAdvertisement{Spec: v1alpha1.BGPAdvertisementSpec{
			Pools: []string{"a"}, PoolSelector: selector, ServiceSelector: selector, NodeSelector: selector,
			Peers:               []string{"p"},
			AddressTypes:        []v1alpha1.AddressType{v1alpha1.AddressLoadBalancerIP, v1alpha1.AddressPodCIDR},
			AggregationLength:   ptr.To[int32](0),
			AggregationLengthV6: ptr.To[int32](64),
			Communities:         []v1alpha1.Community{"65000:100", "4200000000:1:2", "no-export"},
			LocalPreference:     ptr.To[int64](4294967295),
		}},
		&v1alpha1.L2Advertisement{Spec: v1alpha1.L2AdvertisementSpec{
			Pools: []string{"a"}, PoolSelector: selector, ServiceSelector: selector, NodeSelector: selector,
			Interfaces: []string{"eth0", "bond0.100"},
		}},
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	for _, obj := range objs {
		obj.SetName(kubeapi.UniqueName(t))
		want := obj.DeepCopyObject().(client.Object)
		if err := env.Client.Create(ctx, obj, client.FieldValidation(metav1.FieldValidationStrict)); err != nil {
			t.Errorf("create %T: %v", obj, err)
			continue
		}
		t.Cleanup(func() { _ = env.Client.Delete(context.Background(), obj) })
		got := want.DeepCopyObject().(client.Object)
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(obj), got); err != nil {
			t.Errorf("get %T: %v", obj, err)
			continue
		}
		if w, g := specOf(t, want), specOf(t, got); !reflect.DeepEqual(w, g) {
			t.Errorf("%T read back:\n got %#v\nwant %#v", obj, g, w)
		}
	}
}

// TestTypedDefaults checks the defaults the schema fills in.
func TestTypedDefaults(t *testing.T) {
	env := kubeapi.Shared(t)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	pool := &v1alpha1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: kubeapi.UniqueName(t)},
		Spec: v1alpha1.IPPoolSpec{Blocks: []v1alpha1.IPBlock{{CIDR: "192.0.2.0/24"}}}}
	if err := env.Client.Create(ctx, pool); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Client.Delete(context.Background(), pool) })
	if pool.Spec.AutoAssign == nil || !*pool.Spec.AutoAssign {
		t.Errorf("autoAssign defaulted to %v, want true", pool.Spec.AutoAssign)
	}
}

// TestStatusSubresource writes an IPPool's status through the status subresource, and
// checks that a spec update leaves it alone and a status write leaves the spec alone.
func TestStatusSubresource(t *testing.T) {
	env := kubeapi.Shared(t)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	pool := &v1alpha1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: kubeapi.UniqueName(t)},
		Spec: v1alpha1.IPPoolSpec{Blocks: []v1alpha1.IPBlock{{CIDR: "192.0.2.0/24"}}}}
	if err := env.Client.Create(ctx, pool); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Client.Delete(context.Background(), pool) })

	pool.Status = v1alpha1.IPPoolStatus{
		Conditions: []metav1.Condition{{Type: v1alpha1.ConditionValid, Status: metav1.ConditionTrue, Reason: "Accepted",
			Message: "ok", LastTransitionTime: metav1.NewTime(time.Now().Truncate(time.Second)), ObservedGeneration: 1}},
		Addresses: []v1alpha1.AddressCount{{Family: "IPv4", Used: 1, Free: "255"}},
	}
	pool.Spec.Priority = 7 // ignored by a status write
	if err := env.Client.Status().Update(ctx, pool); err != nil {
		t.Fatal(err)
	}
	got := &v1alpha1.IPPool{}
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(pool), got); err != nil {
		t.Fatal(err)
	}
	if got.Spec.Priority != 0 || len(got.Status.Conditions) != 1 || got.Status.Addresses[0].Free != "255" {
		t.Fatalf("after a status write: spec %+v, status %+v", got.Spec, got.Status)
	}

	got.Spec.Priority = 3
	got.Status = v1alpha1.IPPoolStatus{} // ignored by a spec write
	if err := env.Client.Update(ctx, got); err != nil {
		t.Fatal(err)
	}
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(pool), got); err != nil {
		t.Fatal(err)
	}
	if got.Spec.Priority != 3 || len(got.Status.Conditions) != 1 || got.Generation != 2 {
		t.Fatalf("after a spec write: generation %d, spec %+v, status %+v", got.Generation, got.Spec, got.Status)
	}
}

// specOf returns an object's Spec field.
func specOf(t *testing.T, obj client.Object) any {
	t.Helper()
	return reflect.ValueOf(obj).Elem().FieldByName("Spec").Interface()
}
