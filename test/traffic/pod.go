package traffic

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/sluice-lb/sluice/test/lab"
)

// A PodClient asks from a separate process in a namespace and a cgroup, as a pod on a node
// does: socket-level load balancing (the cgroup programs) applies to the sockets of the
// processes in the node's cgroup only, so in-process clients cannot test it. The process is
// the test binary itself, which must call RunPodClientIfAsked first thing in TestMain.
type PodClient struct {
	NS      *lab.Namespace // nil: this process's namespace
	Cgroup  *lab.Cgroup
	Timeout time.Duration // per request (default 2s)
}

// Networks a PodClient asks over.
const (
	TCP            = "tcp"             // connect(), one line, getpeername()
	UDP            = "udp"             // connect(), one datagram, getpeername()
	UDPUnconnected = "udp-unconnected" // sendto() one datagram, recvfrom()
)

// PodAnswer is what a PodClient saw.
type PodAnswer struct {
	Server string // the name of the server that answered
	// Remote is the address the socket reports for its peer: getpeername() for connected
	// sockets, the source recvfrom() gave for an unconnected one.
	Remote netip.AddrPort
}

// ErrRefused is a PodClient's connection refused (ECONNREFUSED).
var ErrRefused = errors.New("connection refused")

const podClientEnv = "SLUICE_TRAFFIC_POD_CLIENT"

// Ask makes one request over network to addr and returns what the client process saw.
func (c *PodClient) Ask(network, addr string) (PodAnswer, error) {
	timeout := c.Timeout
	if timeout == 0 {
		timeout = 2 * time.Second
	}
	self, err := os.Executable()
	if err != nil {
		return PodAnswer{}, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout+5*time.Second)
	defer cancel()
	netns := ""
	if c.NS != nil {
		netns = c.NS.Name
	}
	// `env` carries the request through `ip netns exec`.
	out, err := lab.ExecIn(ctx, netns, c.Cgroup, "env", fmt.Sprintf("%s=%s %s %s", podClientEnv, network, addr, timeout), self)
	if err != nil {
		return PodAnswer{}, err
	}
	line := strings.TrimSpace(string(out))
	if rest, ok := strings.CutPrefix(line, "refused"); ok {
		return PodAnswer{}, fmt.Errorf("%w%s", ErrRefused, rest)
	}
	if rest, ok := strings.CutPrefix(line, "error "); ok {
		return PodAnswer{}, errors.New(rest)
	}
	server, remote, _ := strings.Cut(strings.TrimPrefix(line, "ok "), " ")
	ap, err := netip.ParseAddrPort(remote)
	if err != nil {
		return PodAnswer{}, fmt.Errorf("pod client said %q", line)
	}
	return PodAnswer{Server: server, Remote: ap}, nil
}

// RunPodClientIfAsked, in a process a PodClient started, makes the request, prints what it
// saw and exits; otherwise it returns at once. Call it first in TestMain.
func RunPodClientIfAsked() {
	req, ok := os.LookupEnv(podClientEnv)
	if !ok {
		return
	}
	f := strings.Fields(req)
	timeout, err := time.ParseDuration(f[len(f)-1])
	if len(f) != 3 || err != nil {
		fmt.Printf("error bad request %q\n", req)
		os.Exit(0)
	}
	network, addr := f[0], f[1]
	server, remote, err := podAsk(network, addr, timeout)
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		fmt.Printf("refused: %v\n", err)
	case err != nil:
		fmt.Printf("error %v\n", err)
	default:
		fmt.Printf("ok %s %s\n", server, remote)
	}
	os.Exit(0)
}

func podAsk(network, addr string, timeout time.Duration) (string, netip.AddrPort, error) {
	const question = "hello"
	deadline := time.Now().Add(timeout)
	if network == UDPUnconnected {
		to, err := net.ResolveUDPAddr("udp", addr)
		if err != nil {
			return "", netip.AddrPort{}, err
		}
		conn, err := net.ListenPacket("udp", ":0")
		if err != nil {
			return "", netip.AddrPort{}, err
		}
		defer conn.Close()
		if err := conn.SetDeadline(deadline); err != nil {
			return "", netip.AddrPort{}, err
		}
		if _, err := conn.WriteTo([]byte(question+"\n"), to); err != nil {
			return "", netip.AddrPort{}, err
		}
		buf := make([]byte, 2048)
		n, from, err := conn.ReadFrom(buf)
		if err != nil {
			return "", netip.AddrPort{}, err
		}
		name, _, _ := strings.Cut(string(buf[:n]), " ")
		ap := from.(*net.UDPAddr).AddrPort()
		return name, netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), nil
	}
	conn, err := net.DialTimeout(network, addr, timeout)
	if err != nil {
		return "", netip.AddrPort{}, err
	}
	defer conn.Close()
	peer, err := getpeername(conn.(syscall.Conn))
	if err != nil {
		return "", netip.AddrPort{}, err
	}
	if err := conn.SetDeadline(deadline); err != nil {
		return "", netip.AddrPort{}, err
	}
	if _, err := fmt.Fprintf(conn, "%s\n", question); err != nil {
		return "", netip.AddrPort{}, err
	}
	answer, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return "", netip.AddrPort{}, err
	}
	name, _, _ := strings.Cut(answer, " ")
	return name, peer, nil
}

// getpeername asks the kernel for the socket's peer (what the getpeername programs rewrite).
func getpeername(c syscall.Conn) (netip.AddrPort, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return netip.AddrPort{}, err
	}
	var sa syscall.Sockaddr
	var gerr error
	if err := raw.Control(func(fd uintptr) { sa, gerr = syscall.Getpeername(int(fd)) }); err != nil {
		return netip.AddrPort{}, err
	}
	if gerr != nil {
		return netip.AddrPort{}, gerr
	}
	switch a := sa.(type) {
	case *syscall.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(a.Addr), uint16(a.Port)), nil
	case *syscall.SockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(a.Addr).Unmap(), uint16(a.Port)), nil
	}
	return netip.AddrPort{}, fmt.Errorf("getpeername: %T", sa)
}
