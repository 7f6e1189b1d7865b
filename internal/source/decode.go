package source

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"strings"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"
)

// Decoder turns multi-document YAML (or JSON), as given to `kubectl apply -f`, into objects.
// Decoding is strict: an unknown or duplicated field rejects its document, as kubectl does.
//
// It remembers, per input name, the result of each document by the hash of its bytes, so
// reading a file again decodes only the documents that changed: a file of 10k Services
// re-read for one edit costs hashing, not 10k strict decodes. An unchanged document gives the
// very object it gave before, so callers must treat the objects as read-only (the model and
// the store do), and can tell an unchanged object by its pointer. It is not safe for
// concurrent use.
type Decoder struct {
	codec runtime.Decoder
	// seen holds, per input name, the documents of its last Decode by content hash.
	seen map[string]map[[sha256.Size]byte]decoded
}

// decoded is decodeOne's result for one document.
type decoded struct {
	obj client.Object
	err error
}

// NewDecoder returns a Decoder for the kinds in Scheme.
func NewDecoder() *Decoder {
	return &Decoder{codec: serializer.NewCodecFactory(Scheme(), serializer.EnableStrict).UniversalDeserializer(),
		seen: map[string]map[[sha256.Size]byte]decoded{}}
}

// maxDocument bounds one YAML document, so a runaway file cannot exhaust memory.
const maxDocument = 4 << 20

// Decode reads every document of r. Each document that cannot be used yields an error naming
// name, the document's number (from 1) and, when known, its kind and name; the other
// documents are still returned. Namespaced objects without a namespace get "default".
func (d *Decoder) Decode(r io.Reader, name string) ([]client.Object, []error) {
	var objs []client.Object
	var errs []error
	before, now := d.seen[name], map[[sha256.Size]byte]decoded{}
	defer func() { d.seen[name] = now }()
	reader := utilyaml.NewYAMLReader(bufio.NewReaderSize(r, 64<<10))
	for doc := 1; ; doc++ {
		raw, err := reader.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: document %d: %w", name, doc, err))
			break
		}
		if len(raw) > maxDocument {
			errs = append(errs, fmt.Errorf("%s: document %d: larger than %d bytes", name, doc, maxDocument))
			continue
		}
		sum := sha256.Sum256(raw)
		res, ok := before[sum]
		if !ok {
			res, ok = now[sum]
		}
		if !ok {
			res.obj, res.err = d.decodeOne(raw)
		}
		now[sum] = res
		obj, err := res.obj, res.err
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: document %d%s: %w", name, doc, describe(raw), err))
			continue
		}
		if obj != nil {
			objs = append(objs, obj)
		}
	}
	return objs, errs
}

// decodeOne decodes one document; an empty one (only comments) gives nil, nil.
func (d *Decoder) decodeOne(raw []byte) (client.Object, error) {
	if isBlank(raw) {
		return nil, nil
	}
	js, err := yaml.YAMLToJSONStrict(raw)
	if err != nil {
		return nil, fmt.Errorf("invalid YAML: %w", err)
	}
	if bytes.Equal(bytes.TrimSpace(js), []byte("null")) {
		return nil, nil
	}
	obj, gvk, err := d.codec.Decode(js, nil, nil)
	if err != nil {
		return nil, err
	}
	cobj, ok := obj.(client.Object)
	if !ok || KindOf(obj) == "" {
		return nil, fmt.Errorf("kind %s is not one sluice reads (IPPool, BGPPeer, BGPAdvertisement, L2Advertisement, Service, EndpointSlice, Node, Namespace, Secret)", gvk.GroupKind())
	}
	if cobj.GetName() == "" {
		return nil, fmt.Errorf("metadata.name is required")
	}
	if namespaced(cobj) && cobj.GetNamespace() == "" {
		cobj.SetNamespace("default")
	}
	if !namespaced(cobj) && cobj.GetNamespace() != "" {
		return nil, fmt.Errorf("%s is cluster-scoped but has metadata.namespace %q", KindOf(obj), cobj.GetNamespace())
	}
	return cobj, nil
}

func namespaced(obj client.Object) bool {
	switch KindOf(obj) {
	case "Service", "EndpointSlice", "Secret":
		return true
	}
	return false
}

func isBlank(raw []byte) bool {
	for _, line := range strings.Split(string(raw), "\n") {
		line = strings.TrimSpace(line)
		if line != "" && !strings.HasPrefix(line, "#") {
			return false
		}
	}
	return true
}

// describe names a document's kind and name as best it can, for error messages.
func describe(raw []byte) string {
	var head struct {
		Kind     string `json:"kind"`
		Metadata struct {
			Name      string `json:"name"`
			Namespace string `json:"namespace"`
		} `json:"metadata"`
	}
	if yaml.Unmarshal(raw, &head) != nil || head.Kind == "" {
		return ""
	}
	name := head.Metadata.Name
	if head.Metadata.Namespace != "" {
		name = head.Metadata.Namespace + "/" + name
	}
	return fmt.Sprintf(" (%s %s)", head.Kind, name)
}
