package bpf

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// Attachment kinds, as suffixes of the pinned links' names.
var attachKinds = []string{"xdp", "tcx-ingress", "tcx-egress", "tcx-pod-ingress"}

// AttachDevice attaches the XDP and TCX programs to the interface and pins the links under
// linkDir as <ifname>_xdp, <ifname>_tcx-ingress and <ifname>_tcx-egress (bpffs reserves
// names with a dot). Links pinned there
// by an earlier agent are updated to this agent's programs in place (an atomic swap), so
// traffic never passes the device without a program — across restarts and upgrades. A pinned
// link that no longer works (its interface was recreated) is replaced.
func (d *Datapath) AttachDevice(ifname, linkDir string) error {
	return d.attachDevice(ifname, linkDir, map[string]*ebpf.Program{
		"xdp": d.XDPProgram(), "tcx-ingress": d.TCIngressProgram(), "tcx-egress": d.TCEgressProgram()})
}

// AttachPodDevice attaches the fallback for pod traffic to a pod's interface (its host side):
// TCX ingress translates what the pod sends to a frontend — cluster IPs included — that the
// socket programs did not, and TCX egress the replies to it. The links are pinned under
// linkDir as <ifname>_tcx-pod-ingress and <ifname>_tcx-egress, as AttachDevice pins its.
func (d *Datapath) AttachPodDevice(ifname, linkDir string) error {
	return d.attachDevice(ifname, linkDir, map[string]*ebpf.Program{
		"tcx-pod-ingress": d.TCPodIngressProgram(), "tcx-egress": d.TCEgressProgram()})
}

func (d *Datapath) attachDevice(ifname, linkDir string, progs map[string]*ebpf.Program) error {
	iface, err := net.InterfaceByName(ifname)
	if err != nil {
		return fmt.Errorf("attaching to %s: %w", ifname, err)
	}
	if err := os.MkdirAll(linkDir, 0o700); err != nil {
		return fmt.Errorf("attaching to %s: %w", ifname, err)
	}
	for _, kind := range attachKinds {
		if progs[kind] == nil {
			continue
		}
		path := filepath.Join(linkDir, ifname+"_"+kind)
		onIface := func(l link.Link) bool { return linkOnInterface(l, iface.Index) }
		if err := attachPinned(path, onIface, progs[kind], func() (link.Link, error) { return attachToDevice(kind, iface.Index, progs[kind]) }); err != nil {
			return fmt.Errorf("attaching %s to %s: %w", kind, ifname, err)
		}
	}
	return nil
}

// attachPinned makes the link pinned at path run prog: a pinned link that is still on its
// target (onTarget) is updated in place, anything else there is replaced by a new link from
// attach, pinned at path.
func attachPinned(path string, onTarget func(link.Link) bool, prog *ebpf.Program, attach func() (link.Link, error)) error {
	if l, err := link.LoadPinnedLink(path, nil); err == nil {
		if onTarget(l) {
			if err := l.Update(prog); err == nil {
				return l.Close() // the pin keeps the link
			}
		}
		// Defunct or on another target: replace it.
		_ = l.Unpin()
		_ = l.Close()
	} else if !errors.Is(err, os.ErrNotExist) {
		_ = os.Remove(path)
	}
	l, err := attach()
	if err != nil {
		return err
	}
	defer l.Close()
	if err := l.Pin(path); err != nil {
		return fmt.Errorf("pinning %s: %w", path, err)
	}
	return nil
}

func attachToDevice(kind string, ifindex int, prog *ebpf.Program) (link.Link, error) {
	switch kind {
	case "xdp":
		l, err := link.AttachXDP(link.XDPOptions{Program: prog, Interface: ifindex, Flags: link.XDPDriverMode})
		if err != nil {
			// No native XDP on this driver: the generic hook still works, slower.
			l, err = link.AttachXDP(link.XDPOptions{Program: prog, Interface: ifindex, Flags: link.XDPGenericMode})
		}
		return l, err
	case "tcx-ingress", "tcx-pod-ingress":
		return link.AttachTCX(link.TCXOptions{Program: prog, Attach: ebpf.AttachTCXIngress, Interface: ifindex})
	default:
		return link.AttachTCX(link.TCXOptions{Program: prog, Attach: ebpf.AttachTCXEgress, Interface: ifindex})
	}
}

// linkOnInterface reports whether a pinned link is still attached to ifindex.
func linkOnInterface(l link.Link, ifindex int) bool {
	info, err := l.Info()
	if err != nil {
		return false
	}
	if x := info.XDP(); x != nil {
		return int(x.Ifindex) == ifindex
	}
	if t := info.TCX(); t != nil {
		return int(t.Ifindex) == ifindex
	}
	return false
}

// The socket programs (sock.c) by the pinned link's name: cgroup_<name>.
var cgroupHooks = []struct {
	name   string
	attach ebpf.AttachType
}{
	{"connect4", ebpf.AttachCGroupInet4Connect},
	{"connect6", ebpf.AttachCGroupInet6Connect},
	{"sendmsg4", ebpf.AttachCGroupUDP4Sendmsg},
	{"sendmsg6", ebpf.AttachCGroupUDP6Sendmsg},
	{"recvmsg4", ebpf.AttachCGroupUDP4Recvmsg},
	{"recvmsg6", ebpf.AttachCGroupUDP6Recvmsg},
	{"getpeername4", ebpf.AttachCgroupInet4GetPeername},
	{"getpeername6", ebpf.AttachCgroupInet6GetPeername},
}

// AttachCgroup attaches the socket-level load balancer (connect, sendmsg, recvmsg and
// getpeername, both families) to the cgroup v2 directory cgroup, which covers the processes
// in it and below it: the node's pods and host processes when it is the cgroup root. The
// links are pinned under linkDir as cgroup_<hook> and, like [Datapath.AttachDevice]'s,
// updated in place when an earlier agent pinned them on the same cgroup.
func (d *Datapath) AttachCgroup(cgroup, linkDir string) error {
	var st unix.Stat_t
	if err := unix.Stat(cgroup, &st); err != nil {
		return fmt.Errorf("attaching to cgroup %s: %w", cgroup, err)
	}
	var fs unix.Statfs_t
	if err := unix.Statfs(cgroup, &fs); err != nil {
		return fmt.Errorf("attaching to cgroup %s: %w", cgroup, err)
	}
	if fs.Type != unix.CGROUP2_SUPER_MAGIC {
		return fmt.Errorf("attaching to cgroup %s: not on a cgroup v2 filesystem", cgroup)
	}
	if err := os.MkdirAll(linkDir, 0o700); err != nil {
		return fmt.Errorf("attaching to cgroup %s: %w", cgroup, err)
	}
	progs := d.sockPrograms()
	onCgroup := func(l link.Link) bool {
		info, err := l.Info()
		if err != nil || info.Cgroup() == nil {
			return false
		}
		return info.Cgroup().CgroupId == st.Ino // a cgroup's id is its directory's inode
	}
	for i, h := range cgroupHooks {
		path := filepath.Join(linkDir, "cgroup_"+h.name)
		attach := func() (link.Link, error) {
			return link.AttachCgroup(link.CgroupOptions{Path: cgroup, Attach: h.attach, Program: progs[i]})
		}
		if err := attachPinned(path, onCgroup, progs[i], attach); err != nil {
			return fmt.Errorf("attaching %s to cgroup %s: %w", h.name, cgroup, err)
		}
	}
	return nil
}

// sockPrograms are the socket programs in cgroupHooks' order.
func (d *Datapath) sockPrograms() []*ebpf.Program {
	p := d.programs
	return []*ebpf.Program{p.SluiceConnect4, p.SluiceConnect6, p.SluiceSendmsg4, p.SluiceSendmsg6,
		p.SluiceRecvmsg4, p.SluiceRecvmsg6, p.SluiceGetpeername4, p.SluiceGetpeername6}
}

// DetachCgroup removes the socket programs' pinned links under linkDir, which detaches them.
func DetachCgroup(linkDir string) error {
	var errs []error
	for _, h := range cgroupHooks {
		path := filepath.Join(linkDir, "cgroup_"+h.name)
		if l, err := link.LoadPinnedLink(path, nil); err == nil {
			_ = l.Unpin()
			_ = l.Close()
		} else if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// DetachDevices removes the pinned links under linkDir of every interface not in keep, which
// detaches the programs from it. With keep empty it detaches everything.
func DetachDevices(linkDir string, keep []string) error {
	entries, err := os.ReadDir(linkDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	kept := map[string]bool{}
	for _, k := range keep {
		kept[k] = true
	}
	var errs []error
	for _, e := range entries {
		name := e.Name()
		ifname := ""
		for _, kind := range attachKinds {
			if n, ok := strings.CutSuffix(name, "_"+kind); ok {
				ifname = n
			}
		}
		if ifname == "" || kept[ifname] {
			continue
		}
		path := filepath.Join(linkDir, name)
		if l, err := link.LoadPinnedLink(path, nil); err == nil {
			_ = l.Unpin()
			_ = l.Close()
		} else if err := os.Remove(path); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
