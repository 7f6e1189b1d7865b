package migrate

import (
	"bytes"
	"io"

	"fmt"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"strings"
	"testing"
)

// readConvert reads text and converts it, returning the notes of both and the output.
func readConvert(t *testing.T, text string) (*Result, string) {
	t.Helper()
	objs, notes := Read(strings.NewReader(text), "input.yaml")
	r := Convert(objs, Options{})
	r.Notes = append(notes, r.Notes...)
	var out bytes.Buffer
	if err := Write(&out, r); err != nil {
		t.Fatal(err)
	}
	return r, out.String()
}

const goodPool = `
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {name: good, namespace: metallb-system}
spec:
  addresses: [192.0.2.0/28]
`

// TestHostileInput: broken and hostile documents each get a note that says what and where,
// nothing panics, and the good pool beside them is still converted.
func TestHostileInput(t *testing.T) {
	tests := []struct {
		name   string
		doc    string
		level  Level
		object string // part of the note's object
		field  string
		text   string // part of the note's message
	}{
		{"unknown spec field", "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: p}\nspec: {addresses: [198.51.100.0/24], autoassign: true}",
			Warning, "IPAddressPool p", "spec.autoassign", "no such field"},
		{"unknown top-level field", "apiVersion: metallb.io/v1beta1\nkind: L2Advertisement\nmetadata: {name: l}\nspecs: {}",
			Warning, "L2Advertisement l", "specs", "no such field"},
		{"bad CIDR", "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: p}\nspec: {addresses: [198.51.100.0/33, 198.51.100.0/24]}",
			Error, "IPAddressPool p", "spec.addresses[0]", "neither a CIDR"},
		{"range backwards", "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: p}\nspec: {addresses: [198.51.100.9-198.51.100.1]}",
			Error, "IPAddressPool p", "spec.addresses[0]", "ends before it starts"},
		{"range of two families", "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: p}\nspec: {addresses: [198.51.100.1-2001:db8::1]}",
			Error, "IPAddressPool p", "spec.addresses[0]", "mixes IPv4 and IPv6"},
		{"no usable address", "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: p}\nspec: {addresses: [nonsense]}",
			Error, "IPAddressPool p", "spec.addresses", "no usable address"},
		{"wrong type", "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: p}\nspec: {addresses: 5}",
			Error, "IPAddressPool p", "", "not converted"},
		{"bad peer address", "apiVersion: metallb.io/v1beta2\nkind: BGPPeer\nmetadata: {name: r}\nspec: {myASN: 1, peerASN: 2, peerAddress: 10.0.0.300}",
			Error, "BGPPeer r", "spec.peerAddress", "not an IP address"},
		{"ASN out of range", "apiVersion: metallb.io/v1beta2\nkind: BGPPeer\nmetadata: {name: r}\nspec: {myASN: 4294967296, peerASN: 2, peerAddress: 10.0.0.1}",
			Error, "BGPPeer r", "", "not converted"},
		{"bad selector operator", "apiVersion: metallb.io/v1beta1\nkind: L2Advertisement\nmetadata: {name: l}\nspec: {nodeSelectors: [{matchExpressions: [{key: a, operator: Like, values: [b]}]}]}",
			Error, "L2Advertisement l", "spec.nodeSelectors", "not converted"},
		{"bad legacy operator", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: config}\ndata:\n  config: |\n    peers:\n    - {peer-address: 10.0.0.1, peer-asn: 1, my-asn: 2, node-selectors: [{match-expressions: [{key: a, operator: like}]}]}",
			Error, "ConfigMap config", "data.config.peers[0].node-selectors", "operator"},
		{"legacy config not YAML", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: config}\ndata:\n  config: \"peers: [\"",
			Error, "ConfigMap config", "data.config", "invalid YAML"},
		{"legacy unknown key", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: config}\ndata:\n  config: |\n    address-pool: []",
			Warning, "ConfigMap config", "data.config.address-pool", "no such field"},
		{"legacy bad duration", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: config}\ndata:\n  config: |\n    peers:\n    - {peer-address: 10.0.0.1, peer-asn: 1, my-asn: 2, hold-time: forever}",
			Error, "ConfigMap config", "data.config.peers[0].hold-time", "not a duration"},
		{"legacy pool without protocol", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: config}\ndata:\n  config: |\n    address-pools:\n    - {name: x, addresses: [198.51.100.0/24]}",
			Error, "ConfigMap config", "data.config.address-pools[0].protocol", "neither layer2 nor bgp"},
		{"invalid name", "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: \"Bad Name\\nwith a newline\"}\nspec: {addresses: [198.51.100.0/24]}",
			Error, "IPAddressPool Bad Name", "metadata.name", "not a valid object name"},
		{"YAML line breaks in a name", "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: \"x\\u2028apiVersion: v1\\u2028kind: ConfigMap\\u0085metadata: {name: injected}\\u2029#\"}\nspec: {addresses: [198.51.100.0/24]}",
			Error, "IPAddressPool x", "metadata.name", "not a valid object name"},
		{"same name twice", goodPool,
			Error, "IPAddressPool metallb-system/good", "metadata.name", "already made from"},
		{"no kind", "apiVersion: metallb.io/v1beta1\nmetadata: {name: x}", Error, "document 2", "", "no kind"},
		{"no name", "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nspec: {}", Error, "document 2", "", "without metadata.name"},
		{"unknown MetalLB kind", "apiVersion: metallb.io/v1beta1\nkind: OSPFInstance\nmetadata: {name: x}", Warning, "OSPFInstance x", "", "not a kind the converter knows"},
		{"not MetalLB", "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}", Info, "Deployment x", "", "not MetalLB configuration"},
		{"a scalar", "just a string", Error, "document 2", "", "not an object"},
		{"a sequence", "- a\n- b", Error, "document 2", "", "not an object"},
		{"invalid YAML", "a: [1, 2\nb: }", Error, "document 2", "", "invalid YAML"},
		{"duplicate key", "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nkind: IPAddressPool\nmetadata: {name: x}", Error, "document 2", "", "invalid YAML"},
		{"List in a List", "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: List\n  metadata: {name: inner}\n  items: []", Error, "item 1", "", "a List inside a List"},
		{"alias bomb", "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\ne: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]\ng: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]\nh: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]\ni: [*h, *h, *h, *h, *h, *h, *h, *h, *h]",
			Error, "document 2", "", "invalid YAML"},
		{"bad separator", "--- !!junk\nkind: x", Error, "document 2", "", "separator"},
		{"bad community", "apiVersion: metallb.io/v1beta1\nkind: Community\nmetadata: {name: c}\nspec: {communities: [{name: x, value: \"70000:1\"}]}",
			Error, "Community c", "spec.communities[0]", "alias \"x\" not converted"},
		{"bad large community", "apiVersion: metallb.io/v1beta1\nkind: BGPAdvertisement\nmetadata: {name: b}\nspec: {communities: [\"large:1:2\"]}",
			Error, "BGPAdvertisement b", "spec.communities[0]", "left out"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, out := readConvert(t, goodPool+"---\n"+tt.doc+"\n")
			if !has(r.Notes, tt.level, tt.object, tt.field, tt.text) {
				t.Errorf("no %s note on %q field %q saying %q; notes:\n%s", tt.level, tt.object, tt.field, tt.text, notesText(r.Notes))
			}
			if !strings.Contains(out, "# from IPAddressPool metallb-system/good\n") {
				t.Errorf("the good pool was lost:\n%s", out)
			}
		})
	}
}

// TestNoInjection: names that carry YAML line breaks stay inside their comments: the output
// holds exactly the objects converted.
func TestNoInjection(t *testing.T) {
	doc := "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: \"x\\u2028apiVersion: v1\\u2028kind: ConfigMap\\u0085metadata: {name: injected}\\u2029#\", namespace: \"ns\\u2028kind: Secret\"}\nspec: {addresses: [198.51.100.0/24]}\n"
	r, out := readConvert(t, goodPool+"---\n"+doc)
	objs, err := kubeapiDecode(out)
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) != len(r.Objects) || len(objs) != 1 {
		t.Errorf("the output holds %d objects, want the 1 converted:\n%s", len(objs), out)
	}
}

// TestHugeInput: a file over the limit is refused as a whole with a clear note, and a huge
// document alone is refused while the rest is read.
func TestHugeInput(t *testing.T) {
	_, notes := Read(bytes.NewReader(make([]byte, MaxInput+1)), "huge.yaml")
	if len(notes) != 1 || notes[0].Level != Error || !strings.Contains(notes[0].Message, "larger than 64 MiB") {
		t.Errorf("huge file: notes %v", notes)
	}
	big := "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: big}\ndata: {x: \"" + strings.Repeat("a", maxDocument) + "\"}\n"
	r, out := readConvert(t, big+"---"+goodPool)
	if !has(r.Notes, Error, "huge", "", "") && !has(r.Notes, Error, "document 1", "", "larger than 4 MiB") {
		t.Errorf("huge document: notes\n%s", notesText(r.Notes))
	}
	if !strings.Contains(out, "name: good") {
		t.Errorf("the good pool after a huge document was lost:\n%s", out)
	}
	// Many small objects are fine: 20k pools of one address each.
	var b strings.Builder
	for i := range 20000 {
		fmt.Fprintf(&b, "---\napiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: p%d}\nspec: {addresses: [10.%d.%d.1/32]}\n", i, i/256, i%256)
	}
	r, _ = readConvert(t, b.String())
	if len(r.Objects) != 20000 || r.Count(Error) != 0 {
		t.Errorf("20k pools: %d objects, %d errors", len(r.Objects), r.Count(Error))
	}
}

func notesText(notes []Note) string {
	var b strings.Builder
	for _, n := range notes {
		b.WriteString("  " + n.String() + "\n")
	}
	return b.String()
}

// FuzzConvert: no input makes Read, Convert or Write panic, and whatever Write writes
// decodes as YAML.
func FuzzConvert(f *testing.F) {
	for _, s := range []string{goodPool, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: config}\ndata:\n  config: |\n    peers: [{peer-address: 10.0.0.1, peer-asn: 1, my-asn: 2}]\n    address-pools: [{name: a, protocol: bgp, addresses: [10.0.0.0/24]}]",
		"apiVersion: metallb.io/v1beta2\nkind: BGPPeer\nmetadata: {name: r}\nspec: {myASN: 1, peerASN: 2, peerAddress: 10.0.0.1, password: x, nodeSelectors: [{matchLabels: {a: b}}, {matchLabels: {a: c}}]}",
		"apiVersion: v1\nkind: List\nitems: [{apiVersion: metallb.io/v1beta1, kind: L2Advertisement, metadata: {name: l}}]"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		objs, notes := Read(bytes.NewReader(data), "fuzz.yaml")
		r := Convert(objs, Options{})
		r.Notes = append(notes, r.Notes...)
		var out bytes.Buffer
		if err := Write(&out, r); err != nil {
			return // an object the converter made that does not marshal is reported, not a crash
		}
		back, backNotes := Read(&out, "output")
		if len(back) != 0 || len(backNotes) != len(r.Objects) {
			// The output is Sluice's kinds, not MetalLB's: each is "not MetalLB configuration".
			for _, n := range backNotes {
				if n.Level == Error {
					t.Fatalf("output does not read back: %s\n%s", n, out.String())
				}
			}
		}
	})
}

// kubeapiDecode reads multi-document YAML as kubectl does.
func kubeapiDecode(text string) ([]*unstructured.Unstructured, error) {
	dec := utilyaml.NewYAMLOrJSONDecoder(strings.NewReader(text), 4096)
	var out []*unstructured.Unstructured
	for {
		u := &unstructured.Unstructured{}
		if err := dec.Decode(&u.Object); err != nil {
			if err == io.EOF {
				return out, nil
			}
			return nil, err
		}
		if len(u.Object) > 0 {
			out = append(out, u)
		}
	}
}
