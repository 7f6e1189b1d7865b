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
)

// Attachment kinds, as suffixes of the pinned links' names.
var attachKinds = []string{"xdp", "tcx-ingress", "tcx-egress"}

// AttachDevice attaches the XDP and TCX programs to the interface and pins the links under
// linkDir as <ifname>_xdp, <ifname>_tcx-ingress and <ifname>_tcx-egress (bpffs reserves
// names with a dot). Links pinned there
// by an earlier agent are updated to this agent's programs in place (an atomic swap), so
// traffic never passes the device without a program — across restarts and upgrades. A pinned
// link that no longer works (its interface was recreated) is replaced.
func (d *Datapath) AttachDevice(ifname, linkDir string) error {
	iface, err := net.InterfaceByName(ifname)
	if err != nil {
		return fmt.Errorf("attaching to %s: %w", ifname, err)
	}
	if err := os.MkdirAll(linkDir, 0o700); err != nil {
		return fmt.Errorf("attaching to %s: %w", ifname, err)
	}
	progs := map[string]*ebpf.Program{"xdp": d.XDPProgram(), "tcx-ingress": d.TCIngressProgram(), "tcx-egress": d.TCEgressProgram()}
	for _, kind := range attachKinds {
		path := filepath.Join(linkDir, ifname+"_"+kind)
		if err := d.attachPinned(path, kind, iface.Index, progs[kind]); err != nil {
			return fmt.Errorf("attaching %s to %s: %w", kind, ifname, err)
		}
	}
	return nil
}

func (d *Datapath) attachPinned(path, kind string, ifindex int, prog *ebpf.Program) error {
	if l, err := link.LoadPinnedLink(path, nil); err == nil {
		ok := linkOnInterface(l, ifindex)
		if ok {
			if err := l.Update(prog); err == nil {
				return l.Close() // the pin keeps the link
			}
		}
		// Defunct or on another interface: replace it.
		_ = l.Unpin()
		_ = l.Close()
	} else if !errors.Is(err, os.ErrNotExist) {
		_ = os.Remove(path)
	}
	var l link.Link
	var err error
	switch kind {
	case "xdp":
		l, err = link.AttachXDP(link.XDPOptions{Program: prog, Interface: ifindex, Flags: link.XDPDriverMode})
		if err != nil {
			// No native XDP on this driver: the generic hook still works, slower.
			l, err = link.AttachXDP(link.XDPOptions{Program: prog, Interface: ifindex, Flags: link.XDPGenericMode})
		}
	case "tcx-ingress":
		l, err = link.AttachTCX(link.TCXOptions{Program: prog, Attach: ebpf.AttachTCXIngress, Interface: ifindex})
	case "tcx-egress":
		l, err = link.AttachTCX(link.TCXOptions{Program: prog, Attach: ebpf.AttachTCXEgress, Interface: ifindex})
	}
	if err != nil {
		return err
	}
	defer l.Close()
	if err := l.Pin(path); err != nil {
		return fmt.Errorf("pinning %s: %w", path, err)
	}
	return nil
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
