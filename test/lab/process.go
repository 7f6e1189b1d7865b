package lab

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// outputLimit is how much of a process's output Process.Output keeps (the tail).
const outputLimit = 64 << 10

// Process is a background process started inside a network namespace. Its combined
// stdout and stderr are kept (the last 64 KiB) for error messages.
type Process struct {
	PID   int
	NetNS string // "" when started in the current namespace
	Cmd   string // command line, for messages

	cmd  *exec.Cmd
	out  *tail
	done chan struct{} // closed when the process has exited and been reaped
	err  error         // exit status; set before done is closed
}

// StartIn starts a process inside the named network namespace with `ip netns exec`
// (which execs the command, so PID is the command's own), or in the current namespace
// when netns is empty. The process gets its own process group, so a terminal's Ctrl-C
// reaches only the program that owns it. No Lab tracks it: the caller stops it.
func StartIn(netns, name string, args ...string) (*Process, error) {
	return startIn(netns, nil, name, args...)
}

// startIn is StartIn, the process starting in cgroup cg when that is not nil.
func startIn(netns string, cg *Cgroup, name string, args ...string) (*Process, error) {
	argv := append([]string{name}, args...)
	cmd := exec.Command(name, args...)
	if netns != "" {
		cmd = exec.Command("ip", append([]string{"netns", "exec", netns}, argv...)...)
	}
	out := &tail{}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if cg != nil {
		dir, err := os.Open(cg.Path)
		if err != nil {
			return nil, fmt.Errorf("netns %s: starting %s in cgroup: %w", displayNetns(netns), strings.Join(argv, " "), err)
		}
		defer dir.Close()
		// clone3(CLONE_INTO_CGROUP): the process is in the cgroup from its first instruction.
		cmd.SysProcAttr.UseCgroupFD, cmd.SysProcAttr.CgroupFD = true, int(dir.Fd())
	}
	cmd.WaitDelay = time.Second // a forked child holding the output pipe must not block Wait
	p := &Process{NetNS: netns, Cmd: strings.Join(argv, " "), cmd: cmd, out: out, done: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("netns %s: starting %s: %w", displayNetns(netns), p.Cmd, err)
	}
	p.PID = cmd.Process.Pid
	go func() { // owned by p; ends when the process exits
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// Done is closed once the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Err is the process's exit status once Done is closed (nil for exit status 0).
func (p *Process) Err() error {
	select {
	case <-p.done:
		return p.err
	default:
		return nil
	}
}

// Output returns the tail of the process's combined stdout and stderr.
func (p *Process) Output() string { return p.out.String() }

// Stop sends SIGTERM, waits up to grace for the process to exit, then sends SIGKILL and
// waits for it. A process that has already exited is not an error; its exit status is
// in Err.
func (p *Process) Stop(grace time.Duration) error {
	select {
	case <-p.done:
		return nil
	default:
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("netns %s: SIGTERM to %d (%s): %w", displayNetns(p.NetNS), p.PID, p.Cmd, err)
	}
	timer := time.NewTimer(grace)
	defer timer.Stop()
	select {
	case <-p.done:
		return nil
	case <-timer.C:
	}
	if err := p.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("netns %s: SIGKILL to %d (%s): %w", displayNetns(p.NetNS), p.PID, p.Cmd, err)
	}
	select {
	case <-p.done:
		return nil
	case <-time.After(StopGrace):
		return fmt.Errorf("netns %s: process %d (%s) survived SIGKILL", displayNetns(p.NetNS), p.PID, p.Cmd)
	}
}

// tail is an io.Writer that keeps the last outputLimit bytes written to it.
type tail struct {
	mu  sync.Mutex // guards buf
	buf []byte
}

func (t *tail) Write(b []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, b...)
	if over := len(t.buf) - outputLimit; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	return len(b), nil
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}
