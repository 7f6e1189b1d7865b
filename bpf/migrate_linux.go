package bpf

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// MapMigration is what Load did with a pinned map whose definition no longer
// matched the one it loads (a changed size flag, or a new agent version): it
// replaced the map and carried over what it could.
type MapMigration struct {
	Map     string // the map's name
	Reason  string // what changed
	Copied  int    // entries carried over into the new map
	Dropped int    // entries that did not fit, or whose layout changed
	Note    string // what was not carried, when a whole kind of state was lost
}

// migratePinned replaces each map pinned under dir whose definition differs
// from its spec by a new one from the spec, pinned at the same path, with the
// old entries copied in where the layout allows: hashes and LRU hashes entry by
// entry (an LRU that shrank evicts, a hash that shrank drops the rest), the
// memory-mapped Maglev array slot by slot. Per-CPU counters start again from
// zero. The programs still attached keep the old maps until their links are
// updated, so traffic flows throughout; what changes in the old maps after the
// copy is lost.
func migratePinned(spec *ebpf.CollectionSpec, dir string) ([]MapMigration, error) {
	var done []MapMigration
	names := make([]string, 0, len(spec.Maps))
	for name, ms := range spec.Maps {
		if ms.Pinning == ebpf.PinByName {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	for _, name := range names {
		ms := spec.Maps[name]
		path := filepath.Join(dir, name)
		old, err := ebpf.LoadPinnedMap(path, nil)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return done, fmt.Errorf("bpf: open pinned map %s: %w", path, err)
		}
		why := ms.Compatible(old)
		if why == nil {
			old.Close()
			continue
		}
		m, err := replacePinned(ms, old, path, why)
		old.Close()
		if err != nil {
			return done, err
		}
		done = append(done, m)
	}
	return done, nil
}

func replacePinned(ms *ebpf.MapSpec, old *ebpf.Map, path string, why error) (MapMigration, error) {
	spec := ms.Copy()
	spec.Pinning = ebpf.PinNone
	fresh, err := ebpf.NewMap(spec)
	if err != nil {
		return MapMigration{}, fmt.Errorf("bpf: migrate %s: create the new map: %w", ms.Name, err)
	}
	defer fresh.Close()
	m := MapMigration{Map: ms.Name, Reason: why.Error()}
	switch {
	case old.KeySize() != fresh.KeySize() || old.ValueSize() != fresh.ValueSize():
		m.Note = "key or value layout changed: entries not carried over"
	case isHash(old.Type()) && isHash(fresh.Type()):
		m.Copied, m.Dropped = copyHash(old, fresh)
	case old.Type() == ebpf.Array && fresh.Type() == ebpf.Array && mmapable(old) && mmapable(fresh):
		m.Copied, m.Dropped, err = copyMmapArray(old, fresh)
		if err != nil {
			return m, fmt.Errorf("bpf: migrate %s: %w", ms.Name, err)
		}
	default:
		m.Note = fmt.Sprintf("%v entries not carried over: start from zero", old.Type())
	}
	if err := os.Remove(path); err != nil {
		return m, fmt.Errorf("bpf: migrate %s: remove the old pin: %w", ms.Name, err)
	}
	if err := fresh.Pin(path); err != nil {
		return m, fmt.Errorf("bpf: migrate %s: pin the new map: %w", ms.Name, err)
	}
	return m, nil
}

func isHash(t ebpf.MapType) bool { return t == ebpf.Hash || t == ebpf.LRUHash }

func mmapable(m *ebpf.Map) bool {
	info, err := m.Info()
	return err == nil && info.Flags&unix.BPF_F_MMAPABLE != 0
}

// copyHash copies every entry of from into to, one by one.
func copyHash(from, to *ebpf.Map) (copied, dropped int) {
	k := make([]byte, from.KeySize())
	v := make([]byte, from.ValueSize())
	it := from.Iterate()
	for it.Next(&k, &v) {
		if err := to.Update(k, v, ebpf.UpdateAny); err != nil {
			dropped++
			continue
		}
		copied++
	}
	return copied, dropped
}

// copyMmapArray copies the slots of one memory-mapped array into another, as far
// as the smaller one goes; non-zero slots past the new end are dropped.
func copyMmapArray(from, to *ebpf.Map) (copied, dropped int, err error) {
	stride := (int(from.ValueSize()) + 7) &^ 7 // array values are 8-byte aligned
	src, err := unix.Mmap(from.FD(), 0, int(from.MaxEntries())*stride, unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return 0, 0, fmt.Errorf("map the old array: %w", err)
	}
	defer unix.Munmap(src)
	dst, err := unix.Mmap(to.FD(), 0, int(to.MaxEntries())*stride, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return 0, 0, fmt.Errorf("map the new array: %w", err)
	}
	defer unix.Munmap(dst)
	n := copy(dst, src)
	copied = n / stride
	for i := n; i+stride <= len(src); i += stride {
		if slices.ContainsFunc(src[i:i+stride], func(b byte) bool { return b != 0 }) {
			dropped++
		}
	}
	return copied, dropped, nil
}

// Migrations are the pinned maps Load replaced because their definition had
// changed, and what it carried over.
func (d *Datapath) Migrations() []MapMigration { return d.migrations }
