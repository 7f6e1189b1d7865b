package source

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/sluice-lb/sluice/api/v1alpha1"
)

const goodDocs = `
# a comment-only document
---
apiVersion: sluice.dev/v1alpha1
kind: IPPool
metadata: {name: pool-a}
spec:
  blocks: [{cidr: 203.0.113.0/28}]
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  type: LoadBalancer
  ports: [{port: 80}]
---
{"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-1"}}
`

func TestDecodeGood(t *testing.T) {
	objs, errs := NewDecoder().Decode(strings.NewReader(goodDocs), "good.yaml")
	if len(errs) != 0 {
		t.Fatalf("errors: %v", errs)
	}
	var got []string
	for _, o := range objs {
		got = append(got, KeyOf(o).String())
	}
	want := "IPPool pool-a,Service default/web,Node node-1"
	if strings.Join(got, ",") != want {
		t.Fatalf("got %v, want %s", got, want)
	}
	if p := objs[0].(*v1alpha1.IPPool); p.Spec.Blocks[0].CIDR != "203.0.113.0/28" {
		t.Fatalf("pool decoded wrong: %+v", p.Spec)
	}
}

// TestDecodeBadDocuments: each bad document gives an error naming the file, the document and
// what is wrong, and the good document after it is still returned.
func TestDecodeBadDocuments(t *testing.T) {
	good := "---\napiVersion: v1\nkind: Node\nmetadata: {name: survivor}\n"
	cases := map[string]struct{ doc, want string }{
		"unknown field":  {"apiVersion: sluice.dev/v1alpha1\nkind: IPPool\nmetadata: {name: p}\nspec: {autoAsign: true, blocks: []}\n", `document 1 (IPPool p): strict decoding error: unknown field "spec.autoAsign"`},
		"metallb kind":   {"apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: p, namespace: metallb-system}\n", `document 1 (IPAddressPool metallb-system/p): no kind "IPAddressPool" is registered`},
		"other kind":     {"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n", "kind ConfigMap is not one sluice reads"},
		"no name":        {"apiVersion: v1\nkind: Node\nmetadata: {}\n", "metadata.name is required"},
		"no kind":        {"apiVersion: v1\nmetadata: {name: x}\n", "Object 'Kind' is missing"},
		"bad yaml":       {"apiVersion: v1\nkind: Node\nmetadata: {name: [x\n", "document 1"},
		"scoped":         {"apiVersion: sluice.dev/v1alpha1\nkind: IPPool\nmetadata: {name: p, namespace: x}\nspec: {blocks: []}\n", `cluster-scoped but has metadata.namespace "x"`},
		"wrong type":     {"apiVersion: sluice.dev/v1alpha1\nkind: BGPPeer\nmetadata: {name: p}\nspec: {peerASN: many}\n", "BGPPeer p"},
		"duplicate keys": {"apiVersion: v1\nkind: Node\nmetadata: {name: a}\nmetadata: {name: b}\n", "document 1"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			objs, errs := NewDecoder().Decode(strings.NewReader(tc.doc+good), "in.yaml")
			if len(errs) != 1 || !strings.Contains(errs[0].Error(), "in.yaml: ") || !strings.Contains(errs[0].Error(), tc.want) {
				t.Fatalf("errors %v, want one containing %q", errs, tc.want)
			}
			if len(objs) != 1 || objs[0].GetName() != "survivor" {
				t.Fatalf("the good document must survive, got %v", objs)
			}
		})
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(goodDocs)
	f.Add("---\n---\n")
	f.Add("kind: IPPool\napiVersion: sluice.dev/v1alpha1\nmetadata: {name: a}\nspec: {blocks: [{cidr: x}]}")
	f.Add("{\"kind\": \"Service\", \"apiVersion\": \"v1\", \"metadata\": {\"name\": \"s\"}}")
	d := NewDecoder()
	f.Fuzz(func(t *testing.T, in string) {
		objs, _ := d.Decode(strings.NewReader(in), "fuzz.yaml")
		for _, o := range objs {
			if KindOf(o) == "" || o.GetName() == "" {
				t.Fatalf("decoded an object that is not usable: %#v", o)
			}
		}
	})
}

// TestDecoderRemembers: a second Decode of the same input gives the very same objects (and
// errors), a changed document is decoded anew, and one no longer there is forgotten.
func TestDecoderRemembers(t *testing.T) {
	d := NewDecoder()
	doc := func(port string) string {
		return "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: demo}\nspec: {ports: [{port: " + port + "}]}\n---\n" +
			"apiVersion: v1\nkind: Service\nmetadata: {name: bad, namespace: demo}\nspec: {nope: 1}\n"
	}
	first, errs := d.Decode(strings.NewReader(doc("80")), "f.yaml")
	if len(first) != 1 || len(errs) != 1 {
		t.Fatalf("first decode: %d objects, %v", len(first), errs)
	}
	again, errs := d.Decode(strings.NewReader(doc("80")), "f.yaml")
	if len(again) != 1 || len(errs) != 1 || again[0] != first[0] || !strings.Contains(errs[0].Error(), "document 2") {
		t.Fatalf("second decode: %+v, %v; want the same object", again, errs)
	}
	changed, _ := d.Decode(strings.NewReader(doc("81")), "f.yaml")
	if changed[0] == first[0] || changed[0].(*corev1.Service).Spec.Ports[0].Port != 81 || first[0].(*corev1.Service).Spec.Ports[0].Port != 80 {
		t.Fatalf("changed document decoded as %+v", changed[0])
	}
	if n := len(d.seen["f.yaml"]); n != 2 {
		t.Fatalf("%d documents remembered after the change, want the 2 of the last read", n)
	}
	d.Decode(strings.NewReader(doc("82")), "g.yaml")
	d.Forget([]string{"g.yaml"}) // f.yaml is gone
	if _, ok := d.seen["f.yaml"]; ok || len(d.seen["g.yaml"]) != 2 {
		t.Fatalf("after f.yaml went, the decoder remembers %d inputs", len(d.seen))
	}
}
