package traffic

import (
	"bufio"
	"fmt"
	"math"
	"net"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/sluice-lb/sluice/test/lab"
)

// Client makes requests from a namespace.
type Client struct {
	ns *lab.Namespace
	// Timeout bounds each connection attempt and each answer (default 2s).
	Timeout time.Duration
	// Source, when valid, is the address connections come from (one of the namespace's).
	Source netip.Addr
}

// NewClient returns a client in ns.
func NewClient(ns *lab.Namespace) *Client { return &Client{ns: ns, Timeout: 2 * time.Second} }

// Dial opens a connection whose socket lives in the client's namespace.
func (c *Client) Dial(network, addr string) (net.Conn, error) {
	var conn net.Conn
	err := c.ns.Do(func() error {
		var err error
		d := net.Dialer{Timeout: c.Timeout}
		if c.Source.IsValid() {
			if strings.HasPrefix(network, "udp") {
				d.LocalAddr = &net.UDPAddr{IP: c.Source.AsSlice()}
			} else {
				d.LocalAddr = &net.TCPAddr{IP: c.Source.AsSlice()}
			}
		}
		conn, err = d.Dial(network, addr)
		return err
	})
	return conn, err
}

// Ask sends one request ("tcp": a connection with one line; "udp": one datagram) and returns
// the name of the server that answered.
func (c *Client) Ask(network, addr string) (string, error) {
	conn, err := c.Dial(network, addr)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	return exchange(conn, "hello", c.Timeout)
}

// Peer opens a TCP connection and asks the server which client address it sees: whether the
// client's address is kept on the way (source IP preservation).
func (c *Client) Peer(addr string) (server string, peer netip.Addr, err error) {
	conn, err := c.Dial("tcp", addr)
	if err != nil {
		return "", netip.Addr{}, err
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(c.Timeout)); err != nil {
		return "", netip.Addr{}, err
	}
	if _, err := fmt.Fprintf(conn, "%s\n", PeerQuestion); err != nil {
		return "", netip.Addr{}, err
	}
	answer, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return "", netip.Addr{}, err
	}
	server, seen, _ := strings.Cut(strings.TrimSuffix(answer, "\n"), " ")
	peer, err = netip.ParseAddr(seen)
	return server, peer, err
}

// exchange sends one line and reads the answer "<name> <line>", returning name.
func exchange(conn net.Conn, line string, timeout time.Duration) (string, error) {
	if err := conn.SetDeadline(time.Now().Add(timeout)); err != nil {
		return "", err
	}
	if _, err := fmt.Fprintf(conn, "%s\n", line); err != nil {
		return "", err
	}
	var answer string
	if _, ok := conn.(*net.UDPConn); ok {
		buf := make([]byte, 2048)
		n, err := conn.Read(buf)
		if err != nil {
			return "", err
		}
		answer = strings.TrimSuffix(string(buf[:n]), "\n")
	} else {
		r := bufio.NewReader(conn)
		s, err := r.ReadString('\n')
		if err != nil {
			return "", err
		}
		answer = strings.TrimSuffix(s, "\n")
	}
	name, rest, ok := strings.Cut(answer, " ")
	if !ok || rest != line {
		return "", fmt.Errorf("unexpected answer %q to %q", answer, line)
	}
	return name, nil
}

// Result tallies requests by the server that answered them.
type Result struct {
	ByServer map[string]int
	Failed   int
	FirstErr error
}

// OK is the number of answered requests.
func (r Result) OK() int {
	n := 0
	for _, v := range r.ByServer {
		n += v
	}
	return n
}

// MaxDeviation is the largest relative distance of a server's share from an even share over
// servers servers (0.05 = 5 %). A server that answered nothing counts as 0.
func (r Result) MaxDeviation(servers int) float64 {
	total := float64(r.OK())
	if total == 0 || servers == 0 {
		return math.Inf(1)
	}
	even := total / float64(servers)
	worst := 0.0
	missing := servers - len(r.ByServer)
	if missing > 0 {
		worst = 1
	}
	for _, v := range r.ByServer {
		worst = math.Max(worst, math.Abs(float64(v)-even)/even)
	}
	return worst
}

func (r Result) String() string {
	names := make([]string, 0, len(r.ByServer))
	for n := range r.ByServer {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	for _, n := range names {
		fmt.Fprintf(&b, "%s=%d ", n, r.ByServer[n])
	}
	fmt.Fprintf(&b, "failed=%d", r.Failed)
	if r.FirstErr != nil {
		fmt.Fprintf(&b, " (first error: %v)", r.FirstErr)
	}
	return b.String()
}

// tally is a Result being filled by several goroutines.
type tally struct {
	mu sync.Mutex
	r  Result
}

func (t *tally) add(name string, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if err != nil {
		t.r.Failed++
		if t.r.FirstErr == nil {
			t.r.FirstErr = err
		}
		return
	}
	t.r.ByServer[name]++
}

func (t *tally) result() Result {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := Result{ByServer: map[string]int{}, Failed: t.r.Failed, FirstErr: t.r.FirstErr}
	for k, v := range t.r.ByServer {
		out.ByServer[k] = v
	}
	return out
}

// Spread sends n requests, parallel at a time, each on a new connection (a new source port).
func (c *Client) Spread(network, addr string, n, parallel int) Result {
	t := &tally{r: Result{ByServer: map[string]int{}}}
	work := make(chan struct{})
	var wg sync.WaitGroup
	for i := 0; i < parallel; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range work {
				t.add(c.Ask(network, addr))
			}
		}()
	}
	for i := 0; i < n; i++ {
		work <- struct{}{}
	}
	close(work)
	wg.Wait()
	return t.result()
}
