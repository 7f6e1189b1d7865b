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
func IsBPFFS(path string) (bool, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return false, fmt.Errorf("bpf: statfs %s: %w", path, err)
	}
	return st.Type == unix.BPF_FS_MAGIC, nil
}

// MountBPFFS makes sure dir is on a bpf filesystem: if it is not, it creates
// dir and mounts a fresh bpffs on it. It reports whether it mounted one, in
// which case the caller owns the mount (unix.Unmount(dir, 0) removes it and
// every pin in it). Inside "ip netns exec", /sys/fs/bpf is not mounted, so
// an agent there calls this for its pin directory's parent.
func MountBPFFS(dir string) (mounted bool, err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return false, fmt.Errorf("bpf: create %s: %w", dir, err)
	}
	onBPFFS, err := IsBPFFS(dir)
	if err != nil {
		return false, err
	}
	if onBPFFS {
		return false, nil
	}
	if err := unix.Mount("bpf", dir, "bpf", 0, "mode=0700"); err != nil {
		return false, fmt.Errorf("bpf: mount bpffs on %s: %w", dir, err)
	}
	return true, nil
}
