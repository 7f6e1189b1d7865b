// Package modeltest builds models from YAML for tests of the packages that consume them.
package modeltest

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/sluice-lb/sluice/internal/model"
	"github.com/sluice-lb/sluice/internal/source"
)

// ModelOf builds the model of a YAML document stream as a standalone agent reads it, failing
// the test if any document is unreadable or any object rejected.
func ModelOf(t testing.TB, yaml string) *model.Model {
	t.Helper()
	path := filepath.Join(t.TempDir(), "in.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	objs, errs := source.NewFile(path).ReadOnce()
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	in, cerrs := model.Collect(objs)
	if len(cerrs) > 0 {
		t.Fatal(cerrs)
	}
	m, problems := model.Build(in, model.Options{})
	for _, p := range problems {
		if p.Rejected {
			t.Fatalf("fixture rejected: %v", p)
		}
	}
	return m
}
