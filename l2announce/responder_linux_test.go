package l2announce

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mdlayher/packet"
	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv6"

	"github.com/sluice-lb/sluice/internal/testenv"
	"github.com/sluice-lb/sluice/test/lab"
)

// l2Lab is a LAN (a bridge in namespace "lan") with a client and two nodes, each node
// running a Responder on its eth0.
type l2Lab struct {
	lab    *lab.Lab
	lan    *lab.Namespace
	client *lab.Namespace
	nodes  map[string]*l2Node
}

type l2Node struct {
	ns  *lab.Namespace
	r   *Responder
	mac net.HardwareAddr
}

func newL2Lab(t *testing.T) *l2Lab {
	testenv.RequirePrivileged(t)
	testenv.RequireCommands(t, "arping", "ndisc6", "ip")
	l := lab.ForTest(t)
	lan, err := l.Namespace("lan")
	must(t, err)
	must(t, lan.AddBridge("br"))
	x := &l2Lab{lab: l, lan: lan, nodes: map[string]*l2Node{}}
	x.client, err = l.Namespace("client")
	must(t, err)
	must(t, l.Connect(lab.Endpoint{NS: lan, Name: "client", Bridge: "br"},
		lab.Endpoint{NS: x.client, Name: "eth0", Addrs: []string{"198.18.5.2/24", "2001:db8:5::2/64"}}))
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	log := slog.New(slog.DiscardHandler)
	for i, name := range []string{"node-a", "node-b"} {
		ns, err := l.Namespace(name)
		must(t, err)
		suffix := string(rune('3' + i))
		must(t, l.Connect(lab.Endpoint{NS: lan, Name: name, Bridge: "br"},
			lab.Endpoint{NS: ns, Name: "eth0", Addrs: []string{"198.18.5." + suffix + "/24", "2001:db8:5::" + suffix + "/64"}}))
		n := &l2Node{ns: ns}
		must(t, ns.Do(func() error {
			var err error
			n.r, err = NewResponder("eth0", log)
			return err
		}))
		n.mac = n.r.HardwareAddr()
		done := make(chan error, 1)
		go func() { done <- n.r.Run(ctx) }()
		t.Cleanup(func() {
			n.r.Close()
			if err := <-done; err != nil {
				t.Errorf("%s: Run: %v", name, err)
			}
		})
		x.nodes[name] = n
	}
	return x
}

// settle waits until the announcement bursts of the last Sets are over, so that a probe sees
// answers only.
func settle() { time.Sleep(burst[len(burst)-1] + 100*time.Millisecond) }

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

var arpingReply = regexp.MustCompile(`(?m)^\d+ bytes from ([0-9a-f:]{17}) \(([0-9.]+)\)`)

// arping sends count requests for addr from the client and returns the hardware address of
// every reply.
func (x *l2Lab) arping(t *testing.T, addr string, count int) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, _ := x.client.Exec(ctx, "arping", "-i", "eth0", "-c", strconv.Itoa(count), "-W", "0.1", addr)
	var macs []string
	for _, m := range arpingReply.FindAllStringSubmatch(string(out), -1) {
		if m[2] == addr {
			macs = append(macs, m[1])
		}
	}
	return macs
}

var ndiscReply = regexp.MustCompile(`(?m)^Target link-layer address: ([0-9A-Fa-f:]{17})`)

// ndisc sends one neighbor solicitation for addr from the client, waits half a second for
// every answer, and returns the hardware addresses answered with.
func (x *l2Lab) ndisc(t *testing.T, addr string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, _ := x.client.Exec(ctx, "ndisc6", "-m", "-n", "-r", "1", "-w", "500", addr, "eth0")
	var macs []string
	for _, m := range ndiscReply.FindAllStringSubmatch(string(out), -1) {
		macs = append(macs, strings.ToLower(m[1]))
	}
	return macs
}

func addrs(ss ...string) []netip.Addr {
	var out []netip.Addr
	for _, s := range ss {
		out = append(out, netip.MustParseAddr(s))
	}
	return out
}

// TestResponderAnswersOnlyOwned: arping and ndisc6 from the client get exactly one answer per
// request, from the owner's hardware address; the other node stays silent; after the
// address moves the new owner answers, and its gratuitous ARP has already updated the
// client's neighbor entry.
func TestResponderAnswersOnlyOwned(t *testing.T) {
	x := newL2Lab(t)
	a, b := x.nodes["node-a"], x.nodes["node-b"]
	ctx := context.Background()
	a.r.Set(ctx, addrs("198.18.5.10", "2001:db8:5::10"))
	b.r.Set(ctx, addrs("198.18.5.11"))
	settle()

	if macs := x.arping(t, "198.18.5.10", 3); len(macs) != 3 || macs[0] != a.mac.String() || macs[1] != a.mac.String() || macs[2] != a.mac.String() {
		t.Fatalf("arping 198.18.5.10 (node-a's): replies from %v, want 3 from node-a %s (node-b is %s)", macs, a.mac, b.mac)
	}
	if macs := x.arping(t, "198.18.5.11", 2); len(macs) != 2 || macs[0] != b.mac.String() || macs[1] != b.mac.String() {
		t.Fatalf("arping 198.18.5.11 (node-b's): replies from %v, want 2 from node-b %s", macs, b.mac)
	}
	if macs := x.arping(t, "198.18.5.12", 2); len(macs) != 0 {
		t.Fatalf("arping 198.18.5.12 (nobody's): replies from %v", macs)
	}
	if macs := x.ndisc(t, "2001:db8:5::10"); len(macs) != 1 || macs[0] != a.mac.String() {
		t.Fatalf("ndisc6 2001:db8:5::10 (node-a's): answers %v, want one from node-a %s", macs, a.mac)
	}
	if macs := x.ndisc(t, "2001:db8:5::11"); len(macs) != 0 {
		t.Fatalf("ndisc6 2001:db8:5::11 (nobody's): answers %v", macs)
	}
	if got := a.r.Counters.ARPReplies.Load(); got != 3 {
		t.Errorf("node-a counted %d ARP replies, want 3", got)
	}

	// The client learns node-a's address for 198.18.5.10 (a ping nobody answers resolves it).
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, _ = x.client.Exec(pctx, "ping", "-c", "1", "-W", "1", "198.18.5.10")
	if n := neigh(t, x.client, "198.18.5.10"); n != a.mac.String() {
		t.Fatalf("client's neighbor entry for 198.18.5.10: %q, want node-a %s", n, a.mac)
	}
	// The address moves to node-b: node-b's gratuitous ARP updates the client's entry, and
	// only node-b answers from now on.
	a.r.Set(ctx, addrs("2001:db8:5::10"))
	b.r.Set(ctx, addrs("198.18.5.10", "198.18.5.11"))
	deadline := time.Now().Add(2 * time.Second)
	for neigh(t, x.client, "198.18.5.10") != b.mac.String() {
		if time.Now().After(deadline) {
			t.Fatalf("client's neighbor entry for 198.18.5.10 still %q after node-b took it over, want %s", neigh(t, x.client, "198.18.5.10"), b.mac)
		}
		time.Sleep(20 * time.Millisecond)
	}
	settle()
	if macs := x.arping(t, "198.18.5.10", 2); len(macs) != 2 || macs[0] != b.mac.String() || macs[1] != b.mac.String() {
		t.Fatalf("arping 198.18.5.10 after the move: replies from %v, want 2 from node-b %s", macs, b.mac)
	}
	if b.r.Counters.Gratuitous.Load() == 0 {
		t.Error("node-b counted no gratuitous ARP")
	}

	// The same for IPv6: the client's neighbor entry follows the unsolicited advertisement.
	_, _ = x.client.Exec(pctx, "ping", "-6", "-c", "1", "-W", "1", "2001:db8:5::10")
	if n := neigh(t, x.client, "2001:db8:5::10"); n != a.mac.String() {
		t.Fatalf("client's neighbor entry for 2001:db8:5::10: %q, want node-a %s", n, a.mac)
	}
	a.r.Set(ctx, nil)
	b.r.Set(ctx, addrs("198.18.5.10", "198.18.5.11", "2001:db8:5::10"))
	deadline = time.Now().Add(2 * time.Second)
	for neigh(t, x.client, "2001:db8:5::10") != b.mac.String() {
		if time.Now().After(deadline) {
			t.Fatalf("client's neighbor entry for 2001:db8:5::10 still %q after node-b took it over, want %s", neigh(t, x.client, "2001:db8:5::10"), b.mac)
		}
		time.Sleep(20 * time.Millisecond)
	}
	settle()
	if macs := x.ndisc(t, "2001:db8:5::10"); len(macs) != 1 || macs[0] != b.mac.String() {
		t.Fatalf("ndisc6 2001:db8:5::10 after the move: answers %v, want one from node-b %s", macs, b.mac)
	}
}

// TestResponderGarbage: frames that are not valid ARP or NDP — random bytes with the ARP
// ethertype, truncated packets, neighbor solicitations with broken options — are skipped, and
// the responder answers the next valid request.
func TestResponderGarbage(t *testing.T) {
	x := newL2Lab(t)
	a := x.nodes["node-a"]
	a.r.Set(context.Background(), addrs("198.18.5.10", "2001:db8:5::10"))
	settle()
	rng := rand.New(rand.NewPCG(7, 8))
	must(t, x.client.Do(func() error {
		ifi, err := net.InterfaceByName("eth0")
		if err != nil {
			return err
		}
		c, err := packet.Listen(ifi, packet.Raw, 0x0806, nil)
		if err != nil {
			return err
		}
		defer c.Close()
		ic, err := icmp.ListenPacket("ip6:ipv6-icmp", "::")
		if err != nil {
			return err
		}
		defer ic.Close()
		pc := ic.IPv6PacketConn()
		if err := pc.SetMulticastHopLimit(255); err != nil {
			return err
		}
		dst := &packet.Addr{HardwareAddr: a.mac}
		for i := range 300 {
			frame := make([]byte, 14+rng.IntN(60))
			for j := range frame {
				frame[j] = byte(rng.IntN(256))
			}
			copy(frame, a.mac)
			copy(frame[6:], ifi.HardwareAddr)
			frame[12], frame[13] = 0x08, 0x06
			if i%3 == 0 && len(frame) > 22 { // ARP-looking: Ethernet/IPv4 request, garbage after
				copy(frame[14:], []byte{0, 1, 8, 0, 6, 4, 0, 1})
			}
			if _, err := c.WriteTo(frame, dst); err != nil {
				return err
			}
			// A neighbor solicitation for the owned address with a random tail of options.
			ns := append([]byte{135, 0, 0, 0, 0, 0, 0, 0}, netip.MustParseAddr("2001:db8:5::10").AsSlice()...)
			for range rng.IntN(24) {
				ns = append(ns, byte(rng.IntN(256)))
			}
			group, _ := netip.ParseAddr("ff02::1:ff00:10")
			_, _ = pc.WriteTo(ns, &ipv6.ControlMessage{HopLimit: 255, IfIndex: ifi.Index}, &net.IPAddr{IP: group.AsSlice()})
		}
		return nil
	}))
	time.Sleep(100 * time.Millisecond) // the answers to the solicitations that parsed
	if macs := x.arping(t, "198.18.5.10", 2); len(macs) != 2 || macs[0] != a.mac.String() {
		t.Fatalf("arping after garbage: replies from %v, want 2 from node-a %s", macs, a.mac)
	}
	if macs := x.ndisc(t, "2001:db8:5::10"); len(macs) != 1 || macs[0] != a.mac.String() {
		t.Fatalf("ndisc6 after garbage: answers %v, want one from node-a %s", macs, a.mac)
	}
}

var neighLine = regexp.MustCompile(`lladdr ([0-9a-f:]{17})`)

// neigh returns the hardware address of ns's neighbor entry for addr ("" without one).
func neigh(t *testing.T, ns *lab.Namespace, addr string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	out, err := ns.Exec(ctx, "ip", "neigh", "show", addr, "dev", "eth0")
	must(t, err)
	if m := neighLine.FindStringSubmatch(string(out)); m != nil {
		return m[1]
	}
	return ""
}

// TestResponderNoIPv4: a node answers ARP on an interface that has no IPv4 address of its own
// (a dedicated VIP interface).
func TestResponderNoIPv4(t *testing.T) {
	x := newL2Lab(t)
	must(t, x.lab.Connect(lab.Endpoint{NS: x.lan, Name: "node-c", Bridge: "br"},
		lab.Endpoint{NS: x.nodes["node-a"].ns, Name: "vip0"}))
	var r *Responder
	must(t, x.nodes["node-a"].ns.Do(func() error {
		var err error
		r, err = NewResponder("vip0", slog.New(slog.DiscardHandler))
		return err
	}))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() { cancel(); r.Close(); <-done })
	if got := r.Set(ctx, addrs("198.18.5.30")); len(got) != 1 {
		t.Fatalf("Set took %v, want the IPv4 address", got)
	}
	settle()
	if macs := x.arping(t, "198.18.5.30", 2); len(macs) != 2 || macs[0] != r.HardwareAddr().String() {
		t.Fatalf("arping on an interface without IPv4: replies from %v, want 2 from %s", macs, r.HardwareAddr())
	}
}
