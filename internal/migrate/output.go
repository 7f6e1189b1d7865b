package migrate

import (
	"bufio"
	"fmt"
	"io"
	"strings"
	"unicode"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/sluice-lb/sluice/api/v1alpha1"
	"github.com/sluice-lb/sluice/internal/source"
)

// Unstructured returns obj as `kubectl apply` takes it: apiVersion and kind set, no status,
// no empty creationTimestamp.
func Unstructured(obj client.Object) (*unstructured.Unstructured, error) {
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		return nil, err
	}
	u := &unstructured.Unstructured{Object: m}
	u.SetAPIVersion(v1alpha1.GroupVersion.String())
	if _, ok := obj.(*corev1.Secret); ok {
		u.SetAPIVersion("v1")
	}
	u.SetKind(source.KindOf(obj))
	delete(u.Object, "status")
	unstructured.RemoveNestedField(u.Object, "metadata", "creationTimestamp")
	return u, nil
}

// Write writes the result as multi-document YAML for `kubectl apply -f` or the agent's
// --config: a header that lists every note as a comment, then each object under a comment
// naming the MetalLB object it comes from.
func Write(w io.Writer, r *Result) error {
	bw := bufio.NewWriter(w)
	fmt.Fprintf(bw, "# Sluice configuration converted from MetalLB by sluicectl migrate metallb:\n")
	fmt.Fprintf(bw, "# %d objects; %d errors (not converted), %d warnings (no exact equivalent), %d notes.\n",
		len(r.Objects), r.Count(Error), r.Count(Warning), r.Count(Info))
	for _, n := range r.Notes {
		fmt.Fprintf(bw, "#   %s\n", oneLine(n.String()))
	}
	for _, c := range r.Objects {
		u, err := Unstructured(c.Object)
		if err != nil {
			return fmt.Errorf("%s: %w", c.From, err)
		}
		text, err := yaml.Marshal(u.Object)
		if err != nil {
			return fmt.Errorf("%s: %w", c.From, err)
		}
		fmt.Fprintf(bw, "---\n# from %s\n%s", oneLine(c.From), text)
	}
	return bw.Flush()
}

// oneLine keeps text quoting the input (names, values) on its comment line: every control
// character and every character YAML takes as a line break (NEL, LS, PS) becomes a space.
func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || r == '\u0085' || r == '\u2028' || r == '\u2029' {
			return ' '
		}
		return r
	}, s)
}
