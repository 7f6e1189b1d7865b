package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluice-lb/sluice/test/lab"
	"github.com/sluice-lb/sluice/test/traffic"
)

// labNode is a node of the two-node topologies (ECMP, L2): eth0 on a LAN bridge, and behind
// it a pod bridge with one backend, be-a or be-b, answering on port 8080.
type labNode struct {
	name, addr, bridge, backend string
	ns                          *lab.Namespace
	dir                         string
	agent                       *lab.Process
	mac                         string // eth0's hardware address
}

// twoNodes are node-a and node-b at lanPrefix.11 and .12, with be-a 198.51.100.11 and be-b
// 198.51.100.139 behind them.
func twoNodes(lanPrefix string) []*labNode {
	return []*labNode{
		{name: "node-a", addr: lanPrefix + ".11", bridge: "198.51.100.1/25", backend: "198.51.100.11/25"},
		{name: "node-b", addr: lanPrefix + ".12", bridge: "198.51.100.129/25", backend: "198.51.100.139/25"},
	}
}

// build makes node n in l: its namespace and directory (under dir, with a bpffs), eth0 on
// bridge br of namespace lan (the port named port, taking the node's XDP answers), forwarding,
// the pod bridge and the backend with its server.
func (n *labNode) build(t testing.TB, l *lab.Lab, dir string, lan *lab.Namespace, br, port string) {
	t.Helper()
	var err error
	n.ns, err = l.Namespace(n.name)
	must(t, err)
	n.dir = filepath.Join(dir, n.name)
	mountBPFFS(t, n.dir)
	must(t, l.Connect(lab.Endpoint{NS: lan, Name: port, Bridge: br},
		lab.Endpoint{NS: n.ns, Name: "eth0", Addrs: []string{n.addr + "/24"}}))
	must(t, lan.ReceiveXDPFrames(port)) // the node's XDP answers (RST) come back through it
	must(t, n.ns.EnableForwarding())
	must(t, n.ns.AddBridge("pods", n.bridge))
	beName := "be-" + strings.TrimPrefix(n.name, "node-")
	be, err := l.Namespace(beName)
	must(t, err)
	must(t, l.Connect(lab.Endpoint{NS: be, Name: "eth0", Addrs: []string{n.backend}},
		lab.Endpoint{NS: n.ns, Name: "be", Bridge: "pods"}))
	must(t, be.AddRoute("default", netip.MustParsePrefix(n.bridge).Addr().String()))
	srv, err := traffic.Serve(be, beName, 8080)
	must(t, err)
	t.Cleanup(func() { srv.Close() })
	out, err := n.ns.Exec(context.Background(), "cat", "/sys/class/net/eth0/address")
	must(t, err)
	n.mac = strings.TrimSpace(string(out))
}

// localService is Service demo/name, a LoadBalancer with externalTrafficPolicy Local on vip
// port 80, with its EndpointSlice: be-a on node-a and be-b on node-b, each ready as ready
// says.
func localServiceYAML(name, vip string, ready map[string]bool) string {
	return fmt.Sprintf(`---
apiVersion: v1
kind: Service
metadata: {name: %[1]s, namespace: demo}
spec: {type: LoadBalancer, externalTrafficPolicy: Local, ports: [{name: tcp, port: 80, protocol: TCP}]}
status: {loadBalancer: {ingress: [{ip: %[2]s}]}}
`, name, vip) + endpointSliceYAML(name,
		fmt.Sprintf("{addresses: [198.51.100.11], nodeName: node-a, conditions: {ready: %v}}", ready["node-a"]),
		fmt.Sprintf("{addresses: [198.51.100.139], nodeName: node-b, conditions: {ready: %v}}", ready["node-b"]))
}

// writeConfig replaces the config file at path in one rename, as an agent expects a file to
// change.
func writeConfig(t testing.TB, path, content string) {
	t.Helper()
	must(t, os.WriteFile(path+".tmp", []byte(content), 0o644))
	must(t, os.Rename(path+".tmp", path))
}
