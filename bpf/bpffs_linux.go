package bpf

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// ErrNotBPFFS means a pin directory is not on a bpf filesystem.
var ErrNotBPFFS = errors.New("not on a bpf filesystem (mount one with: mount -t bpf bpf DIR)")

// IsBPFFS reports whether path is on a bpf filesystem.
func IsBPFFS(path string) (bool, error) { return isFS(path, unix.BPF_FS_MAGIC) }

// IsCgroup2 reports whether path is on a cgroup v2 filesystem (a cgroup directory).
func IsCgroup2(path string) (bool, error) { return isFS(path, unix.CGROUP2_SUPER_MAGIC) }

func isFS(path string, magic int64) (bool, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return false, fmt.Errorf("bpf: statfs %s: %w", path, err)
	}
	return st.Type == magic, nil
}

// MountBPFFS makes sure dir is on a bpf filesystem: if it is not, it creates
// dir and mounts a fresh bpffs on it. It reports whether it mounted one, in
// which case the caller owns the mount (unix.Unmount(dir, 0) removes it and
// every pin in it). Inside "ip netns exec", /sys/fs/bpf is not mounted, so
// an agent there calls this for its pin directory's parent.
func MountBPFFS(dir string) (mounted bool, err error) {
	return mountFS(dir, unix.BPF_FS_MAGIC, "bpf", "mode=0700")
}

// MountCgroup2 makes sure dir is on a cgroup v2 filesystem: if it is not, it creates dir
// and mounts the cgroup v2 hierarchy on it (its root as this process's cgroup namespace
// sees it). It reports whether it mounted it; unix.Unmount(dir, 0) removes the mount, not
// the cgroups. "ip netns exec" hides /sys/fs/cgroup, so an agent there needs its own.
func MountCgroup2(dir string) (mounted bool, err error) {
	return mountFS(dir, unix.CGROUP2_SUPER_MAGIC, "cgroup2", "")
}

func mountFS(dir string, magic int64, fstype, data string) (bool, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return false, fmt.Errorf("bpf: create %s: %w", dir, err)
	}
	ok, err := isFS(dir, magic)
	if err != nil {
		return false, err
	}
	if ok {
		return false, nil
	}
	if err := unix.Mount(fstype, dir, fstype, 0, data); err != nil {
		return false, fmt.Errorf("bpf: mount %s on %s: %w", fstype, dir, err)
	}
	return true, nil
}
