package source

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"
	"k8s.io/apimachinery/pkg/api/equality"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// File is the standalone Source: a YAML file, or a directory of *.yaml, *.yml and *.json files
// (not recursive; names starting with "." are skipped, which also skips the ..data links of a
// mounted ConfigMap). It re-reads on every change, after a quiet period: Debounce after a
// write in place (the writer may not be done), QuickDebounce after a file was only renamed
// into place, created or removed (a rename is atomic: what is there is whole, as with a
// ConfigMap volume's symlink swap).
//
// A file that has problems keeps the objects it had before, unless the new text of the file
// still has them: a half-saved or mistyped file never deletes what was working.
type File struct {
	Path string
	// Debounce is the quiet period after a write in place before re-reading (default
	// 200ms); QuickDebounce the one after renames, creations and removals only (default
	// 5ms: enough to take a rename's pair of events together).
	Debounce, QuickDebounce time.Duration

	decoder *Decoder
	// files holds the objects last read from each file.
	files map[string][]client.Object
	// current is what was last sent, by key; order its keys in the order of the files.
	current map[Key]client.Object
	order   []Key
}

// NewFile returns a File source for path.
func NewFile(path string) *File {
	return &File{Path: path, Debounce: 200 * time.Millisecond, QuickDebounce: 5 * time.Millisecond, decoder: NewDecoder(), files: map[string][]client.Object{}, current: map[Key]client.Object{}}
}

// Run implements Source.
func (f *File) Run(ctx context.Context, out chan<- Event) error {
	st, err := os.Stat(f.Path)
	if err != nil {
		return fmt.Errorf("standalone config: %w", err)
	}
	dir := f.Path
	if !st.IsDir() {
		dir = filepath.Dir(f.Path)
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("standalone config: watching %s: %w", dir, err)
	}
	defer w.Close()
	if err := w.Add(dir); err != nil {
		return fmt.Errorf("standalone config: watching %s: %w", dir, err)
	}

	if !f.reload(ctx, out) {
		return nil
	}
	if !send(ctx, out, Event{Type: Synced}) {
		return nil
	}
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	written := false // a relevant file was written in place since the last reload
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return nil
			}
			if !f.relevant(ev.Name) {
				continue
			}
			written = written || ev.Has(fsnotify.Write)
			if written {
				timer.Reset(f.Debounce)
			} else {
				timer.Reset(f.QuickDebounce)
			}
		case _, ok := <-w.Errors:
			if !ok {
				return nil
			}
			// The watcher lost events (queue overflow): read everything again.
			written = true
			timer.Reset(f.Debounce)
		case <-timer.C:
			written = false
			if !f.reload(ctx, out) {
				return nil
			}
		}
	}
}

// relevant reports whether a change to name can change what is read. Other files next to a
// single config file (logs, editor swap files, the agent's own state) are not: reloading on
// them would make a busy directory a reload storm.
func (f *File) relevant(name string) bool {
	if filepath.Clean(name) == filepath.Clean(f.Path) {
		return true // written in place, or renamed over by an editor
	}
	base := filepath.Base(name)
	if strings.HasPrefix(base, "..") {
		return true // a Kubernetes ConfigMap volume swaps its ..data symlink
	}
	st, err := os.Stat(f.Path)
	if err != nil {
		return true // the file is gone or unreadable: look again
	}
	return st.IsDir() && configFile(base)
}

func configFile(base string) bool {
	if strings.HasPrefix(base, ".") {
		return false
	}
	ext := strings.ToLower(filepath.Ext(base))
	return ext == ".yaml" || ext == ".yml" || ext == ".json"
}

// reload reads everything, sends the differences from what was sent before and the current
// problems. It returns false when ctx ended.
func (f *File) reload(ctx context.Context, out chan<- Event) bool {
	objs, problems := f.read()
	next := make(map[Key]client.Object, len(objs))
	order := make([]Key, len(objs))
	for i, o := range objs {
		order[i] = KeyOf(o)
		next[order[i]] = o
	}
	// In the order of the files, which is deterministic: no sort of 10k keys.
	var events []Event
	for _, k := range f.order {
		if _, ok := next[k]; !ok {
			events = append(events, Event{Type: Delete, Object: f.current[k]})
		}
	}
	for _, k := range order {
		// An unchanged document decodes to the same object (see Decoder): no deep compare.
		if old, ok := f.current[k]; ok && (old == next[k] || equality.Semantic.DeepEqual(old, next[k])) {
			continue
		}
		events = append(events, Event{Type: Upsert, Object: next[k]})
	}
	f.current, f.order = next, order
	events = append(events, Event{Type: Problems, Problems: problems})
	for i, ev := range events {
		ev.More = i < len(events)-1
		if !send(ctx, out, ev) {
			return false
		}
	}
	return true
}

// ReadOnce reads the path once, as Run does at start, without watching: the objects and the
// problems of the input. sluicectl validate uses it, so it reports exactly what the agent would.
func (f *File) ReadOnce() ([]client.Object, []error) {
	if _, err := f.list(); err != nil {
		return nil, []error{err}
	}
	return f.read()
}

// read reads every file. An object defined twice is taken from its first definition (files in
// name order, documents in order) and the second is a problem.
func (f *File) read() ([]client.Object, []error) {
	var problems []error
	names, err := f.list()
	if err != nil {
		// The path is gone or unreadable: keep everything as it was.
		problems = append(problems, fmt.Errorf("%w; keeping the objects read before", err))
		names = nil
		for n := range f.files {
			names = append(names, n)
		}
		sort.Strings(names)
		var objs []client.Object
		for _, n := range names {
			objs = append(objs, f.files[n]...)
		}
		return objs, problems
	}
	f.decoder.Forget(names)
	files := map[string][]client.Object{}
	for _, name := range names {
		objs, errs := f.readFile(name)
		if len(errs) > 0 {
			problems = append(problems, errs...)
			objs = keepPrevious(objs, f.files[name])
		}
		files[name] = objs
	}
	f.files = files

	var all []client.Object
	where := map[Key]string{}
	for _, name := range names {
		for _, o := range files[name] {
			k := KeyOf(o)
			if first, dup := where[k]; dup {
				problems = append(problems, fmt.Errorf("%s: %s is already defined in %s; the first definition is used", name, k, first))
				continue
			}
			where[k] = name
			all = append(all, o)
		}
	}
	return all, problems
}

func (f *File) readFile(name string) ([]client.Object, []error) {
	fh, err := os.Open(name)
	if err != nil {
		return nil, []error{err}
	}
	defer fh.Close()
	return f.decoder.Decode(fh, name)
}

// keepPrevious adds to objs the objects of the previous read of a file that the new read lacks.
func keepPrevious(objs, previous []client.Object) []client.Object {
	have := map[Key]bool{}
	for _, o := range objs {
		have[KeyOf(o)] = true
	}
	for _, o := range previous {
		if !have[KeyOf(o)] {
			objs = append(objs, o)
		}
	}
	return objs
}

// list returns the files to read, in name order.
func (f *File) list() ([]string, error) {
	names, err := ConfigFiles(f.Path)
	if err != nil {
		return nil, fmt.Errorf("standalone config: %w", err)
	}
	return names, nil
}

// ConfigFiles returns the files `kubectl apply -f path` reads: path itself, or the *.yaml,
// *.yml and *.json files of the directory path (not hidden), in name order.
func ConfigFiles(path string) ([]string, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !st.IsDir() {
		return []string{path}, nil
	}
	entries, err := os.ReadDir(path)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range entries {
		if configFile(e.Name()) {
			full := filepath.Join(path, e.Name())
			if st, err := os.Stat(full); err == nil && !st.IsDir() {
				names = append(names, full)
			}
		}
	}
	return names, nil
}

func send(ctx context.Context, out chan<- Event, ev Event) bool {
	select {
	case out <- ev:
		return true
	case <-ctx.Done():
		return false
	}
}
