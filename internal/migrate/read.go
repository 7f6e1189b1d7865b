package migrate

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"

	"github.com/sluice-lb/sluice/internal/source"
)

// Limits on what Read accepts, so a runaway or hostile input cannot exhaust memory.
const (
	MaxInput    = 64 << 20 // one file or stream
	maxDocument = 4 << 20  // one YAML document
	maxListSize = 100000   // items of one List
)

// Group is MetalLB's API group.
const Group = "metallb.io"

// Object is one MetalLB (or supporting core) object read from the input.
type Object struct {
	Origin     string // where it was read: "file.yaml: document 3"
	APIVersion string
	Kind       string
	Namespace  string
	Name       string
	Labels     map[string]string

	spec any // *ipAddressPoolSpec, *bgpPeerSpec, ...: by Kind

	config  *legacyConfig   // ConfigMap: its "config" key
	secret  *corev1.Secret  // Secret: for passwordSecret references
	service *corev1.Service // Service: for the address checks
}

// MetalLB reports whether the object is MetalLB configuration (not a Secret or Service
// read beside it).
func (o *Object) MetalLB() bool { return o.spec != nil || o.config != nil }

// String names the object as notes do: "IPAddressPool metallb-system/default".
func (o *Object) String() string {
	if o.Namespace == "" {
		return o.Kind + " " + o.Name
	}
	return o.Kind + " " + o.Namespace + "/" + o.Name
}

// Read parses every YAML (or JSON) document of r, as `kubectl get -o yaml` writes them
// (Lists included). It returns the MetalLB objects, ConfigMaps holding a legacy "config",
// Secrets and LoadBalancer Services; every document it cannot use gives a note naming
// origin and the document, and the others are still returned.
func Read(r io.Reader, origin string) ([]*Object, []Note) {
	data, err := io.ReadAll(io.LimitReader(r, MaxInput+1))
	if err != nil {
		return nil, []Note{{Level: Error, Object: origin, Message: err.Error()}}
	}
	if len(data) > MaxInput {
		return nil, []Note{{Level: Error, Object: origin, Message: fmt.Sprintf("larger than %d MiB: split it", MaxInput>>20)}}
	}
	var objs []*Object
	var notes []Note
	doc := 0
	for raw, err := range source.Documents(data) {
		doc++
		where := fmt.Sprintf("%s: document %d", origin, doc)
		if err != nil {
			notes = append(notes, Note{Level: Error, Object: where, Message: err.Error()})
			break
		}
		if len(raw) > maxDocument {
			notes = append(notes, Note{Level: Error, Object: where, Message: fmt.Sprintf("larger than %d MiB", maxDocument>>20)})
			continue
		}
		if source.IsBlank(raw) {
			continue
		}
		js, err := yaml.YAMLToJSONStrict(raw)
		if err != nil {
			notes = append(notes, Note{Level: Error, Object: where, Message: "invalid YAML: " + err.Error()})
			continue
		}
		o, n := decode(js, where, 0)
		objs = append(objs, o...)
		notes = append(notes, n...)
	}
	return objs, notes
}

// decode reads one JSON object (a List's items in turn, depth deep).
func decode(js []byte, where string, depth int) ([]*Object, []Note) {
	js = bytes.TrimSpace(js)
	if bytes.Equal(js, []byte("null")) {
		return nil, nil
	}
	var head struct {
		metav1.TypeMeta `json:",inline"`
		Metadata        struct {
			Name      string            `json:"name"`
			Namespace string            `json:"namespace"`
			Labels    map[string]string `json:"labels"`
		} `json:"metadata"`
		Items []json.RawMessage `json:"items"`
	}
	if err := json.Unmarshal(js, &head); err != nil {
		return nil, []Note{{Level: Error, Object: where, Message: "not an object: " + shorten(err.Error())}}
	}
	o := &Object{Origin: where, APIVersion: head.APIVersion, Kind: head.Kind,
		Namespace: head.Metadata.Namespace, Name: head.Metadata.Name, Labels: head.Metadata.Labels}
	group, version, _ := strings.Cut(head.APIVersion, "/")
	if version == "" {
		group, version = "", group
	}
	switch {
	case head.Kind == "":
		return nil, []Note{{Level: Error, Object: where, Message: "no kind"}}
	case group == "" && version == "v1" && (head.Kind == "List" || strings.HasSuffix(head.Kind, "List")) && head.Items != nil:
		if depth > 0 {
			return nil, []Note{{Level: Error, Object: where, Message: "a List inside a List"}}
		}
		if len(head.Items) > maxListSize {
			return nil, []Note{{Level: Error, Object: where, Message: fmt.Sprintf("a List of %d items: at most %d", len(head.Items), maxListSize)}}
		}
		var objs []*Object
		var notes []Note
		for i, item := range head.Items {
			o, n := decode(item, fmt.Sprintf("%s, item %d", where, i+1), depth+1)
			objs = append(objs, o...)
			notes = append(notes, n...)
		}
		return objs, notes
	case head.Metadata.Name == "":
		return nil, []Note{{Level: Error, Object: where, Message: head.Kind + " without metadata.name"}}
	}
	o.Origin = fmt.Sprintf("%s (%s)", where, o)
	var spec any
	switch {
	case group == Group:
		spec = newSpec(version, head.Kind)
		if spec == nil {
			return nil, []Note{{Level: Warning, Object: o.String(), Message: fmt.Sprintf("%s/%s %s: not a kind the converter knows; ignored (nothing in it is converted)", group, version, head.Kind)}}
		}
	case group == "" && version == "v1" && head.Kind == "ConfigMap":
		return decodeConfigMap(js, o)
	case group == "" && version == "v1" && head.Kind == "Secret":
		o.secret = &corev1.Secret{}
		if err := json.Unmarshal(js, o.secret); err != nil {
			return nil, []Note{{Level: Error, Object: o.String(), Message: shorten(err.Error())}}
		}
		return []*Object{o}, nil
	case group == "" && version == "v1" && head.Kind == "Service":
		o.service = &corev1.Service{}
		if err := json.Unmarshal(js, o.service); err != nil {
			return nil, []Note{{Level: Error, Object: o.String(), Message: shorten(err.Error())}}
		}
		if o.service.Spec.Type != corev1.ServiceTypeLoadBalancer {
			return nil, nil
		}
		return []*Object{o}, nil
	default:
		return nil, []Note{{Level: Info, Object: o.String(), Message: fmt.Sprintf("%s is not MetalLB configuration; ignored", head.APIVersion)}}
	}
	o.spec = spec
	envelope := struct {
		metav1.TypeMeta   `json:",inline"`
		metav1.ObjectMeta `json:"metadata"`
		Spec              any `json:"spec"`
		Status            any `json:"status,omitempty"`
	}{Spec: spec}
	strict, err := sigsjson.UnmarshalStrict(js, &envelope, sigsjson.DisallowUnknownFields)
	if err != nil {
		return nil, []Note{{Level: Error, Object: o.String(), Message: "not converted: " + shorten(err.Error())}}
	}
	return []*Object{o}, unknownFields(o.String(), strict)
}

// newSpec returns a pointer to the spec type of a metallb.io kind, or nil.
func newSpec(version, kind string) any {
	switch version + "/" + kind {
	case "v1beta1/IPAddressPool":
		return &ipAddressPoolSpec{}
	case "v1beta1/L2Advertisement":
		return &l2AdvertisementSpec{}
	case "v1beta1/BGPAdvertisement":
		return &bgpAdvertisementSpec{}
	case "v1beta1/BGPPeer", "v1beta2/BGPPeer":
		return &bgpPeerSpec{}
	case "v1beta1/BFDProfile":
		return &bfdProfileSpec{}
	case "v1beta1/Community":
		return &communitySpec{}
	case "v1beta1/AddressPool", "v1alpha1/AddressPool":
		return &addressPoolSpec{}
	}
	return nil
}

// decodeConfigMap reads MetalLB's legacy configuration from a ConfigMap's "config" key.
func decodeConfigMap(js []byte, o *Object) ([]*Object, []Note) {
	var cm corev1.ConfigMap
	if err := json.Unmarshal(js, &cm); err != nil {
		return nil, []Note{{Level: Error, Object: o.String(), Message: shorten(err.Error())}}
	}
	if excl, ok := cm.Data["excludel2.yaml"]; ok {
		return nil, []Note{{Level: Warning, Object: o.String(), Field: "data.excludel2.yaml",
			Message: "Sluice has no list of interfaces to leave out of L2 answers: set spec.interfaces of the L2Advertisements to the interfaces to answer on (MetalLB excluded: " + shorten(oneLine(excl)) + ")"}}
	}
	text, ok := cm.Data["config"]
	if !ok {
		return nil, []Note{{Level: Info, Object: o.String(), Message: "has no \"config\" key, so it is not MetalLB's legacy configuration; ignored"}}
	}
	cjs, err := yaml.YAMLToJSONStrict([]byte(text))
	if err != nil {
		return nil, []Note{{Level: Error, Object: o.String(), Field: "data.config", Message: "invalid YAML: " + shorten(err.Error())}}
	}
	o.config = &legacyConfig{}
	strict, err := sigsjson.UnmarshalStrict(cjs, o.config, sigsjson.DisallowUnknownFields)
	if err != nil {
		return nil, []Note{{Level: Error, Object: o.String(), Field: "data.config", Message: "not converted: " + shorten(err.Error())}}
	}
	return []*Object{o}, unknownFields(o.String(), strict, "data.config: ")
}

// unknownFields turns strict decoding errors into one warning each.
func unknownFields(obj string, strict []error, prefix ...string) []Note {
	var notes []Note
	for _, e := range strict {
		msg := e.Error()
		field := ""
		if f, ok := strings.CutPrefix(msg, "unknown field "); ok {
			field = strings.Trim(f, `"`)
			msg = "MetalLB has no such field (a typo, or a newer MetalLB?); ignored"
		}
		if len(prefix) > 0 {
			field = strings.TrimSuffix(prefix[0], ": ") + "." + field
		}
		notes = append(notes, Note{Level: Warning, Object: obj, Field: field, Message: shorten(msg)})
	}
	return notes
}

// shorten bounds a message quoting hostile input.
func shorten(s string) string {
	const max = 300
	if len(s) <= max {
		return s
	}
	return s[:max] + "…"
}
