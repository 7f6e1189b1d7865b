package bpf

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netns"

	"github.com/sluice-lb/sluice/internal/testenv"
)

// ipCmd runs ip(8) with args and fails the test on error.
func ipCmd(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// newNetns creates a named network namespace, deleted at the end of the test.
func newNetns(t *testing.T, name string) {
	t.Helper()
	ipCmd(t, "netns", "add", name)
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v\n%s", name, err, out)
		}
	})
}

// inNetns runs fn on an OS thread switched into the named network namespace.
// The thread is never switched back: it stays locked and exits with the
// goroutine, so no other goroutine can inherit the namespace.
func inNetns(t *testing.T, name string, fn func() error) error {
	t.Helper()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		ns, err := netns.GetFromName(name)
		if err != nil {
			errc <- fmt.Errorf("open netns %s: %w", name, err)
			return
		}
		defer ns.Close()
		if err := netns.Set(ns); err != nil {
			errc <- fmt.Errorf("enter netns %s: %w", name, err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// Attached to a veth in a throwaway namespace, the program sees real traffic
// (ARP, ICMP, ICMPv6, UDP, TCP), counts it, and lets all of it through.
func TestXDPAttachVeth(t *testing.T) {
	testenv.RequirePrivileged(t)
	testenv.RequireCommands(t, "ip", "ping")

	var id [4]byte
	_, _ = rand.Read(id[:])
	nsA, nsB := "sluice-test-"+hex.EncodeToString(id[:])+"-a", "sluice-test-"+hex.EncodeToString(id[:])+"-b"
	newNetns(t, nsA)
	newNetns(t, nsB)
	ipCmd(t, "link", "add", "veth-a", "netns", nsA, "type", "veth", "peer", "name", "veth-b", "netns", nsB)
	for ns, addrs := range map[string][2]string{
		nsA: {"veth-a", "10.250.0.1/30 fd00:5c::1/64"},
		nsB: {"veth-b", "10.250.0.2/30 fd00:5c::2/64"},
	} {
		for _, a := range strings.Fields(addrs[1]) {
			ipCmd(t, "-n", ns, "addr", "add", a, "dev", addrs[0], "nodad")
		}
		ipCmd(t, "-n", ns, "link", "set", addrs[0], "up")
	}

	d := mustLoad(t, Options{})
	var l link.Link
	if err := inNetns(t, nsB, func() error {
		ifc, err := net.InterfaceByName("veth-b")
		if err != nil {
			return err
		}
		l, err = d.AttachXDP(ifc.Index, 0)
		return err
	}); err != nil {
		t.Fatalf("attach in %s: %v", nsB, err)
	}
	t.Cleanup(func() { l.Close() })
	// "xdp" is native (driver) mode, which veth has; generic would show "xdpgeneric".
	if out := ipCmd(t, "-n", nsB, "link", "show", "veth-b"); !strings.Contains(out, " xdp ") {
		t.Fatalf("veth-b shows no native XDP program:\n%s", out)
	}

	before := readCounters(t, d)
	for _, addr := range []string{"10.250.0.2", "fd00:5c::2"} {
		if out, err := exec.Command("ip", "netns", "exec", nsA, "ping", "-c", "3", "-i", "0.2", "-W", "2", addr).CombinedOutput(); err != nil {
			t.Fatalf("ping %s through the XDP program: %v\n%s", addr, err, out)
		}
	}
	if err := inNetns(t, nsA, func() error {
		for range 2 {
			c, err := net.Dial("udp4", "10.250.0.2:9")
			if err != nil {
				return err
			}
			_, err = c.Write([]byte("sluice"))
			c.Close()
			if err != nil {
				return err
			}
		}
		// Nobody listens: the SYN is answered with a RST, and that is fine.
		c, err := net.DialTimeout("tcp4", "10.250.0.2:9", 2*time.Second)
		if err == nil {
			c.Close()
		}
		return nil
	}); err != nil {
		t.Fatalf("send UDP/TCP from %s: %v", nsA, err)
	}
	got := readCounters(t, d).Sub(before)
	t.Logf("counted on veth-b: %v", got)

	atLeast := map[Counter]uint64{
		CounterNonIP:     1, // ARP
		CounterIPv4Other: 3, // echo requests
		CounterIPv6Other: 3, // echo requests (and neighbour discovery)
		CounterIPv4UDP:   2,
		CounterIPv4TCP:   1,
	}
	for c, n := range atLeast {
		if got[c].Packets < n || got[c].Bytes < got[c].Packets*42 {
			t.Errorf("%s: %+v, want at least %d packets of at least 42 bytes", c, got[c], n)
		}
	}
	for _, c := range []Counter{CounterMalformedL2, CounterMalformedL3, CounterMalformedL4} {
		if got[c] != (CounterValue{}) {
			t.Errorf("%s: %+v, want none", c, got[c])
		}
	}

	if err := l.Close(); err != nil {
		t.Fatalf("detach: %v", err)
	}
	if out := ipCmd(t, "-n", nsB, "link", "show", "veth-b"); strings.Contains(out, "xdp") {
		t.Errorf("veth-b still shows an XDP program after Close:\n%s", out)
	}
}
