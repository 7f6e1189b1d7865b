package kubeapi

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
)

// guardBinaries replaces each binary path with a wrapper script, written into dir, that
// runs the binary with a parent-death signal (setpriv --pdeathsig KILL, which then execs
// it, so the PID and the process name stay the binary's own). Without setpriv on PATH it
// leaves the paths alone.
func guardBinaries(dir string, paths ...*string) error {
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		return nil
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		return err
	}
	for _, p := range paths {
		wrapper := filepath.Join(dir, filepath.Base(*p))
		script := fmt.Sprintf("#!/bin/sh\nexec %s --pdeathsig KILL -- %s \"$@\"\n", shellQuote(setpriv), shellQuote(*p))
		if err := os.WriteFile(wrapper, []byte(script), 0o700); err != nil {
			return err
		}
		*p = wrapper
	}
	return nil
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
