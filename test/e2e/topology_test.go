package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sluice-lb/sluice/bpf"
	"github.com/sluice-lb/sluice/internal/testenv"
	"github.com/sluice-lb/sluice/test/lab"
	"github.com/sluice-lb/sluice/test/traffic"
)

// agentBin and ctlBin are the sluice-agent and sluicectl built for this test run.
var agentBin, ctlBin string

func TestMain(m *testing.M) {
	traffic.RunPodClientIfAsked() // the pods' client processes (socket load balancing)
	dir, err := os.MkdirTemp("", "sluice-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	agentBin, ctlBin = filepath.Join(dir, "sluice-agent"), filepath.Join(dir, "sluicectl")
	if out, err := exec.Command("go", "build", "-o", dir, "../../cmd/sluice-agent", "../../cmd/sluicectl").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building sluice-agent and sluicectl: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// Addresses of the single-node topology:
//
//	client 198.18.0.2 ── eth0 198.18.0.1 [node, XDP + TCX] pods 198.51.100.1 ── be1..be3 198.51.100.11-13
//
// The Service address 203.0.113.10 (and 2001:db8:100::10) is routed by the client to the node.
const (
	vip4 = "203.0.113.10"
	vip6 = "2001:db8:100::10"
	// emptyVIP4 is Service empty's address: no backends.
	emptyVIP4 = "203.0.113.11"
)

// singleNode is a client, a node running the agent with XDP on its client-facing device, and
// backends behind the node.
type singleNode struct {
	lab      *lab.Lab
	client   *lab.Namespace
	node     *lab.Namespace
	backends []*lab.Namespace
	servers  []*traffic.Server
	dir      string
	agent    *lab.Process
	// extra is appended to the config file: more objects (pools, peers, ...).
	extra string
	// withoutEmpty leaves Service empty out of the config file.
	withoutEmpty bool
}

func newSingleNode(t testing.TB, backends int) *singleNode {
	testenv.RequirePrivileged(t)
	l := lab.ForTest(t)
	s := &singleNode{lab: l, dir: t.TempDir()}
	mountBPFFS(t, s.dir)
	var err error
	s.client, err = l.Namespace("client")
	must(t, err)
	s.node, err = l.Namespace("node")
	must(t, err)
	must(t, s.node.EnableForwarding())
	must(t, l.Connect(lab.Endpoint{NS: s.client, Name: "eth0", Addrs: []string{"198.18.0.2/24", "2001:db8:18::2/64"}},
		lab.Endpoint{NS: s.node, Name: "eth0", Addrs: []string{"198.18.0.1/24", "2001:db8:18::1/64"}}))
	must(t, s.client.ReceiveXDPFrames("eth0")) // the node's XDP answers (RST, ICMP) come back on it
	must(t, s.client.AddRoute("203.0.113.0/24", "198.18.0.1"))
	must(t, s.client.AddRoute("2001:db8:100::/64", "2001:db8:18::1"))
	must(t, s.node.AddBridge("pods", "198.51.100.1/24", "2001:db8:51::1/64"))
	for i := 1; i <= backends; i++ {
		be, err := l.Namespace(fmt.Sprint("be", i))
		must(t, err)
		must(t, l.Connect(lab.Endpoint{NS: be, Name: "eth0", Addrs: []string{fmt.Sprintf("198.51.100.%d/24", 10+i), fmt.Sprintf("2001:db8:51::%d/64", 10+i)}},
			lab.Endpoint{NS: s.node, Name: fmt.Sprint("be", i), Bridge: "pods"}))
		must(t, be.AddRoute("default", "198.51.100.1"))
		must(t, be.AddRoute("default", "2001:db8:51::1"))
		srv, err := traffic.Serve(be, fmt.Sprint("be", i), 8080)
		must(t, err)
		t.Cleanup(func() { srv.Close() })
		s.backends = append(s.backends, be)
		s.servers = append(s.servers, srv)
	}
	return s
}

// config writes the standalone config: Service web (TCP and UDP port 80, on vip4 and vip6)
// with the given backends (1-based indexes), each "~N" terminating, and Service empty (TCP
// port 80 on emptyVIP4) without any.
func (s *singleNode) config(t *testing.T, backends ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, `apiVersion: v1
kind: Service
metadata: {name: web, namespace: demo}
spec:
  type: LoadBalancer
  ipFamilyPolicy: PreferDualStack
  ports: [{name: tcp, port: 80, protocol: TCP}, {name: udp, port: 80, protocol: UDP}]
status:
  loadBalancer:
    ingress: [{ip: %s}, {ip: %s}]
`, vip4, vip6)
	if !s.withoutEmpty {
		fmt.Fprintf(&b, `---
apiVersion: v1
kind: Service
metadata: {name: empty, namespace: demo}
spec:
  type: LoadBalancer
  ports: [{name: tcp, port: 80, protocol: TCP}]
status:
  loadBalancer:
    ingress: [{ip: %s}]
`, emptyVIP4)
	}
	b.WriteString(dualStackSlicesYAML("web", "{name: tcp, port: 8080, protocol: TCP}, {name: udp, port: 8080, protocol: UDP}", backends...))
	b.WriteString(s.extra)
	path := filepath.Join(s.dir, "config.yaml")
	writeConfig(t, path, b.String())
	return path
}

// dualStackSlicesYAML is Service name's two EndpointSlices, IPv4 and IPv6, with ports and the
// single node's backends (1-based indexes: be1 is 198.51.100.11 and 2001:db8:51::11), each
// "~N" serving but terminating.
func dualStackSlicesYAML(name, ports string, backends ...string) string {
	var b strings.Builder
	for _, fam := range []string{"IPv4", "IPv6"} {
		fmt.Fprintf(&b, `---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: %s-%s, namespace: demo, labels: {kubernetes.io/service-name: %s}}
addressType: %s
ports: [%s]
endpoints:
`, name, strings.ToLower(fam), name, fam, ports)
		for _, be := range backends {
			terminating := strings.HasPrefix(be, "~")
			i := strings.TrimPrefix(be, "~")
			addr := "198.51.100.1" + i
			if fam == "IPv6" {
				addr = "2001:db8:51::1" + i
			}
			fmt.Fprintf(&b, "  - addresses: [%q]\n    conditions: {ready: %v, serving: true, terminating: %v}\n", addr, !terminating, terminating)
		}
	}
	return b.String()
}

// startAgent runs sluice-agent in the node namespace with XDP/TCX on eth0 and waits until it
// is ready.
func (s *singleNode) startAgent(t *testing.T, config string, flags ...string) {
	t.Helper()
	s.agent = startAgent(t, s.node, "node", s.dir, config, flags...)
}

// startAgent runs sluice-agent as node in namespace ns with XDP/TCX on eth0, its state and
// bpffs (mounted by the caller) under dir, and more flags, and waits until it is ready.
// Without a config, the flags must say where its objects come from (--kubeconfig).
func startAgent(t testing.TB, ns *lab.Namespace, node, dir, config string, flags ...string) *lab.Process {
	t.Helper()
	return startAgentUnder(t, nil, ns, node, dir, config, flags...)
}

// startAgentUnder is startAgent with the agent run by a wrapper command (wrapper... agent
// args...), such as setpriv.
func startAgentUnder(t testing.TB, wrapper []string, ns *lab.Namespace, node, dir, config string, flags ...string) *lab.Process {
	t.Helper()
	argv := append(slices.Clone(wrapper), agentBin)
	argv = append(argv, agentArgs(t, ns, node, dir, config, flags...)...)
	agent, err := ns.Start(argv[0], argv[1:]...)
	must(t, err)
	deadline := time.Now().Add(20 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := ns.Exec(ctx, "curl", "-sf", "http://127.0.0.1:9473/readyz")
		cancel()
		if err == nil {
			return agent
		}
		select {
		case <-agent.Done():
			t.Fatalf("%s: agent exited: %v\n%s", node, agent.Err(), agent.Output())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: agent not ready after 20s\n%s", node, agent.Output())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// agentArgs are the command-line arguments of an agent in namespace ns: its socket programs
// attach to the namespace's cgroup (never the machine's).
func agentArgs(t testing.TB, ns *lab.Namespace, node, dir, config string, flags ...string) []string {
	t.Helper()
	cg, err := ns.Cgroup()
	must(t, err)
	args := []string{"--cgroup-root", cg.Path}
	if config != "" {
		args = append(args, "--config", config)
	}
	return append(append(args, "--node-name", node, "--devices", "eth0",
		"--state-dir", filepath.Join(dir, "state"), "--bpffs", filepath.Join(dir, "bpffs"),
		"--metrics-addr", "127.0.0.1:9472", "--health-addr", "127.0.0.1:9473"), flags...)
}

// mountBPFFS mounts a bpffs on dir/bpffs, in the host's mount namespace, as a DaemonSet's
// hostPath is: `ip netns exec` gives every agent a mount namespace of its own, and pins on
// a bpffs the agent mounted itself would die with it.
func mountBPFFS(t testing.TB, dir string) {
	bpffs := filepath.Join(dir, "bpffs")
	must(t, os.MkdirAll(bpffs, 0o700))
	if _, err := bpf.MountBPFFS(bpffs); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Unmount(bpffs, unix.MNT_DETACH) })
}

// ctl runs sluicectl against the node's agent.
func (s *singleNode) ctl(t *testing.T, args ...string) string {
	t.Helper()
	args = append(args, "--state-dir", filepath.Join(s.dir, "state"))
	out, err := exec.Command(ctlBin, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("sluicectl %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// metric returns the value of a metric of the node's agent.
func (s *singleNode) metric(t *testing.T, name string) string {
	t.Helper()
	return nodeMetric(t, s.node, name)
}

// nodeMetric returns the value of a metric (name with its labels, as exposed) of the agent in
// namespace ns, served on 127.0.0.1:9472 there.
func nodeMetric(t testing.TB, ns *lab.Namespace, name string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	out, err := ns.Exec(ctx, "curl", "-sf", "http://127.0.0.1:9472/metrics")
	must(t, err)
	for _, line := range strings.Split(string(out), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			return v
		}
	}
	t.Fatalf("metric %s not served", name)
	return ""
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
