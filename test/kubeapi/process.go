package kubeapi

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
)

// guardBinaries replaces each binary path with a wrapper script that runs the binary with
// a parent-death signal (setpriv --pdeathsig KILL, which then execs it, so the PID and the
// process name stay the binary's own). It returns the wrappers' directory, to remove after
// the processes have stopped, or "" and leaves the paths alone when setpriv is missing.
func guardBinaries(paths ...*string) (string, error) {
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		return "", nil
	}
	dir, err := os.MkdirTemp("", "sluice-kubeapi-")
	if err != nil {
		return "", err
	}
	for _, p := range paths {
		wrapper := filepath.Join(dir, filepath.Base(*p))
		script := fmt.Sprintf("#!/bin/sh\nexec %s --pdeathsig KILL -- %s \"$@\"\n", shellQuote(setpriv), shellQuote(*p))
		if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
			_ = os.RemoveAll(dir)
			return "", err
		}
		*p = wrapper
	}
	return dir, nil
}

// shellQuote quotes s for a POSIX shell.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// tailLimit is how much output a tail keeps.
const tailLimit = 32 << 10

// tail is an io.Writer that keeps the last tailLimit bytes written to it.
type tail struct {
	mu  sync.Mutex
	buf []byte
}

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - tailLimit; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	return len(p), nil
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}
