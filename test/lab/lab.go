package lab

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netns"

	"github.com/sluice-lb/sluice/internal/testenv"
)

// ErrClosed is returned by operations on a Lab (or its Namespaces) after Close.
var ErrClosed = errors.New("lab: closed")

// StopGrace is how long Close waits after SIGTERM before it sends SIGKILL.
const StopGrace = 5 * time.Second

const (
	netnsDir   = "/run/netns"
	namePrefix = "sluicelab-"
	maxLabel   = 16
)

var shortName = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,31}$`)

// open is the set of lab prefixes owned by open Labs of this process. RemoveStale uses
// it to tell this process's live labs from leftovers of an earlier process with our PID.
var (
	openMu sync.Mutex
	open   = map[string]bool{}
	seq    atomic.Uint64
)

// Lab is a set of network namespaces, links and processes that Close removes together.
type Lab struct {
	prefix string

	mu     sync.Mutex // guards the fields below
	closed bool
	nss    []*Namespace
	procs  []*Process
	// cgroups are the Lab's cgroups, under the cgroup v2 mount cgroupMount ("": none yet).
	cgroups     []*Cgroup
	cgroupMount string
}

// New removes stale labs and returns an empty Lab. name is a human label included in
// the namespace names (sanitized to [a-z0-9], at most 16 bytes); it may be empty.
func New(name string) (*Lab, error) {
	if err := RemoveStale(); err != nil {
		return nil, fmt.Errorf("lab: removing stale labs: %w", err)
	}
	prefix := fmt.Sprintf("%s%d-%d-", namePrefix, os.Getpid(), seq.Add(1))
	if label := sanitizeLabel(name); label != "" {
		prefix += label + "-"
	}
	openMu.Lock()
	open[prefix] = true
	openMu.Unlock()
	return &Lab{prefix: prefix}, nil
}

// ForTest returns a new Lab, labelled with the test name, that is closed when the test
// and its subtests finish, whether they passed or not. It gates the test with
// testenv.RequirePrivileged and fails it if the lab cannot be made or removed.
func ForTest(t testing.TB) *Lab {
	t.Helper()
	testenv.RequirePrivileged(t)
	l, err := New(t.Name())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Errorf("closing lab %s: %v", l.prefix, err)
		}
	})
	return l
}

// Prefix is the name prefix shared by every namespace of this Lab.
func (l *Lab) Prefix() string { return l.prefix }

// Namespace creates the network namespace named Prefix()+short, with loopback up and
// IPv6 duplicate address detection off (addresses are usable at once). short must match
// [a-z0-9][a-z0-9-]* and be unique within the Lab.
func (l *Lab) Namespace(short string) (*Namespace, error) {
	if !shortName.MatchString(short) {
		return nil, fmt.Errorf("lab: namespace %q: name must match %s", short, shortName)
	}
	name := l.prefix + short
	ns, err := l.addNamespace(short, name)
	if err != nil {
		return nil, err
	}
	if err := ns.init(); err != nil {
		return nil, err
	}
	return ns, nil
}

// addNamespace creates the namespace and registers it for Close.
func (l *Lab) addNamespace(short, name string) (*Namespace, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil, ErrClosed
	}
	for _, ns := range l.nss {
		if ns.Short == short {
			return nil, fmt.Errorf("lab: namespace %s already exists", name)
		}
	}
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("lab: ip netns add %s: %w: %s", name, err, strings.TrimSpace(string(out)))
	}
	h, err := netns.GetFromName(name)
	if err != nil {
		return nil, errors.Join(fmt.Errorf("lab: opening netns %s: %w", name, err), deleteNetns(name))
	}
	ns := &Namespace{Name: name, Short: short, lab: l, handle: h}
	l.nss = append(l.nss, ns)
	return ns, nil
}

// Close stops the Lab's processes, kills any other process left in its namespaces,
// deletes its interfaces and namespaces, and returns every failure it met. It is safe to
// call more than once.
func (l *Lab) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	nss, procs := l.nss, l.procs
	l.mu.Unlock()

	var errs []error
	var wg sync.WaitGroup
	var errMu sync.Mutex
	for _, p := range procs {
		wg.Go(func() {
			if err := p.Stop(StopGrace); err != nil {
				errMu.Lock()
				errs = append(errs, err)
				errMu.Unlock()
			}
		})
	}
	wg.Wait()
	if err := l.closeCgroups(); err != nil { // once closed, nothing else adds one
		errs = append(errs, err)
	}
	for _, ns := range nss {
		if err := killNetnsProcesses(ns.path(), StopGrace); err != nil {
			errs = append(errs, fmt.Errorf("netns %s: %w", ns.Name, err))
		}
	}
	for _, ns := range nss {
		if err := ns.deleteLinks(); err != nil {
			errs = append(errs, err)
		}
	}
	for _, ns := range nss {
		if err := ns.handle.Close(); err != nil {
			errs = append(errs, fmt.Errorf("netns %s: closing handle: %w", ns.Name, err))
		}
		if err := deleteNetns(ns.Name); err != nil {
			errs = append(errs, err)
		}
	}
	openMu.Lock()
	delete(open, l.prefix)
	openMu.Unlock()
	return errors.Join(errs...)
}

// track registers a process for Close; it fails once the Lab is closed.
func (l *Lab) track(p *Process) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return ErrClosed
	}
	l.procs = append(l.procs, p)
	return nil
}

func (l *Lab) isClosed() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.closed
}

// sanitizeLabel keeps the lower-cased letters and digits of name, at most maxLabel.
func sanitizeLabel(name string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(name) {
		if b.Len() == maxLabel {
			break
		}
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
		}
	}
	return b.String()
}

// Exec runs a command in the named network namespace with `ip netns exec` and returns its
// combined output; the error names the namespace and command and carries the output.
// An empty netns runs the command in the current namespace.
func Exec(ctx context.Context, netns, name string, args ...string) ([]byte, error) {
	return ExecIn(ctx, netns, nil, name, args...)
}

// ExecIn is Exec, the command running in cgroup cg when that is not nil.
func ExecIn(ctx context.Context, netns string, cg *Cgroup, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	if netns != "" {
		cmd = exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", netns, name}, args...)...)
	}
	if cg != nil {
		dir, err := os.Open(cg.Path)
		if err != nil {
			return nil, fmt.Errorf("netns %s: %s in cgroup: %w", displayNetns(netns), name, err)
		}
		defer dir.Close()
		cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(dir.Fd())}
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("netns %s: %s: %w: %s", displayNetns(netns), strings.Join(append([]string{name}, args...), " "), err, strings.TrimSpace(string(out)))
	}
	return out, nil
}

func displayNetns(name string) string {
	if name == "" {
		return "(current)"
	}
	return name
}

func netnsPath(name string) string { return filepath.Join(netnsDir, name) }
