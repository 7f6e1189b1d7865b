package testenv

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

// InCI reports whether the tests run under CI (CI=true), where missing prerequisites fail.
func InCI() bool { return os.Getenv("CI") == "true" }

// Unavailable stops the test because a prerequisite is missing: a skip on a developer
// machine, a failure under CI=true.
func Unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	if InCI() {
		t.Fatalf("prerequisite missing under CI=true: "+format, args...)
	}
	t.Skipf("prerequisite missing: "+format, args...)
}

// RequirePrivileged gates a test that needs root: BPF, network namespaces, raw sockets.
// It runs when PRIVILEGED_TESTS=1 or CI=true.
func RequirePrivileged(t testing.TB) {
	t.Helper()
	if os.Getenv("PRIVILEGED_TESTS") != "1" && !InCI() {
		t.Skip("privileged test: set PRIVILEGED_TESTS=1 (as root) to run it")
	}
	if os.Geteuid() != 0 {
		Unavailable(t, "test needs root (euid is %d)", os.Geteuid())
	}
}

// RequireCommands gates a test on commands being on PATH (or absolute paths existing) and
// returns their resolved paths in the same order.
func RequireCommands(t testing.TB, names ...string) []string {
	t.Helper()
	paths := make([]string, len(names))
	for i, name := range names {
		p, err := exec.LookPath(name)
		if err != nil {
			Unavailable(t, "command %q not found (make test installs it): %v", name, err)
			return nil
		}
		paths[i] = p
	}
	return paths
}

// RequireAssets gates a test on the kube-apiserver and etcd binaries in KUBEBUILDER_ASSETS
// (built and cached by hack/kube-binaries.sh) and returns that directory.
func RequireAssets(t testing.TB) string {
	t.Helper()
	dir := os.Getenv("KUBEBUILDER_ASSETS")
	if dir == "" {
		Unavailable(t, "KUBEBUILDER_ASSETS is not set (run: export KUBEBUILDER_ASSETS=$(hack/kube-binaries.sh))")
		return ""
	}
	for _, bin := range []string{"kube-apiserver", "etcd"} {
		if _, err := os.Stat(filepath.Join(dir, bin)); err != nil {
			Unavailable(t, "%s missing in KUBEBUILDER_ASSETS=%s: %v", bin, dir, err)
			return ""
		}
	}
	return dir
}

// Buffer is a bytes.Buffer safe for concurrent use: a logger or a process writes, a test
// reads.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *Buffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *Buffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// RequireAsset gates a test on one more binary of KUBEBUILDER_ASSETS (kubectl, helm) and
// returns its path.
func RequireAsset(t testing.TB, name string) string {
	t.Helper()
	dir := RequireAssets(t)
	path := filepath.Join(dir, name)
	if _, err := os.Stat(path); err != nil {
		Unavailable(t, "%s missing in KUBEBUILDER_ASSETS=%s (hack/kube-binaries.sh builds it): %v", name, dir, err)
		return ""
	}
	return path
}
