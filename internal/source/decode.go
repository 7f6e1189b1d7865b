package source

import (
	"bytes"
	"fmt"
	"io"
	"iter"
	"os"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"
)

// Decoder turns multi-document YAML (or JSON), as given to `kubectl apply -f`, into objects.
// Decoding is strict: an unknown or duplicated field rejects its document, as kubectl does.
//
// It remembers, per input name, the result of each document by its text, so reading a file
// again decodes only the documents that changed: a file of 10k Services re-read for one edit
// costs 10k map lookups, not 10k strict decodes. An unchanged document gives the
// very object it gave before, so callers must treat the objects as read-only (the model and
// the store do), and can tell an unchanged object by its pointer. It is not safe for
// concurrent use.
type Decoder struct {
	codec runtime.Decoder
	// seen holds, per input name, the documents of its last Decode by their text.
	seen  map[string]map[string]*decoded
	reads uint64 // Decodes so far
}

// decoded is decodeOne's result for one document.
type decoded struct {
	obj  client.Object
	err  error
	read uint64 // the last Decode that met it
}

// NewDecoder returns a Decoder for the kinds in Scheme.
func NewDecoder() *Decoder {
	return &Decoder{codec: serializer.NewCodecFactory(Scheme(), serializer.EnableStrict).UniversalDeserializer(),
		seen: map[string]map[string]*decoded{}}
}

// Forget drops what the Decoder remembers of every input but those named: files that are
// gone must not keep their objects in memory.
func (d *Decoder) Forget(except []string) {
	for name := range d.seen {
		if !slices.Contains(except, name) {
			delete(d.seen, name)
		}
	}
}

// maxDocument bounds one YAML document and maxInput one input, so a runaway file cannot
// exhaust memory.
const (
	maxDocument = 4 << 20
	maxInput    = 256 << 20
)

// Documents splits data into YAML documents exactly as apimachinery's YAMLReader does (the
// "document N" of error messages counts the same): a line that starts with "---" ends the
// document before it, unless that one is empty, in which case it starts the next; what
// follows the "---" may only be spaces or a comment; lines end with "\n" ("\r\n" becomes
// "\n"). Unlike YAMLReader it works in place: a document without "\r" is a slice of data,
// where YAMLReader copies every line, twice.
func Documents(data []byte) iter.Seq2[[]byte, error] {
	return func(yield func([]byte, error) bool) {
		start := -1 // where the current document starts; -1: none yet
		for pos := 0; pos < len(data); {
			next := len(data)
			if i := bytes.IndexByte(data[pos:], '\n'); i >= 0 {
				next = pos + i + 1
			}
			if line := data[pos:next]; bytes.HasPrefix(line, []byte("---")) {
				if rest := bytes.TrimSpace(line[3:]); len(rest) > 0 && rest[0] != '#' {
					yield(nil, fmt.Errorf("invalid Yaml document separator: %s", rest))
					return
				}
				if start >= 0 {
					if !yield(lines(data[start:pos]), nil) {
						return
					}
					start, pos = -1, next
					continue
				}
			}
			if start < 0 {
				start = pos
			}
			pos = next
		}
		if start >= 0 {
			yield(lines(data[start:]), nil)
		}
	}
}

// lines returns b with every line ending in "\n": b itself when it does already.
func lines(b []byte) []byte {
	if bytes.HasSuffix(b, []byte("\n")) && bytes.IndexByte(b, '\r') < 0 {
		return b
	}
	out := bytes.ReplaceAll(b, []byte("\r\n"), []byte("\n"))
	if !bytes.HasSuffix(out, []byte("\n")) {
		out = append(out, '\n')
	}
	return out
}

// Decode reads every document of r. Each document that cannot be used yields an error naming
// name, the document's number (from 1) and, when known, its kind and name; the other
// documents are still returned. Namespaced objects without a namespace get "default".
func (d *Decoder) Decode(r io.Reader, name string) ([]client.Object, []error) {
	var objs []client.Object
	var errs []error
	var buf bytes.Buffer
	if f, ok := r.(*os.File); ok { // read a file in one go, not by doubling a buffer
		if st, err := f.Stat(); err == nil && st.Size() <= maxInput {
			buf.Grow(int(st.Size()) + bytes.MinRead)
		}
	}
	_, err := buf.ReadFrom(io.LimitReader(r, maxInput+1))
	data := buf.Bytes()
	if err != nil {
		return nil, []error{fmt.Errorf("%s: %w", name, err)}
	}
	if len(data) > maxInput {
		return nil, []error{fmt.Errorf("%s: larger than %d MiB: split it into several files of a directory", name, maxInput>>20)}
	}
	seen := d.seen[name]
	if seen == nil {
		seen = map[string]*decoded{}
		d.seen[name] = seen
	}
	d.reads++
	doc, distinct := 0, 0
	defer func() {
		if len(seen) > distinct { // forget the documents that are gone
			for text, res := range seen {
				if res.read != d.reads {
					delete(seen, text)
				}
			}
		}
	}()
	for raw, err := range Documents(data) {
		doc++
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: document %d: %w", name, doc, err))
			break
		}
		if len(raw) > maxDocument {
			errs = append(errs, fmt.Errorf("%s: document %d: larger than %d bytes", name, doc, maxDocument))
			continue
		}
		res := seen[string(raw)]
		if res == nil {
			res = &decoded{}
			res.obj, res.err = d.decodeOne(raw)
			seen[string(raw)] = res
		}
		if res.read != d.reads {
			res.read = d.reads
			distinct++
		}
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
	if IsBlank(raw) {
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

// IsBlank reports whether a document holds only spaces and comments.
func IsBlank(raw []byte) bool {
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
