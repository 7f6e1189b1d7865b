package lab_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/internal/testenv"
	"github.com/sluice-lb/sluice/test/lab"
)

// topology is a router with a LAN bridge holding two nodes, and a client on its own link:
//
//	client (10.1.0.2, 2001:db8:b::2) -- router (forwarding) -- br0 (10.0.0.1, 2001:db8:a::1)
//	                                                           |-- node1 (10.0.0.11, 2001:db8:a::11)
//	                                                           `-- node2 (10.0.0.12, 2001:db8:a::12)
type topology struct {
	lab                          *lab.Lab
	router, client, node1, node2 *lab.Namespace
}

func buildTopology(t *testing.T, l *lab.Lab) topology {
	t.Helper()
	ns := func(short string) *lab.Namespace {
		n, err := l.Namespace(short)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	top := topology{lab: l, router: ns("router"), client: ns("client"), node1: ns("node1"), node2: ns("node2")}
	must(t, top.router.EnableForwarding())
	must(t, top.router.AddBridge("br0", "10.0.0.1/24", "2001:db8:a::1/64"))
	must(t, l.Connect(
		lab.Endpoint{NS: top.router, Name: "client0", Addrs: []string{"10.1.0.1/24", "2001:db8:b::1/64"}},
		lab.Endpoint{NS: top.client, Name: "eth0", Addrs: []string{"10.1.0.2/24", "2001:db8:b::2/64"}}))
	for i, node := range []*lab.Namespace{top.node1, top.node2} {
		must(t, l.Connect(
			lab.Endpoint{NS: top.router, Name: fmt.Sprintf("node%d", i+1), Bridge: "br0"},
			lab.Endpoint{NS: node, Name: "eth0", Addrs: []string{fmt.Sprintf("10.0.0.%d/24", 11+i), fmt.Sprintf("2001:db8:a::%d/64", 11+i)}}))
		must(t, node.AddRoute("default", "10.0.0.1"))
		must(t, node.AddRoute("default", "2001:db8:a::1"))
	}
	must(t, top.client.AddRoute("default", "10.1.0.1"))
	must(t, top.client.AddRoute("2001:db8:a::/64", "2001:db8:b::1"))
	return top
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func ping(t *testing.T, from *lab.Namespace, to string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if _, err := from.Exec(ctx, "ping", "-c", "1", "-W", "2", to); err != nil {
		t.Errorf("ping %s from %s: %v", to, from.Short, err)
	}
}

func TestTopologyPing(t *testing.T) {
	testenv.RequirePrivileged(t)
	testenv.RequireCommands(t, "ip", "ping")
	top := buildTopology(t, lab.ForTest(t))
	for _, dst := range []string{"10.0.0.11", "10.0.0.12", "2001:db8:a::11", "2001:db8:a::12"} {
		ping(t, top.client, dst) // routed through the router
	}
	ping(t, top.node1, "10.0.0.12") // bridged on the LAN
	ping(t, top.node2, "2001:db8:a::11")
}

// TestParallelLabs builds identical topologies (same short names, interface names and
// addresses) in parallel labs: nothing may collide.
func TestParallelLabs(t *testing.T) {
	testenv.RequirePrivileged(t)
	testenv.RequireCommands(t, "ip", "ping")
	for i := range 4 {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			t.Parallel()
			l := lab.ForTest(t)
			a, err := l.Namespace("a")
			must(t, err)
			b, err := l.Namespace("b")
			must(t, err)
			must(t, l.Connect(
				lab.Endpoint{NS: a, Name: "eth0", Addrs: []string{"192.168.0.1/30", "2001:db8:c::1/64"}},
				lab.Endpoint{NS: b, Name: "eth0", Addrs: []string{"192.168.0.2/30", "2001:db8:c::2/64"}}))
			ping(t, a, "192.168.0.2")
			ping(t, b, "2001:db8:c::1")
		})
	}
}

// TestDo opens a listener inside node1 and dials it from inside client, through the
// router, then checks that every thread of this process is back in its namespace.
func TestDo(t *testing.T) {
	testenv.RequirePrivileged(t)
	top := buildTopology(t, lab.ForTest(t))

	var ln net.Listener
	must(t, top.node1.Do(func() (err error) {
		ifs, err := net.Interfaces()
		if err != nil || len(ifs) != 2 || ifs[1].Name != "eth0" {
			return fmt.Errorf("interfaces inside node1: %v, %v; want lo and eth0", ifs, err)
		}
		ln, err = net.Listen("tcp", "[2001:db8:a::11]:0")
		return err
	}))
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		io.WriteString(c, "hello from node1")
	}()

	var got []byte
	must(t, top.client.Do(func() error {
		c, err := net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		got, err = io.ReadAll(c)
		return err
	}))
	if string(got) != "hello from node1" {
		t.Errorf("read %q through the router, want %q", got, "hello from node1")
	}
	self, err := os.Readlink("/proc/self/ns/net")
	must(t, err)
	tasks, _ := filepath.Glob("/proc/self/task/*/ns/net")
	for _, task := range tasks {
		if ns, err := os.Readlink(task); err == nil && ns != self {
			t.Errorf("thread %s is in %s after Do, want %s", task, ns, self)
		}
	}
}

// TestCloseRemovesEverything starts a tracked process and a forked background process
// that the lab does not know about, then checks that Close removes the processes, the
// namespaces and every reference this process held to them.
func TestCloseRemovesEverything(t *testing.T) {
	testenv.RequirePrivileged(t)
	testenv.RequireCommands(t, "ip", "sleep", "sh")
	l, err := lab.New("close")
	must(t, err)
	closed := false
	t.Cleanup(func() {
		if !closed {
			l.Close()
		}
	})
	top := buildTopology(t, l)
	inodes := netnsInodes(t, l.Prefix())
	if len(inodes) != 4 {
		t.Fatalf("found %d namespaces with prefix %s, want 4", len(inodes), l.Prefix())
	}

	p, err := top.node1.Start("sleep", "1000")
	must(t, err)
	out, err := top.node2.Exec(t.Context(), "sh", "-c", "sleep 1000 >/dev/null 2>&1 & echo $!")
	must(t, err)
	var forked int
	if _, err := fmt.Sscan(string(out), &forked); err != nil {
		t.Fatalf("parsing forked PID from %q: %v", out, err)
	}
	cg, err := l.Cgroup("pods")
	must(t, err)
	// A process in the cgroup that forked into the background: only the cgroup knows it.
	out, err = top.node2.ExecInCgroup(t.Context(), cg, "sh", "-c", "sleep 1000 >/dev/null 2>&1 & echo $!")
	must(t, err)
	var inCgroup int
	if _, err := fmt.Sscan(string(out), &inCgroup); err != nil {
		t.Fatalf("parsing forked PID from %q: %v", out, err)
	}
	if procs, err := os.ReadFile(filepath.Join(cg.Path, "cgroup.procs")); err != nil || strings.TrimSpace(string(procs)) != strconv.Itoa(inCgroup) {
		t.Fatalf("cgroup %s holds %q (%v), want %d", cg.Path, procs, err, inCgroup)
	}
	for _, pid := range []int{p.PID, forked, inCgroup} {
		if !running(pid) {
			t.Fatalf("process %d is not running before Close", pid)
		}
	}

	start := time.Now()
	must(t, l.Close())
	closed = true
	t.Logf("Close took %v", time.Since(start))

	select {
	case <-p.Done():
	default:
		t.Errorf("tracked process %d not reaped after Close", p.PID)
	}
	for _, pid := range []int{p.PID, forked, inCgroup} {
		if running(pid) {
			t.Errorf("process %d still running after Close", pid)
		}
	}
	if _, err := os.Stat(cg.Path); !os.IsNotExist(err) {
		t.Errorf("cgroup %s after Close: %v, want it removed", cg.Path, err)
	}
	if left := netnsInodes(t, l.Prefix()); len(left) != 0 {
		t.Errorf("namespaces left after Close: %v", left)
	}
	if refs := nsReferences(t, inodes); len(refs) != 0 {
		t.Errorf("references to the lab's namespaces left after Close (they stay alive): %v", refs)
	}
	for _, name := range []string{"br0", "client0", "node1", "node2"} {
		if _, err := net.InterfaceByName(name); err == nil {
			t.Errorf("interface %s exists in the root namespace", name)
		}
	}
	if _, err := l.Namespace("again"); err != lab.ErrClosed {
		t.Errorf("Namespace after Close: got %v, want ErrClosed", err)
	}
	must(t, l.Close()) // idempotent
}

func TestErrorsNamePlaces(t *testing.T) {
	testenv.RequirePrivileged(t)
	l := lab.ForTest(t)
	a, err := l.Namespace("a")
	must(t, err)
	b, err := l.Namespace("b")
	must(t, err)
	err = l.Connect(lab.Endpoint{NS: a, Name: "eth0", Addrs: []string{"10.0.0.300/24"}}, lab.Endpoint{NS: b, Name: "eth0"})
	if err == nil || !strings.Contains(err.Error(), a.Name) || !strings.Contains(err.Error(), "10.0.0.300/24") {
		t.Errorf("bad address: error %q should name the namespace %s and the address", err, a.Name)
	}
	if err := a.AddRoute("10.9.0.0/16", "nosuchif"); err == nil || !strings.Contains(err.Error(), "nosuchif") {
		t.Errorf("route via missing interface: error %q should name it", err)
	}
	if _, err := l.Namespace("a"); err == nil {
		t.Error("a second namespace \"a\" was created")
	}
	if _, err := l.Namespace("Bad_Name"); err == nil {
		t.Error("namespace \"Bad_Name\" was accepted")
	}
}

// TestForward: a connection made inside a namespace to the Forward address reaches a server
// of the test's own namespace on loopback, both ways; Close cuts it and refuses new ones;
// Forward again serves again.
func TestForward(t *testing.T) {
	testenv.RequirePrivileged(t)
	l := lab.ForTest(t)
	ns, err := l.Namespace("fwd")
	must(t, err)
	srv, err := net.Listen("tcp", "127.0.0.1:0") // in the test's namespace
	must(t, err)
	defer srv.Close()
	go func() {
		for {
			c, err := srv.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()
	addr := srv.Addr().String()
	echo := func() (net.Conn, error) {
		var c net.Conn
		err := ns.Do(func() error {
			var err error
			c, err = net.DialTimeout("tcp", addr, time.Second)
			return err
		})
		return c, err
	}
	if _, err := echo(); err == nil {
		t.Fatal("the namespace reached the test's loopback without a forwarder")
	}
	fw, err := ns.Forward(addr, addr)
	must(t, err)
	c, err := echo()
	must(t, err)
	buf := make([]byte, 5)
	if _, err := c.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "hello" {
		t.Fatalf("echo through the forwarder: %q, %v", buf, err)
	}
	must(t, fw.Close())
	if _, err := c.Read(buf); err == nil {
		t.Fatal("a relayed connection lives on after Close")
	}
	if _, err := echo(); err == nil {
		t.Fatal("a new connection was accepted after Close")
	}
	fw, err = ns.Forward(addr, addr)
	must(t, err)
	defer fw.Close()
	c, err = echo()
	must(t, err)
	c.Close()
}
