package lab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
)

// Namespace is a network namespace of a Lab.
type Namespace struct {
	Name  string // the real netns name, as in `ip netns exec Name`
	Short string // the name given to Lab.Namespace

	lab    *Lab
	handle netns.NsHandle // open until Lab.Close
	cgroup *Cgroup        // made by Cgroup; guarded by lab.mu
}

// Cgroup returns the namespace's own cgroup, named like it and made on first use: a lab
// node's, where its agent attaches the socket programs (--cgroup-root) and its pods'
// processes run (StartInCgroup, ExecInCgroup), as on a real node.
func (ns *Namespace) Cgroup() (*Cgroup, error) {
	ns.lab.mu.Lock()
	cg := ns.cgroup
	ns.lab.mu.Unlock()
	if cg != nil {
		return cg, nil
	}
	cg, err := ns.lab.Cgroup(ns.Short)
	if err != nil {
		return nil, err
	}
	ns.lab.mu.Lock()
	defer ns.lab.mu.Unlock()
	if ns.cgroup == nil {
		ns.cgroup = cg
	}
	return ns.cgroup, nil
}

func (ns *Namespace) path() string { return netnsPath(ns.Name) }

// init brings loopback up and turns IPv6 DAD off for every interface made later.
func (ns *Namespace) init() error {
	for _, key := range []string{"net.ipv6.conf.all.accept_dad", "net.ipv6.conf.default.accept_dad"} {
		if err := ns.Sysctl(key, "0"); err != nil {
			return err
		}
	}
	return ns.netlink(func(h *netlink.Handle) error {
		lo, err := h.LinkByName("lo")
		if err != nil {
			return fmt.Errorf("netns %s: lo: %w", ns.Name, err)
		}
		if err := h.LinkSetUp(lo); err != nil {
			return fmt.Errorf("netns %s: setting lo up: %w", ns.Name, err)
		}
		return nil
	})
}

// netlink runs fn with a netlink handle inside the namespace.
func (ns *Namespace) netlink(fn func(*netlink.Handle) error) error {
	if ns.lab.isClosed() {
		return ErrClosed
	}
	h, err := netlink.NewHandleAt(ns.handle)
	if err != nil {
		return fmt.Errorf("netns %s: netlink handle: %w", ns.Name, err)
	}
	defer h.Close()
	return fn(h)
}

// Exec runs a command inside the namespace (`ip netns exec`) and returns its combined
// output. The error names the namespace and the command and includes the output.
func (ns *Namespace) Exec(ctx context.Context, name string, args ...string) ([]byte, error) {
	if ns.lab.isClosed() {
		return nil, ErrClosed
	}
	return Exec(ctx, ns.Name, name, args...)
}

// ExecInCgroup is Exec with the command in cgroup cg, as a pod's processes are in their
// node's cgroup.
func (ns *Namespace) ExecInCgroup(ctx context.Context, cg *Cgroup, name string, args ...string) ([]byte, error) {
	if ns.lab.isClosed() {
		return nil, ErrClosed
	}
	return ExecIn(ctx, ns.Name, cg, name, args...)
}

// Start starts a background process inside the namespace. Close stops it (SIGTERM, then
// SIGKILL after StopGrace) if it is still running; it may also be stopped earlier.
func (ns *Namespace) Start(name string, args ...string) (*Process, error) {
	return ns.StartInCgroup(nil, name, args...)
}

// StartInCgroup is Start with the process in cgroup cg (nil: this process's), as a pod's
// processes are in their node's cgroup.
func (ns *Namespace) StartInCgroup(cg *Cgroup, name string, args ...string) (*Process, error) {
	if ns.lab.isClosed() {
		return nil, ErrClosed
	}
	p, err := startIn(ns.Name, cg, name, args...)
	if err != nil {
		return nil, err
	}
	if err := ns.lab.track(p); err != nil {
		return nil, errors.Join(err, p.Stop(StopGrace))
	}
	return p, nil
}

// Do runs fn on a locked OS thread inside the namespace and then restores the thread's
// namespace. If restoring fails the thread is discarded, never reused. Sockets opened by
// fn stay in the namespace; goroutines started by fn do not run in it. fn must not call
// t.FailNow (it runs on another goroutine).
func (ns *Namespace) Do(fn func() error) error {
	if ns.lab.isClosed() {
		return ErrClosed
	}
	return doIn(ns.handle, ns.Name, fn)
}

func doIn(target netns.NsHandle, name string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("netns %s: getting current netns: %w", name, err)
			return
		}
		defer orig.Close()
		if err := netns.Set(target); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("netns %s: entering: %w", name, err)
			return
		}
		fnErr := fn()
		if err := netns.Set(orig); err != nil {
			// Stay locked: the thread ends with this goroutine instead of serving others.
			errc <- errors.Join(fnErr, fmt.Errorf("netns %s: restoring original netns: %w", name, err))
			return
		}
		runtime.UnlockOSThread()
		errc <- fnErr
	}()
	return <-errc
}

// Sysctl writes a network sysctl (for example "net.ipv4.ip_forward") inside the namespace.
func (ns *Namespace) Sysctl(key, value string) error {
	if !strings.HasPrefix(key, "net.") {
		return fmt.Errorf("netns %s: sysctl %s: only net.* sysctls are per namespace", ns.Name, key)
	}
	file := filepath.Join("/proc/sys", strings.ReplaceAll(key, ".", "/"))
	return ns.Do(func() error {
		if err := os.WriteFile(file, []byte(value), 0o644); err != nil {
			return fmt.Errorf("netns %s: sysctl %s=%s: %w", ns.Name, key, value, err)
		}
		return nil
	})
}

// EnableForwarding turns on IPv4 and IPv6 forwarding, making the namespace a router.
func (ns *Namespace) EnableForwarding() error {
	for _, key := range []string{"net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding"} {
		if err := ns.Sysctl(key, "1"); err != nil {
			return err
		}
	}
	return nil
}

// AddRoute adds a route to dst ("default" or a CIDR) via a gateway address, or, when via
// is not an address, out of the interface named via. "default" takes the address family
// of the gateway (IPv4 when via is an interface).
func (ns *Namespace) AddRoute(dst, via string) error {
	route := &netlink.Route{}
	gw := net.ParseIP(via)
	if gw != nil {
		route.Gw = gw
	}
	if dst == "default" {
		route.Dst = &net.IPNet{IP: net.IPv4zero, Mask: net.CIDRMask(0, 32)}
		if gw != nil && gw.To4() == nil {
			route.Dst = &net.IPNet{IP: net.IPv6zero, Mask: net.CIDRMask(0, 128)}
		}
	} else {
		_, ipnet, err := net.ParseCIDR(dst)
		if err != nil {
			return fmt.Errorf("netns %s: route %s via %s: %w", ns.Name, dst, via, err)
		}
		route.Dst = ipnet
	}
	return ns.netlink(func(h *netlink.Handle) error {
		if gw == nil {
			link, err := h.LinkByName(via)
			if err != nil {
				return fmt.Errorf("netns %s: route %s via %s: not an address, and no such interface: %w", ns.Name, dst, via, err)
			}
			route.LinkIndex = link.Attrs().Index
			route.Scope = netlink.SCOPE_LINK
		}
		if err := h.RouteAdd(route); err != nil {
			return fmt.Errorf("netns %s: route %s via %s: %w", ns.Name, dst, via, err)
		}
		return nil
	})
}

// AddBridge creates a bridge inside the namespace with the given CIDR addresses and sets
// it up. Attach veths to it with Endpoint.Bridge.
func (ns *Namespace) AddBridge(name string, addrs ...string) error {
	return ns.netlink(func(h *netlink.Handle) error {
		br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: name}}
		if err := h.LinkAdd(br); err != nil {
			return fmt.Errorf("netns %s: adding bridge %s: %w", ns.Name, name, err)
		}
		return configure(h, ns.Name, name, addrs, "")
	})
}

// deleteLinks deletes every interface but loopback; interfaces deleted meanwhile (the
// peer of a veth deleted from the other side) are not an error.
func (ns *Namespace) deleteLinks() error {
	h, err := netlink.NewHandleAt(ns.handle)
	if err != nil {
		return fmt.Errorf("netns %s: netlink handle: %w", ns.Name, err)
	}
	defer h.Close()
	links, err := h.LinkList()
	for i := 0; errors.Is(err, netlink.ErrDumpInterrupted) && i < 5; i++ {
		links, err = h.LinkList()
	}
	if err != nil {
		return fmt.Errorf("netns %s: listing links: %w", ns.Name, err)
	}
	var errs []error
	for _, link := range links {
		if link.Attrs().Flags&net.FlagLoopback != 0 {
			continue
		}
		if err := h.LinkDel(link); err != nil && !isNotFound(err) {
			errs = append(errs, fmt.Errorf("netns %s: deleting %s: %w", ns.Name, link.Attrs().Name, err))
		}
	}
	return errors.Join(errs...)
}

// ReceiveXDPFrames makes veth dev accept the frames its peer's XDP program sends back
// with XDP_TX or redirects to it: a veth takes those only when it runs an XDP program of
// its own, so this attaches one that passes everything (in driver mode, through netlink:
// it stays until the device goes). A physical NIC needs nothing of the kind; a lab device
// facing a node's XDP device calls this to behave like the wire.
func (ns *Namespace) ReceiveXDPFrames(dev string) error {
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name:         "lab_xdp_pass",
		Type:         ebpf.XDP,
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 2 /* XDP_PASS */), asm.Return()},
		License:      "MIT",
	})
	if err != nil {
		return fmt.Errorf("lab: load an XDP_PASS program: %w", err)
	}
	defer prog.Close() // the attachment holds its own reference
	// vishvananda/netlink attaches XDP only through its package-level calls, which act
	// in the calling thread's namespace: Do runs them in this one.
	return ns.Do(func() error {
		link, err := netlink.LinkByName(dev)
		if err != nil {
			return fmt.Errorf("lab: %s: %s: %w", ns.Name, dev, err)
		}
		if err := netlink.LinkSetXdpFdWithFlags(link, prog.FD(), nl.XDP_FLAGS_DRV_MODE); err != nil {
			return fmt.Errorf("lab: %s: attach XDP_PASS to %s: %w", ns.Name, dev, err)
		}
		return nil
	})
}
