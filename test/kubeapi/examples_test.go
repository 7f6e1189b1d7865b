package kubeapi_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/netip"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sluice-lb/sluice/api/v1alpha1"
	"github.com/sluice-lb/sluice/test/kubeapi"
)

// exampleFiles are the files of examples/, each of which must exist.
var exampleFiles = []string{"ippool.yaml", "bgppeer.yaml", "bgpadvertisement.yaml", "l2advertisement.yaml"}

// examplePaths lists examples/*.yaml, checking that every file of exampleFiles is there.
func examplePaths(t *testing.T) []string {
	t.Helper()
	root, err := kubeapi.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	paths, err := filepath.Glob(filepath.Join(root, "examples", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range exampleFiles {
		if !slices.Contains(paths, filepath.Join(root, "examples", name)) {
			t.Errorf("examples/%s is missing", name)
		}
	}
	return paths
}

// TestExamplesAccepted creates every object of every examples/*.yaml file (quickstart.yaml
// too, when it exists) on a real API server, reads each back and checks that nothing it
// said was dropped or changed. The objects of one file are deleted before the next file,
// so files may reuse names; namespaces stay.
func TestExamplesAccepted(t *testing.T) {
	paths := examplePaths(t)
	env := kubeapi.Shared(t)
	kinds := map[string]bool{}
	for _, path := range paths {
		t.Run(filepath.Base(path), func(t *testing.T) {
			objs, err := kubeapi.ReadObjects(path)
			if err != nil {
				t.Fatal(err)
			}
			if len(objs) == 0 {
				t.Fatal("no objects")
			}
			for _, obj := range objs {
				if obj.GroupVersionKind().Group == v1alpha1.GroupVersion.Group {
					kinds[obj.GetKind()] = true
				}
			}
			createAndReadBack(t, env, objs)
		})
	}
	for _, kind := range []string{"IPPool", "BGPPeer", "BGPAdvertisement", "L2Advertisement"} {
		if !kinds[kind] {
			t.Errorf("no example of kind %s", kind)
		}
	}
}

// createAndReadBack creates objs (and the namespaces they need), reads each back, checks
// that nothing it said was dropped or changed, and deletes them when the test ends.
func createAndReadBack(t *testing.T, env *kubeapi.Env, objs []*unstructured.Unstructured) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	want := make([]*unstructured.Unstructured, len(objs))
	for i, obj := range objs {
		want[i] = obj.DeepCopy()
	}
	t.Cleanup(func() { deleteObjects(t, env, objs) })
	if err := env.CreateObjects(ctx, objs); err != nil {
		t.Fatal(err)
	}
	for i, obj := range want {
		got := &unstructured.Unstructured{}
		got.SetGroupVersionKind(obj.GroupVersionKind())
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(objs[i]), got); err != nil {
			t.Errorf("get %s: %v", kubeapi.Describe(objs[i]), err)
			continue
		}
		for _, diff := range missing(expectation(obj), got.Object, "") {
			t.Errorf("%s read back: %s", kubeapi.Describe(objs[i]), diff)
		}
	}
}

// TestCoreKindsAccepted runs what TestExamplesAccepted does for a quickstart on the
// built-in kinds a quickstart holds: a dual-stack LoadBalancer Service in a namespace
// that does not exist yet, its EndpointSlice, and a Node.
func TestCoreKindsAccepted(t *testing.T) {
	env := kubeapi.Shared(t)
	ns, name := kubeapi.UniqueName(t), kubeapi.UniqueName(t)
	objs, err := kubeapi.DecodeObjects(strings.NewReader(strings.NewReplacer("NS", ns, "NAME", name).Replace(`
apiVersion: v1
kind: Service
metadata: {name: NAME, namespace: NS, labels: {tier: frontend}}
spec:
  type: LoadBalancer
  ipFamilyPolicy: RequireDualStack
  ipFamilies: [IPv4, IPv6]
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: 8080, protocol: TCP}]
  loadBalancerIP: 192.0.2.10
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: NAME-1
  namespace: NS
  labels: {kubernetes.io/service-name: NAME}
addressType: IPv4
endpoints:
  - addresses: [10.244.1.5]
    conditions: {ready: true}
    nodeName: NAME
ports: [{name: http, port: 8080, protocol: TCP}]
---
apiVersion: v1
kind: Node
metadata: {name: NAME, labels: {sluice.dev/bgp-speaker: "true"}}
spec:
  podCIDR: 10.244.1.0/24
  podCIDRs: [10.244.1.0/24]
status:
  addresses: [{type: InternalIP, address: 192.0.2.21}]
`)))
	if err != nil {
		t.Fatal(err)
	}
	createAndReadBack(t, env, objs)
}

// deleteObjects deletes objs, in reverse order, except namespaces.
func deleteObjects(t *testing.T, env *kubeapi.Env, objs []*unstructured.Unstructured) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, obj := range slices.Backward(objs) {
		if obj.GetKind() == "Namespace" && obj.GetAPIVersion() == "v1" {
			continue
		}
		if err := env.Client.Delete(ctx, obj); err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("delete %s: %v", kubeapi.Describe(obj), err)
		}
	}
}

// expectation is what the server should return for obj: everything but status (set
// through its subresource) and the server-owned metadata, with a Secret's stringData
// moved into data.
func expectation(obj *unstructured.Unstructured) map[string]any {
	want := obj.DeepCopy().Object
	delete(want, "status")
	if obj.GetKind() == "Secret" && obj.GetAPIVersion() == "v1" {
		if sd, ok := want["stringData"].(map[string]any); ok {
			data, _ := want["data"].(map[string]any)
			if data == nil {
				data = map[string]any{}
			}
			for k, v := range sd {
				data[k] = base64.StdEncoding.EncodeToString([]byte(fmt.Sprint(v)))
			}
			want["data"] = data
			delete(want, "stringData")
		}
	}
	return want
}

// missing lists where got lacks or differs from a value of want; got may hold more (the
// server's defaults and metadata).
func missing(want, got any, path string) []string {
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			return []string{fmt.Sprintf("%s: got %#v, want an object", path, got)}
		}
		var diffs []string
		keys := make([]string, 0, len(w))
		for k := range w {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			gv, ok := g[k]
			if !ok {
				diffs = append(diffs, fmt.Sprintf("%s.%s: missing (pruned?), want %#v", path, k, w[k]))
				continue
			}
			diffs = append(diffs, missing(w[k], gv, path+"."+k)...)
		}
		return diffs
	case []any:
		g, ok := got.([]any)
		if !ok || len(g) != len(w) {
			return []string{fmt.Sprintf("%s: got %#v, want %#v", path, got, want)}
		}
		var diffs []string
		for i := range w {
			diffs = append(diffs, missing(w[i], g[i], fmt.Sprintf("%s[%d]", path, i))...)
		}
		return diffs
	default:
		if !reflect.DeepEqual(want, got) {
			return []string{fmt.Sprintf("%s: got %#v, want %#v", path, got, want)}
		}
		return nil
	}
}

// documentation ranges (RFC 5737, RFC 3849): the only addresses examples may use.
var documentation = []netip.Prefix{
	netip.MustParsePrefix("192.0.2.0/24"),
	netip.MustParsePrefix("198.51.100.0/24"),
	netip.MustParsePrefix("203.0.113.0/24"),
	netip.MustParsePrefix("2001:db8::/32"),
}

// TestExamplesUseDocumentationValues checks that the sluice.dev objects of the per-kind
// examples use only documentation addresses and private AS numbers (64512-65534), so
// nobody copies a real network into theirs. quickstart.yaml is left out.
func TestExamplesUseDocumentationValues(t *testing.T) {
	root, err := kubeapi.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range exampleFiles {
		objs, err := kubeapi.ReadObjects(filepath.Join(root, "examples", name))
		if err != nil {
			t.Fatal(err)
		}
		for _, obj := range objs {
			if obj.GroupVersionKind().Group != v1alpha1.GroupVersion.Group {
				continue
			}
			walkStrings(obj.Object["spec"], "spec", func(path, s string) {
				addr, err := netip.ParseAddr(s)
				if p, perr := netip.ParsePrefix(s); perr == nil {
					addr, err = p.Addr(), nil
				}
				if err == nil && !slices.ContainsFunc(documentation, func(p netip.Prefix) bool { return p.Contains(addr) }) {
					t.Errorf("%s %s: %s = %s is not a documentation address", name, kubeapi.Describe(obj), path, s)
				}
			})
			for _, field := range []string{"peerASN", "localASN"} {
				if asn, ok, _ := unstructured.NestedInt64(obj.Object, "spec", field); ok && (asn < 64512 || asn > 65534) {
					t.Errorf("%s %s: %s %d is not a private ASN (64512-65534)", name, kubeapi.Describe(obj), field, asn)
				}
			}
			comms, _, _ := unstructured.NestedStringSlice(obj.Object, "spec", "communities")
			for _, c := range comms {
				if asn, _, ok := strings.Cut(c, ":"); ok && (len(asn) != 5 || asn < "64512" || asn > "65534") {
					t.Errorf("%s %s: community %s does not start with a private ASN", name, kubeapi.Describe(obj), c)
				}
			}
		}
	}
}

// walkStrings calls fn for every string in v, with its path.
func walkStrings(v any, path string, fn func(path, s string)) {
	switch v := v.(type) {
	case map[string]any:
		for k, e := range v {
			walkStrings(e, path+"."+k, fn)
		}
	case []any:
		for i, e := range v {
			walkStrings(e, fmt.Sprintf("%s[%d]", path, i), fn)
		}
	case string:
		fn(path, v)
	}
}
