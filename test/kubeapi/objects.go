package kubeapi

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"
)

// ReadObjects decodes every object of a YAML file of one or more documents (see
// DecodeObjects).
func ReadObjects(path string) ([]*unstructured.Unstructured, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	objs, err := DecodeObjects(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return objs, nil
}

// DecodeObjects decodes a stream of YAML documents separated by "---" lines (or one JSON
// object) into objects, in order. Empty and comment-only documents are skipped; every other
// document must be one object with apiVersion and kind (a List is not expanded).
func DecodeObjects(r io.Reader) ([]*unstructured.Unstructured, error) {
	reader := utilyaml.NewYAMLReader(bufio.NewReader(r))
	var objs []*unstructured.Unstructured
	for doc := 1; ; doc++ {
		raw, err := reader.Read()
		if errors.Is(err, io.EOF) {
			return objs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", doc, err)
		}
		data, err := yaml.YAMLToJSON(raw)
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", doc, err)
		}
		if s := bytes.TrimSpace(data); len(s) == 0 || string(s) == "null" {
			continue
		}
		obj := &unstructured.Unstructured{}
		if err := obj.UnmarshalJSON(data); err != nil {
			return nil, fmt.Errorf("document %d: %w", doc, err)
		}
		objs = append(objs, obj)
	}
}

// CreateObjects creates the objects in order, with strict field validation (an unknown or
// duplicate field is an error, not dropped). Namespaces the objects live in are created
// first when they do not exist yet; Namespace objects among objs may then already exist,
// which is not an error. It stops at the first error, which names the object.
func (e *Env) CreateObjects(ctx context.Context, objs []*unstructured.Unstructured) error {
	for _, obj := range objs {
		namespaced, err := e.Client.IsObjectNamespaced(obj)
		if err != nil {
			return fmt.Errorf("%s: %w", Describe(obj), err)
		}
		if namespaced {
			if obj.GetNamespace() == "" {
				obj.SetNamespace(metav1.NamespaceDefault)
			}
			if err := e.EnsureNamespace(ctx, obj.GetNamespace()); err != nil {
				return err
			}
		}
	}
	for _, obj := range objs {
		err := e.Client.Create(ctx, obj, client.FieldValidation(metav1.FieldValidationStrict))
		if err != nil && !(obj.GetKind() == "Namespace" && obj.GetAPIVersion() == "v1" && apierrors.IsAlreadyExists(err)) {
			return fmt.Errorf("creating %s: %w", Describe(obj), err)
		}
	}
	return nil
}

// EnsureNamespace creates the namespace unless it exists. Namespaces are never deleted on
// this control plane (nothing would finalize them), so tests may share them.
func (e *Env) EnsureNamespace(ctx context.Context, name string) error {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if err := e.Client.Create(ctx, ns); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating namespace %s: %w", name, err)
	}
	return nil
}

// Describe names an object for messages: "Kind namespace/name" or "Kind name".
func Describe(obj client.Object) string {
	kind := obj.GetObjectKind().GroupVersionKind().Kind
	if obj.GetNamespace() != "" {
		return kind + " " + obj.GetNamespace() + "/" + obj.GetName()
	}
	return kind + " " + obj.GetName()
}

// nameSeq makes UniqueName unique within the test binary.
var nameSeq atomic.Uint64

// UniqueName returns a name for an object of test t that no other test of this binary
// gets: a DNS label (lowercase letters, digits and '-', at most 63 bytes) made of the
// test's name and a sequence number.
func UniqueName(t testing.TB) string {
	suffix := fmt.Sprintf("-%d", nameSeq.Add(1))
	var b strings.Builder
	dash := true // no leading '-', no repeated '-'
	for _, r := range strings.ToLower(t.Name()) {
		switch {
		case r >= 'a' && r <= 'z' || r >= '0' && r <= '9':
			b.WriteRune(r)
			dash = false
		case !dash:
			b.WriteByte('-')
			dash = true
		}
	}
	base := strings.TrimRight(b.String(), "-")
	if limit := 63 - len(suffix); len(base) > limit {
		base = strings.TrimRight(base[:limit], "-")
	}
	if base == "" {
		base = "test"
	}
	return base + suffix
}

// KubeConfigFile writes KubeConfig as dir/kubeconfig (mode 0600), for processes such as the
// agent and sluicectl, and returns its path.
func (e *Env) KubeConfigFile(t testing.TB, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(path, e.KubeConfig, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// KubeConfigAs returns a kubeconfig that authenticates as the administrator but acts as
// the ServiceAccount namespace/name (impersonation): a process run with it has exactly the
// permissions RBAC grants that ServiceAccount.
func (e *Env) KubeConfigAs(namespace, name string) ([]byte, error) {
	cfg, err := clientcmd.Load(e.KubeConfig)
	if err != nil {
		return nil, err
	}
	for _, ai := range cfg.AuthInfos {
		ai.Impersonate = "system:serviceaccount:" + namespace + ":" + name
		ai.ImpersonateGroups = []string{"system:serviceaccounts", "system:serviceaccounts:" + namespace, "system:authenticated"}
	}
	return clientcmd.Write(*cfg)
}
