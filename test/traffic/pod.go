package traffic

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
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
	answers, err := c.AskN(network, addr, 1)
	if err != nil {
		return PodAnswer{}, err
	}
	return answers[0], nil
}

// AskN makes n requests, one after another, from one client process (each over a socket of
// its own), and returns what it saw; it stops at the first failure, which it returns.
func (c *PodClient) AskN(network, addr string, n int) ([]PodAnswer, error) {
	timeout := c.Timeout
	if timeout == 0 {
		timeout = 2 * time.Second
	}
	out, err := c.run(fmt.Sprintf("%s %s %s %d", network, addr, timeout, n), time.Duration(n)*timeout)
	if err != nil {
		return nil, err
	}
	var answers []PodAnswer
	for _, line := range strings.Split(out, "\n") {
		if rest, ok := strings.CutPrefix(line, "refused"); ok {
			return answers, fmt.Errorf("%w%s", ErrRefused, rest)
		}
		if rest, ok := strings.CutPrefix(line, "error "); ok {
			return answers, errors.New(rest)
		}
		server, remote, _ := strings.Cut(strings.TrimPrefix(line, "ok "), " ")
		ap, err := netip.ParseAddrPort(remote)
		if err != nil {
			return answers, fmt.Errorf("pod client said %q", line)
		}
		answers = append(answers, PodAnswer{Server: server, Remote: ap})
	}
	if len(answers) != n {
		return answers, fmt.Errorf("pod client answered %d of %d requests", len(answers), n)
	}
	return answers, nil
}

// ConnectStats are what PodClient.Connects measured.
type ConnectStats struct {
	P50, P99 time.Duration // time to connect (the first packet's round trip, and the translation)
	Rate     float64       // connections (each with one request and answer) per second
}

// Connects measures from the client's process: n connections one after another, timing each
// connect(), then n connections with one request each, parallel at a time, for the rate.
func (c *PodClient) Connects(addr string, n, parallel int) (ConnectStats, error) {
	out, err := c.run(fmt.Sprintf("connects %s %d %d", addr, n, parallel), time.Minute)
	if err != nil {
		return ConnectStats{}, err
	}
	var st ConnectStats
	var p50, p99 int64
	if _, err := fmt.Sscanf(out, "ok %d %d %f", &p50, &p99, &st.Rate); err != nil {
		return ConnectStats{}, fmt.Errorf("pod client said %q", out)
	}
	st.P50, st.P99 = time.Duration(p50), time.Duration(p99)
	return st, nil
}

// run runs the client process with request req and returns its output line.
func (c *PodClient) run(req string, timeout time.Duration) (string, error) {
	self, err := os.Executable()
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout+5*time.Second)
	defer cancel()
	netns := ""
	if c.NS != nil {
		netns = c.NS.Name
	}
	// `env` carries the request through `ip netns exec`.
	out, err := lab.ExecIn(ctx, netns, c.Cgroup, "env", podClientEnv+"="+req, self)
	line := strings.TrimSpace(string(out))
	if err != nil {
		return line, err
	}
	if rest, ok := strings.CutPrefix(line, "error "); ok {
		return "", errors.New(rest)
	}
	return line, nil
}

// RunPodClientIfAsked, in a process a PodClient started, makes the request, prints what it
// saw and exits; otherwise it returns at once. Call it first in TestMain.
func RunPodClientIfAsked() {
	req, ok := os.LookupEnv(podClientEnv)
	if !ok {
		return
	}
	f := strings.Fields(req)
	if len(f) == 4 && f[0] == "connects" {
		fmt.Println(podConnects(f[1], f[2], f[3]))
		os.Exit(0)
	}
	if len(f) != 4 {
		fmt.Printf("error bad request %q\n", req)
		os.Exit(0)
	}
	timeout, err1 := time.ParseDuration(f[2])
	n, err2 := strconv.Atoi(f[3])
	if err1 != nil || err2 != nil {
		fmt.Printf("error bad request %q\n", req)
		os.Exit(0)
	}
	network, addr := f[0], f[1]
	for range n {
		server, remote, err := podAsk(network, addr, timeout)
		switch {
		case errors.Is(err, syscall.ECONNREFUSED):
			fmt.Printf("refused: %v\n", err)
		case err != nil:
			fmt.Printf("error %v\n", err)
		default:
			fmt.Printf("ok %s %s\n", server, remote)
			continue
		}
		break
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

// podConnects is the client process's side of PodClient.Connects.
func podConnects(addr, count, par string) string {
	n, err1 := strconv.Atoi(count)
	parallel, err2 := strconv.Atoi(par)
	if err1 != nil || err2 != nil || n < 1 || parallel < 1 {
		return "error bad request"
	}
	times := make([]time.Duration, 0, n)
	for range n {
		t0 := time.Now()
		conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
		if err != nil {
			return "error " + err.Error()
		}
		times = append(times, time.Since(t0))
		conn.Close()
	}
	slices.Sort(times)
	var failed atomic.Int64
	var wg sync.WaitGroup
	next := make(chan struct{})
	start := time.Now()
	for range parallel {
		wg.Go(func() {
			for range next {
				conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
				if err == nil {
					_, err = exchange(conn, "hello", 2*time.Second)
					conn.Close()
				}
				if err != nil {
					failed.Add(1)
				}
			}
		})
	}
	for range n {
		next <- struct{}{}
	}
	close(next)
	wg.Wait()
	if f := failed.Load(); f > 0 {
		return fmt.Sprintf("error %d of %d connections failed", f, n)
	}
	rate := float64(n) / time.Since(start).Seconds()
	return fmt.Sprintf("ok %d %d %.0f", times[len(times)/2], times[len(times)*99/100], rate)
}
