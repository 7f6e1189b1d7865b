package source

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/api/v1alpha1"
)

func poolDoc(name, cidr string) string {
	return "---\napiVersion: sluice.dev/v1alpha1\nkind: IPPool\nmetadata: {name: " + name + "}\nspec:\n  blocks: [{cidr: " + cidr + "}]\n"
}

// watcher runs a File source and collects what it sends.
type watcher struct {
	t      *testing.T
	events chan Event
	store  *Store
}

func watch(t *testing.T, path string) *watcher {
	t.Helper()
	return watchWith(t, path, 20*time.Millisecond)
}

// watchWith is watch with the given Debounce (QuickDebounce is the default).
func watchWith(t *testing.T, path string, debounce time.Duration) *watcher {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	w := &watcher{t: t, events: make(chan Event, 100), store: NewStore()}
	src := NewFile(path)
	src.Debounce = debounce
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx, w.events) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return w
}

// until applies events until cond holds for the store, or fails after a few seconds.
func (w *watcher) until(what string, cond func(objs map[string]string, problems []error) bool) {
	w.t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		objs, problems := w.store.List()
		view := map[string]string{}
		for _, o := range objs {
			v := ""
			if p, ok := o.(*v1alpha1.IPPool); ok {
				v = p.Spec.Blocks[0].CIDR
			}
			view[KeyOf(o).String()] = v
		}
		if w.store.Synced() && cond(view, problems) {
			return
		}
		select {
		case ev := <-w.events:
			if err := w.store.Apply(ev); err != nil {
				w.t.Fatal(err)
			}
		case <-deadline:
			w.t.Fatalf("timed out waiting for %s; have %v problems %v", what, view, problems)
		}
	}
}

func write(t *testing.T, path, text string) {
	t.Helper()
	// Write and rename, as editors and ConfigMap updates do.
	tmp := filepath.Join(filepath.Dir(path), ".tmp-"+filepath.Base(path))
	if err := os.WriteFile(tmp, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func TestFileDirectoryReload(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.yaml"), filepath.Join(dir, "b.yml")
	write(t, a, poolDoc("one", "203.0.113.0/28")+poolDoc("two", "203.0.113.16/28"))
	write(t, b, poolDoc("three", "198.51.100.0/24"))
	write(t, filepath.Join(dir, "notes.txt"), "not config")
	w := watch(t, dir)
	w.until("initial objects", func(o map[string]string, p []error) bool {
		return len(o) == 3 && o["IPPool one"] == "203.0.113.0/28" && len(p) == 0
	})

	// A change is picked up.
	write(t, a, poolDoc("one", "203.0.113.32/28")+poolDoc("two", "203.0.113.16/28"))
	w.until("changed pool", func(o map[string]string, p []error) bool { return o["IPPool one"] == "203.0.113.32/28" })

	// A broken document keeps what the file had before and says where the problem is.
	write(t, a, poolDoc("one", "203.0.113.32/28")+"---\napiVersion: sluice.dev/v1alpha1\nkind: IPPool\nmetadata: {name: two}\nspec: {blokcs: []}\n")
	w.until("problem reported", func(o map[string]string, p []error) bool {
		return len(p) == 1 && strings.Contains(p[0].Error(), "a.yaml: document 2 (IPPool two)") && strings.Contains(p[0].Error(), `unknown field "spec.blokcs"`)
	})
	objs, _ := w.store.List()
	if len(objs) != 3 {
		t.Fatalf("a broken document must not delete its object: %d objects", len(objs))
	}

	// Fixed, with pool two really removed: it goes, and the problem clears.
	write(t, a, poolDoc("one", "203.0.113.32/28"))
	w.until("pool two deleted", func(o map[string]string, p []error) bool {
		_, two := o["IPPool two"]
		return !two && len(o) == 2 && len(p) == 0
	})

	// The same object in two files: the first file wins.
	write(t, b, poolDoc("three", "198.51.100.0/24")+poolDoc("one", "192.0.2.0/24"))
	w.until("duplicate reported", func(o map[string]string, p []error) bool {
		return len(p) == 1 && strings.Contains(p[0].Error(), "IPPool one is already defined in "+a) && o["IPPool one"] == "203.0.113.32/28"
	})

	// A deleted file removes its objects.
	if err := os.Remove(b); err != nil {
		t.Fatal(err)
	}
	w.until("file removed", func(o map[string]string, p []error) bool { return len(o) == 1 && len(p) == 0 })
}

func TestFileSingleFileVanishes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sluice.yaml")
	write(t, path, poolDoc("one", "203.0.113.0/28"))
	w := watch(t, path)
	w.until("initial", func(o map[string]string, p []error) bool { return len(o) == 1 })
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	w.until("missing reported, objects kept", func(o map[string]string, p []error) bool {
		return len(o) == 1 && len(p) == 1 && strings.Contains(p[0].Error(), "keeping the objects read before")
	})
	write(t, path, poolDoc("one", "203.0.113.64/28"))
	w.until("back", func(o map[string]string, p []error) bool { return o["IPPool one"] == "203.0.113.64/28" && len(p) == 0 })
}

func TestFileMissingAtStart(t *testing.T) {
	err := NewFile(filepath.Join(t.TempDir(), "nope.yaml")).Run(context.Background(), make(chan Event, 1))
	if err == nil || !strings.Contains(err.Error(), "nope.yaml") {
		t.Fatalf("want an error naming the path, got %v", err)
	}
}

// TestFileSingleFileIgnoresNeighbours: files written next to a single config file (a log, the
// agent's state) do not make it read again; a change to the file itself does.
func TestFileSingleFileIgnoresNeighbours(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sluice.yaml")
	write(t, path, poolDoc("one", "203.0.113.0/28"))
	w := watch(t, path)
	w.until("initial", func(o map[string]string, p []error) bool { return len(o) == 1 })
	for i := range 10 {
		if err := os.WriteFile(filepath.Join(dir, "agent.log"), []byte(strings.Repeat("x", i)), 0o644); err != nil {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	select {
	case ev := <-w.events:
		t.Fatalf("a neighbour's writes made the source read again: %+v", ev)
	case <-time.After(300 * time.Millisecond):
	}
	write(t, path, poolDoc("one", "203.0.113.64/28"))
	w.until("the change", func(o map[string]string, p []error) bool { return o["IPPool one"] == "203.0.113.64/28" })
}

// TestFileDebounce: a file renamed into place is read at once (QuickDebounce); a file written
// in place is read only after Debounce, when the writer is likely done.
func TestFileDebounce(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "config.yaml")
	write(t, path, poolDoc("a", "203.0.113.0/28"))
	w := watchWith(t, path, 1500*time.Millisecond)
	w.until("the first read", func(objs map[string]string, _ []error) bool { return objs["IPPool a"] == "203.0.113.0/28" })

	start := time.Now()
	write(t, path, poolDoc("a", "203.0.113.16/28"))
	w.until("the renamed file", func(objs map[string]string, _ []error) bool { return objs["IPPool a"] == "203.0.113.16/28" })
	if took := time.Since(start); took > time.Second {
		t.Errorf("a file renamed into place was read after %v, want at once (well under the 1.5s debounce)", took)
	}

	start = time.Now()
	if err := os.WriteFile(path, []byte(poolDoc("a", "203.0.113.32/28")), 0o644); err != nil {
		t.Fatal(err)
	}
	w.until("the file written in place", func(objs map[string]string, _ []error) bool { return objs["IPPool a"] == "203.0.113.32/28" })
	if took := time.Since(start); took < 1500*time.Millisecond {
		t.Errorf("a file written in place was read after %v, before the 1.5s debounce", took)
	}
}
