package kubeapi_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sluice-lb/sluice/internal/migrate"
	"github.com/sluice-lb/sluice/test/kubeapi"
)

// TestMigratedCorpusAccepted: what sluicectl migrate metallb makes of every configuration of
// the converter's corpus is accepted by the real API server, Sluice's CRD schemas and CEL
// rules included (a server-side dry run: the corpus's names would clash between files).
func TestMigratedCorpusAccepted(t *testing.T) {
	env := kubeapi.Shared(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := env.EnsureNamespace(ctx, migrate.DefaultNamespace); err != nil {
		t.Fatal(err)
	}
	root, err := kubeapi.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	files, err := filepath.Glob(filepath.Join(root, "internal", "migrate", "testdata", "corpus", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no corpus: %v", err)
	}
	n := 0
	for _, path := range files {
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		objs, _ := migrate.Read(f, filepath.Base(path))
		f.Close()
		for _, c := range migrate.Convert(objs, migrate.Options{}).Objects {
			u, err := migrate.Unstructured(c.Object)
			if err != nil {
				t.Fatal(err)
			}
			if err := env.Client.Create(ctx, u, client.DryRunAll); err != nil {
				t.Errorf("%s: %s %s (from %s) refused: %v", filepath.Base(path), u.GetKind(), u.GetName(), c.From, err)
			}
			n++
		}
	}
	if n < 30 {
		t.Errorf("only %d objects converted from the corpus", n)
	}
}
