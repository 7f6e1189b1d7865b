package lab

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// labName matches the namespace names made by this package: prefix, owner PID, sequence.
var labName = regexp.MustCompile(`^` + namePrefix + `(\d+)-(\d+)-`)

// parseOwner returns the owning PID and the lab prefix of a namespace name made by this
// package; ok is false for any other name.
func parseOwner(name string) (pid int, prefix string, ok bool) {
	m := labName.FindStringSubmatch(name)
	if m == nil {
		return 0, "", false
	}
	pid, err := strconv.Atoi(m[1])
	if err != nil {
		return 0, "", false
	}
	return pid, m[0], true
}

// RemoveStale removes the namespaces of labs whose owner is gone: the owning PID is not
// alive, or it is this process and no open Lab has that prefix (a leftover from an
// earlier process that had our PID). Their processes are killed first. Namespaces that
// disappear meanwhile (another process cleaning up too) are not an error.
func RemoveStale() error {
	entries, err := os.ReadDir(netnsDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	errs := []error{removeStaleCgroups()}
	for _, e := range entries {
		pid, prefix, ok := parseOwner(e.Name())
		if !ok || !stale(pid, prefix) {
			continue
		}
		if err := killNetnsProcesses(netnsPath(e.Name()), time.Second); err != nil {
			errs = append(errs, fmt.Errorf("stale netns %s (owner pid %d gone): %w", e.Name(), pid, err))
			continue
		}
		if err := deleteNetns(e.Name()); err != nil {
			errs = append(errs, fmt.Errorf("stale netns %s (owner pid %d gone): %w", e.Name(), pid, err))
		}
	}
	return errors.Join(errs...)
}

func stale(pid int, prefix string) bool {
	if pid == os.Getpid() {
		openMu.Lock()
		defer openMu.Unlock()
		for p := range open {
			if strings.HasPrefix(p, prefix) {
				return false
			}
		}
		return true
	}
	return !alive(pid)
}

// alive reports whether pid is a running process (not a zombie).
func alive(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the command name in parentheses, which may contain spaces.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 || i+2 >= len(stat) {
		return true
	}
	state := stat[i+2]
	return state != 'Z' && state != 'X'
}

// deleteNetns unmounts and removes a named namespace, like `ip netns delete`. The kernel
// frees the namespace once nothing else refers to it.
func deleteNetns(name string) error {
	path := netnsPath(name)
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("netns %s: unmounting %s: %w", name, path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("netns %s: removing %s: %w", name, path, err)
	}
	return nil
}

// netnsPIDs lists the processes (other than this one) whose network namespace is the one
// bound at nsPath, like `ip netns pids`.
func netnsPIDs(nsPath string) ([]int, error) {
	var want unix.Stat_t
	if err := unix.Stat(nsPath, &want); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil, nil
		}
		return nil, fmt.Errorf("stat %s: %w", nsPath, err)
	}
	dirs, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		if inNetns(pid, &want) {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

func inNetns(pid int, want *unix.Stat_t) bool {
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join("/proc", strconv.Itoa(pid), "ns/net"), &st); err != nil {
		return false // gone, a zombie, or a kernel thread
	}
	return st.Dev == want.Dev && st.Ino == want.Ino
}

// killNetnsProcesses sends SIGTERM to every process in the namespace, SIGKILL to those
// still alive after grace, and repeats in case one forked meanwhile. Signals go through
// pidfds opened after re-checking membership, so a reused PID is never signalled.
func killNetnsProcesses(nsPath string, grace time.Duration) error {
	var want unix.Stat_t
	if err := unix.Stat(nsPath, &want); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil
		}
		return fmt.Errorf("stat %s: %w", nsPath, err)
	}
	for round := 0; round < 3; round++ {
		pids, err := netnsPIDs(nsPath)
		if err != nil || len(pids) == 0 {
			return err
		}
		var fds []int
		for _, pid := range pids {
			fd, err := unix.PidfdOpen(pid, 0)
			if err != nil {
				continue // exited meanwhile
			}
			if !inNetns(pid, &want) {
				unix.Close(fd)
				continue
			}
			fds = append(fds, fd)
		}
		left := signalAndWait(fds, unix.SIGTERM, grace)
		left = signalAndWait(left, unix.SIGKILL, StopGrace)
		for _, fd := range left {
			unix.Close(fd)
		}
		if len(left) > 0 {
			return fmt.Errorf("%d processes survived SIGKILL", len(left))
		}
	}
	if pids, err := netnsPIDs(nsPath); err != nil || len(pids) > 0 {
		return errors.Join(err, fmt.Errorf("processes %v keep appearing", pids))
	}
	return nil
}

// signalAndWait signals every pidfd and waits until timeout for them to exit. It closes
// the pidfds of exited processes and returns the others.
func signalAndWait(fds []int, sig unix.Signal, timeout time.Duration) []int {
	for _, fd := range fds {
		_ = unix.PidfdSendSignal(fd, sig, nil, 0) // ESRCH: already gone
	}
	deadline := time.Now().Add(timeout)
	for len(fds) > 0 {
		polls := make([]unix.PollFd, len(fds))
		for i, fd := range fds {
			polls[i] = unix.PollFd{Fd: int32(fd), Events: unix.POLLIN}
		}
		wait := time.Until(deadline)
		if wait <= 0 {
			break
		}
		if _, err := unix.Poll(polls, int(wait.Milliseconds())+1); err != nil && !errors.Is(err, unix.EINTR) {
			break
		}
		var left []int
		for i, pfd := range polls {
			if pfd.Revents != 0 {
				unix.Close(fds[i])
			} else {
				left = append(left, fds[i])
			}
		}
		fds = left
	}
	return fds
}
