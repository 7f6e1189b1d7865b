package lab

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Cgroup is a cgroup v2 directory of a Lab: the processes of one lab node (its "pods" and
// host processes), where that node's agent attaches its socket programs. Processes join it
// when they start (Namespace.StartInCgroup).
type Cgroup struct {
	// Path is the cgroup's directory. It is under a cgroup v2 mount the Lab made in the
	// temporary directory, so it is the same path inside `ip netns exec` (which hides
	// /sys/fs/cgroup): an agent in a lab namespace can be given it as is.
	Path string
}

// Cgroup creates the cgroup Prefix()+short, removed (its processes killed first) by Close.
func (l *Lab) Cgroup(short string) (*Cgroup, error) {
	if !shortName.MatchString(short) {
		return nil, fmt.Errorf("lab: cgroup %q: name must match %s", short, shortName)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil, ErrClosed
	}
	if l.cgroupMount == "" {
		dir := filepath.Join(os.TempDir(), l.prefix+"cgroup2")
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("lab: cgroup mount: %w", err)
		}
		if err := unix.Mount("cgroup2", dir, "cgroup2", 0, ""); err != nil {
			return nil, errors.Join(fmt.Errorf("lab: mounting cgroup2 on %s: %w", dir, err), os.Remove(dir))
		}
		l.cgroupMount = dir
	}
	cg := &Cgroup{Path: filepath.Join(l.cgroupMount, l.prefix+short)}
	if err := os.Mkdir(cg.Path, 0o755); err != nil {
		return nil, fmt.Errorf("lab: cgroup %s: %w", cg.Path, err)
	}
	l.cgroups = append(l.cgroups, cg)
	return cg, nil
}

// closeCgroups removes the Lab's cgroups, killing their processes, and its cgroup mount.
func (l *Lab) closeCgroups() error {
	var errs []error
	for _, cg := range l.cgroups {
		errs = append(errs, removeCgroup(cg.Path))
	}
	if l.cgroupMount != "" {
		errs = append(errs, unmountDir(l.cgroupMount))
	}
	return errors.Join(errs...)
}

// removeCgroup kills the processes of the cgroup at path (cgroup.kill), waits for them to
// go and removes it. A cgroup already gone is not an error.
func removeCgroup(path string) error {
	if err := os.WriteFile(filepath.Join(path, "cgroup.kill"), []byte("1"), 0); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("lab: killing cgroup %s: %w", path, err)
	}
	deadline := time.Now().Add(StopGrace)
	for {
		err := os.Remove(path)
		if err == nil || errors.Is(err, os.ErrNotExist) {
			return nil
		}
		if !errors.Is(err, unix.EBUSY) || time.Now().After(deadline) {
			return fmt.Errorf("lab: removing cgroup %s: %w", path, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func unmountDir(dir string) error {
	if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("lab: unmounting %s: %w", dir, err)
	}
	if err := os.Remove(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("lab: removing %s: %w", dir, err)
	}
	return nil
}

// removeStaleCgroups removes the cgroups and cgroup mounts of labs whose owner is gone:
// every cgroup v2 mount of this process is searched for lab cgroups, and the mounts a Lab
// made are unmounted.
func removeStaleCgroups() error {
	mounts, err := cgroup2Mounts()
	if err != nil {
		return err
	}
	var errs []error
	for _, m := range mounts {
		entries, err := os.ReadDir(m)
		if err != nil {
			continue // unmounted meanwhile by its lab
		}
		for _, e := range entries {
			if pid, prefix, ok := parseOwner(e.Name()); ok && e.IsDir() && stale(pid, prefix) {
				errs = append(errs, removeCgroup(filepath.Join(m, e.Name())))
			}
		}
	}
	for _, m := range mounts {
		if pid, prefix, ok := parseOwner(filepath.Base(m)); ok && filepath.Dir(m) == filepath.Clean(os.TempDir()) && stale(pid, prefix) {
			errs = append(errs, unmountDir(m))
		}
	}
	return errors.Join(errs...)
}

// cgroup2Mounts lists this process's cgroup v2 mount points.
func cgroup2Mounts() ([]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	s := bufio.NewScanner(f)
	for s.Scan() {
		// ID parent major:minor root mountpoint options [optional...] - fstype source superoptions
		left, right, ok := strings.Cut(s.Text(), " - ")
		fields, rfields := strings.Fields(left), strings.Fields(right)
		if ok && len(fields) >= 5 && len(rfields) >= 1 && rfields[0] == "cgroup2" {
			out = append(out, unescapeMountinfo(fields[4]))
		}
	}
	return out, s.Err()
}

// unescapeMountinfo undoes mountinfo's octal escapes (\040 for a space, ...).
func unescapeMountinfo(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			var v int
			if _, err := fmt.Sscanf(s[i+1:i+4], "%03o", &v); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
