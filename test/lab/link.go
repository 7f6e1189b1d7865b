package lab

import (
	"errors"
	"fmt"
	"syscall"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Endpoint is one end of a veth pair made by Connect.
type Endpoint struct {
	NS     *Namespace
	Name   string   // interface name inside NS, at most 15 bytes
	Addrs  []string // CIDR addresses, IPv4 or IPv6, e.g. "10.0.0.1/24", "fd00::1/64"
	Bridge string   // optional: enslave the interface to this bridge of NS (see AddBridge)
}

func (e Endpoint) String() string {
	if e.NS == nil {
		return e.Name
	}
	return e.NS.Name + "/" + e.Name
}

// Connect creates a veth pair between two namespaces of the Lab (or within one), with the
// peer created directly inside b's namespace, adds the addresses (IPv6 without DAD),
// attaches the ends to their bridges and sets both up.
func (l *Lab) Connect(a, b Endpoint) error {
	for _, e := range []Endpoint{a, b} {
		if e.NS == nil || e.NS.lab != l {
			return fmt.Errorf("lab: connect %s <-> %s: namespace of %s is not from this lab", a, b, e)
		}
		if e.Name == "" || len(e.Name) > unix.IFNAMSIZ-1 {
			return fmt.Errorf("lab: connect %s <-> %s: interface name %q must be 1-15 bytes", a, b, e.Name)
		}
	}
	err := a.NS.netlink(func(h *netlink.Handle) error {
		veth := &netlink.Veth{
			LinkAttrs:     netlink.LinkAttrs{Name: a.Name},
			PeerName:      b.Name,
			PeerNamespace: netlink.NsFd(b.NS.handle),
		}
		if err := h.LinkAdd(veth); err != nil {
			return fmt.Errorf("lab: veth %s <-> %s: %w", a, b, err)
		}
		return configure(h, a.NS.Name, a.Name, a.Addrs, a.Bridge)
	})
	if err != nil {
		return err
	}
	return b.NS.netlink(func(h *netlink.Handle) error {
		return configure(h, b.NS.Name, b.Name, b.Addrs, b.Bridge)
	})
}

// configure adds addresses to an interface, enslaves it to bridge (if not empty) and
// sets it up.
func configure(h *netlink.Handle, nsName, ifName string, addrs []string, bridge string) error {
	link, err := h.LinkByName(ifName)
	if err != nil {
		return fmt.Errorf("netns %s: interface %s: %w", nsName, ifName, err)
	}
	for _, s := range addrs {
		addr, err := netlink.ParseAddr(s)
		if err != nil {
			return fmt.Errorf("netns %s: interface %s: address %q: %w", nsName, ifName, s, err)
		}
		if addr.IP.To4() == nil {
			addr.Flags |= unix.IFA_F_NODAD
		}
		if err := h.AddrAdd(link, addr); err != nil {
			return fmt.Errorf("netns %s: interface %s: adding %s: %w", nsName, ifName, s, err)
		}
	}
	if bridge != "" {
		br, err := h.LinkByName(bridge)
		if err != nil {
			return fmt.Errorf("netns %s: bridge %s for %s: %w", nsName, bridge, ifName, err)
		}
		if err := h.LinkSetMaster(link, br); err != nil {
			return fmt.Errorf("netns %s: attaching %s to bridge %s: %w", nsName, ifName, bridge, err)
		}
	}
	if err := h.LinkSetUp(link); err != nil {
		return fmt.Errorf("netns %s: setting %s up: %w", nsName, ifName, err)
	}
	return nil
}

func isNotFound(err error) bool {
	var lnf netlink.LinkNotFoundError
	return errors.As(err, &lnf) || errors.Is(err, syscall.ENODEV) || errors.Is(err, syscall.ENOENT)
}
