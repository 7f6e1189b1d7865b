package kubeapi_test

import (
	"strings"
	"testing"

	"github.com/sluice-lb/sluice/test/kubeapi"
)

func TestDecodeObjects(t *testing.T) {
	const stream = `# only a comment
---
apiVersion: v1
kind: Namespace
metadata:
  name: a
---
---
# a comment, then an object
apiVersion: sluice.dev/v1alpha1
kind: IPPool
metadata: {name: p}
spec:
  blocks: [{cidr: 192.0.2.0/24}]
  priority: 3
`
	objs, err := kubeapi.DecodeObjects(strings.NewReader(stream))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, o := range objs {
		got = append(got, kubeapi.Describe(o))
	}
	if want := "Namespace a,IPPool p"; strings.Join(got, ",") != want {
		t.Fatalf("decoded %q, want %q", got, want)
	}
	// Integers stay integers (int64), as the API server returns them.
	if p, ok := objs[1].Object["spec"].(map[string]any)["priority"].(int64); !ok || p != 3 {
		t.Fatalf("priority decoded as %#v", objs[1].Object["spec"].(map[string]any)["priority"])
	}

	if _, err := kubeapi.DecodeObjects(strings.NewReader("apiVersion: v1\nmetadata: {name: x}\n")); err == nil {
		t.Fatal("a document without kind decoded without error")
	}
}

func TestUniqueName(t *testing.T) {
	seen := map[string]bool{}
	for range 3 {
		name := kubeapi.UniqueName(t)
		if !strings.HasPrefix(name, "testuniquename-") || seen[name] {
			t.Fatalf("name %q: want prefix testuniquename- and no repeats (%v)", name, seen)
		}
		seen[name] = true
	}
	t.Run("Sub/Test_With__Odd-CHARS!"+strings.Repeat("x", 80), func(t *testing.T) {
		name := kubeapi.UniqueName(t)
		if len(name) > 63 || strings.Contains(name, "--") || strings.Trim(name, "abcdefghijklmnopqrstuvwxyz0123456789-") != "" ||
			strings.HasPrefix(name, "-") || strings.HasSuffix(name, "-") {
			t.Fatalf("%q is not a DNS label", name)
		}
		if !strings.HasPrefix(name, "testuniquename-sub-test-with-odd-chars-x") {
			t.Fatalf("%q does not start with the sanitized test name", name)
		}
	})
}
