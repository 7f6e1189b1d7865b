package e2e

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sluice-lb/sluice/internal/testenv"
	"github.com/sluice-lb/sluice/test/kubeapi"
	"github.com/sluice-lb/sluice/test/lab"
	"github.com/sluice-lb/sluice/test/traffic"
)

// proxyModes are the proxies BenchmarkKubeProxy runs, one after the other on the same lab.
var proxyModes = []string{"sluice", "iptables", "nftables"}

// BenchmarkKubeProxy runs Sluice and the real kube-proxy (built from the same Kubernetes
// release as the test API server), in iptables and in nftables mode, one after the other on
// the same lab and the same Services, in the same run: a real API server with N LoadBalancer
// Services of two endpoints each, one node namespace where the proxy runs (reaching the API
// server through lab.Forward), a client outside. For each proxy:
//
//   - program-s: from the proxy's start until the last Service answers (cold programming of
//     N Services × 2 endpoints, the informers' initial list included);
//   - connect-p50-us / connect-p99-us: TCP connect time through the last Service's address
//     (the first packet's translation, SYN to SYN-ACK), 400 connections one at a time;
//   - conn-per-s: new connections per second, 4 at a time, each with one request.
//
// Between proxies the node is cleaned: Sluice's pins removed (which detaches its programs),
// kube-proxy --cleanup for its rules. N is 1 and 1000: a run with 10k (30k API writes to set
// up, then three cold starts) did not finish within 20 minutes on this 2-CPU machine.
func BenchmarkKubeProxy(b *testing.B) {
	testenv.RequirePrivileged(b)
	testenv.RequireCommands(b, "iptables", "nft")
	for _, n := range benchServiceCounts(1, 1000) {
		b.Run(fmt.Sprintf("services=%d", n), func(b *testing.B) {
			for range b.N {
				p := newProxyLab(b, n)
				for _, mode := range proxyModes {
					r := p.run(b, mode)
					b.ReportMetric(r.program.Seconds(), mode+"-program-s")
					b.ReportMetric(float64(r.connectP50.Microseconds()), mode+"-connect-p50-us")
					b.ReportMetric(float64(r.connectP99.Microseconds()), mode+"-connect-p99-us")
					b.ReportMetric(r.rate, mode+"-conn-per-s")
				}
			}
		})
	}
}

type proxyLab struct {
	*singleNode
	env        *kubeapi.Env
	kubeconfig string
	target     string // host:port of the last Service
}

type proxyResult struct {
	program                time.Duration
	connectP50, connectP99 time.Duration
	rate                   float64
}

// proxyVIP is the load-balancer address of Service i: 10.200.0.0/16, routed to the node.
func proxyVIP(i int) string { return fmt.Sprintf("10.200.%d.%d", i/250, i%250+1) }

func newProxyLab(b *testing.B, n int) *proxyLab {
	b.Helper()
	p := &proxyLab{singleNode: newSingleNode(b, 2), env: kubeapi.Start(b, kubeapi.Options{})}
	must(b, p.client.AddRoute("10.200.0.0/16", "198.18.0.1"))
	relay := relayAPI(b, p.env, p.node)
	b.Cleanup(func() { relay.Close() })
	p.kubeconfig = kubeconfigIn(b, p.env, p.dir)
	p.target = net.JoinHostPort(proxyVIP(n-1), "80")

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	c := p.env.Client
	for _, o := range []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "demo"}},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "sluice-system"}},
		&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node"},
			Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "198.18.0.1"}}}},
	} {
		must(b, c.Create(ctx, o))
	}
	// N Services with their address in the status and an EndpointSlice, 16 writers at a time.
	created := time.Now()
	defer func() { b.Logf("%d Services and EndpointSlices created in %v", n, time.Since(created)) }()
	jobs := make(chan int)
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				if err := createProxyService(ctx, c, i); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	for i := range n {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	return p
}

func createProxyService(ctx context.Context, c client.Client, i int) error {
	name := fmt.Sprintf("svc-%d", i)
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: name}, Spec: corev1.ServiceSpec{
		Type:  corev1.ServiceTypeLoadBalancer,
		Ports: []corev1.ServicePort{{Name: "tcp", Port: 80, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt32(8080)}},
	}}
	if err := c.Create(ctx, svc); err != nil {
		return err
	}
	svc.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: proxyVIP(i)}}
	if err := c.Status().Update(ctx, svc); err != nil {
		return err
	}
	return c.Create(ctx, endpointSlice(name, "198.51.100.11", "198.51.100.12"))
}

// run starts the proxy of mode, measures it, and cleans the node up after it.
func (p *proxyLab) run(b *testing.B, mode string) proxyResult {
	b.Helper()
	var proc *lab.Process
	var err error
	start := time.Now()
	if mode == "sluice" {
		proc, err = p.node.Start(agentBin, agentArgs(b, p.node, "node", p.dir, "", "--kubeconfig", p.kubeconfig,
			"--namespace", "sluice-system", "--ipam-controller=false")...)
	} else {
		proc, err = p.node.Start(kubeProxyBin(b), "--kubeconfig", p.kubeconfig, "--hostname-override", "node",
			"--proxy-mode", mode, "--conntrack-max-per-core", "0",
			"--metrics-bind-address", "127.0.0.1:10249", "--healthz-bind-address", "127.0.0.1:10256")
	}
	must(b, err)
	defer p.cleanup(b, mode, proc)

	c := traffic.NewClient(p.client)
	c.Timeout = 200 * time.Millisecond
	var r proxyResult
	for {
		if _, err := c.Ask("tcp", p.target); err == nil {
			r.program = time.Since(start)
			break
		}
		select {
		case <-proc.Done():
			b.Fatalf("%s exited: %v\n%s", mode, proc.Err(), proc.Output())
		default:
		}
		if time.Since(start) > 5*time.Minute {
			b.Fatalf("%s: %s not answered after 5 minutes\n%s", mode, p.target, proc.Output())
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(time.Second) // whatever the proxy does right after its first sync is over

	c.Timeout = 2 * time.Second
	var connects []time.Duration
	for range 400 {
		t0 := time.Now()
		conn, err := c.Dial("tcp", p.target)
		if err != nil {
			b.Fatalf("%s: connect to %s: %v", mode, p.target, err)
		}
		connects = append(connects, time.Since(t0))
		conn.Close()
	}
	slices.Sort(connects)
	r.connectP50, r.connectP99 = connects[len(connects)/2], connects[len(connects)*99/100]

	t0 := time.Now()
	res := c.Spread("tcp", p.target, 2000, 4)
	if res.Failed != 0 {
		b.Fatalf("%s: %v", mode, res)
	}
	r.rate = float64(res.OK()) / time.Since(t0).Seconds()
	return r
}

// cleanup stops the proxy and removes what it left on the node.
func (p *proxyLab) cleanup(b *testing.B, mode string, proc *lab.Process) {
	b.Helper()
	if err := proc.Stop(10 * time.Second); err != nil {
		b.Logf("%s stop: %v", mode, err)
	}
	if mode == "sluice" {
		// The programs stay attached through their pinned links: removing the pins detaches them.
		must(b, os.RemoveAll(filepath.Join(p.dir, "bpffs", "sluice")))
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if out, err := p.node.Exec(ctx, kubeProxyBin(b), "--cleanup", "--proxy-mode", mode); err != nil {
		b.Logf("kube-proxy --cleanup (%s): %v\n%s", mode, err, out)
	}
}

// kubeProxyBin is the kube-proxy of the test API server's release, next to it in the assets.
func kubeProxyBin(b testing.TB) string {
	path := filepath.Join(testenv.RequireAssets(b), "kube-proxy")
	if _, err := os.Stat(path); err != nil {
		b.Fatalf("kube-proxy: %v (make kube-binaries builds it)", err)
	}
	return path
}

// benchServiceCounts are the Service counts to measure: def, or SLUICE_BENCH_SERVICES
// (comma-separated) when set.
func benchServiceCounts(def ...int) []int {
	v := os.Getenv("SLUICE_BENCH_SERVICES")
	if v == "" {
		return def
	}
	var out []int
	for _, f := range strings.Split(v, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			panic(fmt.Sprintf("SLUICE_BENCH_SERVICES: %q is not a count", f))
		}
		out = append(out, n)
	}
	return out
}
