package migrate

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/sluice-lb/sluice/internal/model"
	"github.com/sluice-lb/sluice/internal/source"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// convertFile reads and converts one corpus file, and writes the result.
func convertFile(t *testing.T, path string) (*Result, []Note, []byte) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	objs, readNotes := Read(f, filepath.Base(path))
	r := Convert(objs, Options{})
	r.Notes = append(readNotes, r.Notes...)
	var out bytes.Buffer
	if err := Write(&out, r); err != nil {
		t.Fatal(err)
	}
	return r, readNotes, out.Bytes()
}

// corpus lists the MetalLB configurations of testdata/corpus.
func corpus(t *testing.T) []string {
	files, err := filepath.Glob("testdata/corpus/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no corpus: %v", err)
	}
	return files
}

// TestGolden pins the converter's output for every corpus file (go test -update rewrites it).
func TestGolden(t *testing.T) {
	for _, path := range corpus(t) {
		t.Run(filepath.Base(path), func(t *testing.T) {
			_, _, out := convertFile(t, path)
			golden := filepath.Join("testdata/golden", filepath.Base(path))
			if *update {
				if err := os.MkdirAll(filepath.Dir(golden), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(golden, out, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (go test -update writes it)", err)
			}
			if !bytes.Equal(out, want) {
				t.Errorf("output differs from %s (go test -update rewrites it):\n%s", golden, out)
			}
		})
	}
}

// TestCorpusValidates: what the converter writes for each corpus file is read by the agent's
// own decoder and model without a single problem, and nothing it read went unconverted
// (errors) or was unknown to it.
func TestCorpusValidates(t *testing.T) {
	for _, path := range corpus(t) {
		t.Run(filepath.Base(path), func(t *testing.T) {
			r, readNotes, out := convertFile(t, path)
			lossy := strings.HasPrefix(filepath.Base(path), "lossy-")
			for _, n := range readNotes {
				if n.Level != Info && !lossy {
					t.Errorf("reading: %s", n)
				}
			}
			if n := r.Count(Error); n > 0 && !lossy {
				t.Errorf("%d errors converting a valid MetalLB configuration:\n%s", n, out)
			}
			objs, errs := source.NewDecoder().Decode(bytes.NewReader(out), "converted")
			for _, err := range errs {
				t.Errorf("decoding the output: %v", err)
			}
			if len(objs) != len(r.Objects) {
				t.Errorf("decoded %d objects of %d", len(objs), len(r.Objects))
			}
			var in model.Objects
			for _, o := range objs {
				if err := in.Add(o); err != nil {
					t.Error(err)
				}
			}
			m, problems := model.Build(in, model.Options{Namespace: DefaultNamespace})
			for _, p := range problems {
				// Where the input has no exact equivalent, the agent may see a problem, but
				// only one the converter said first, of the same object.
				if !lossy || !slices.ContainsFunc(r.Notes, func(n Note) bool {
					return n.Level != Info && strings.Contains(n.Object+" "+n.Message, p.Object.Name)
				}) {
					t.Errorf("model: %v", p)
				}
			}
			if len(m.Pools) == 0 {
				t.Errorf("no pool in the model:\n%s", out)
			}
		})
	}
}

// has reports whether notes hold one of level l on field whose message contains text.
func has(notes []Note, l Level, object, field, text string) bool {
	for _, n := range notes {
		if n.Level == l && strings.Contains(n.Object, object) && n.Field == field && strings.Contains(n.Message, text) {
			return true
		}
	}
	return false
}
