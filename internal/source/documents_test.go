package source

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"testing"

	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
)

// FuzzDocuments: documents splits any input into the very documents, and fails at the very
// document with the very message, that apimachinery's YAMLReader (what kubectl uses) does.
func FuzzDocuments(f *testing.F) {
	for _, seed := range []string{
		"", "a: 1", "a: 1\n", "---\na: 1\n---\nb: 2\n", "a: 1\n---\n---\nb: 2", "--- # c\na\n--- \n", "a\r\n---\r\nb\r\n",
		"a\n---x\nb\n", "a\n--- x\n", "a\r", "\n\n---\n\n", "---", "a\n---", "- x\n-- y\n----\nz\n", "a: |\n  ---\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		want := splitLikeKubectl(data)
		var got []string
		for doc, err := range Documents(data) {
			if err != nil {
				got = append(got, "error: "+err.Error())
				break
			}
			got = append(got, string(doc))
		}
		if fmt.Sprintf("%q", got) != fmt.Sprintf("%q", want) {
			t.Fatalf("input %q:\n got %q\nwant %q", data, got, want)
		}
	})
}

func splitLikeKubectl(data []byte) []string {
	var out []string
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			return append(out, "error: "+err.Error())
		}
		out = append(out, string(doc))
	}
}
