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
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
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
	for _, n := range benchServiceCounts(1, 1000, 10000) {
		b.Run(fmt.Sprintf("services=%d", n), func(b *testing.B) {
			for range b.N {
				p := newProxyLab(b, n)
				for _, mode := range proxyModes {
					r := p.run(b, mode)
					b.ReportMetric(r.program.Seconds(), mode+"-program-s")
					b.ReportMetric(float64(r.connectP50.Microseconds()), mode+"-connect-p50-us")
					b.ReportMetric(float64(r.connectP99.Microseconds()), mode+"-connect-p99-us")
					b.ReportMetric(r.rate, mode+"-conn-per-s")
					b.ReportMetric(float64(r.connectFailed), mode+"-conn-failed")
					b.ReportMetric(float64(r.cluster.P50.Microseconds()), mode+"-cluster-connect-p50-us")
					b.ReportMetric(float64(r.cluster.P99.Microseconds()), mode+"-cluster-connect-p99-us")
					b.ReportMetric(r.cluster.Rate, mode+"-cluster-conn-per-s")
					b.ReportMetric(r.rssMiB, mode+"-rss-MiB")
					b.ReportMetric(float64(r.changeP50.Milliseconds()), mode+"-endpoint-change-p50-ms")
					b.ReportMetric(float64(r.changeMax.Milliseconds()), mode+"-endpoint-change-max-ms")
					if mode == "sluice" {
						b.ReportMetric(r.mapsMiB, mode+"-maps-MiB")
					}
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
	targetName string // the last Service's name
	services   int
	cluster    string // host:port of the last Service's cluster IP
}

type proxyResult struct {
	program                time.Duration
	connectP50, connectP99 time.Duration
	rate                   float64
	connectFailed          int // connections that got no answer (connect and rate runs)
	// cluster is measured from a process of the node (in its cgroup) to a cluster IP.
	cluster traffic.ConnectStats
	// rssMiB is the proxy's resident memory once it serves; mapsMiB the kernel memory of
	// Sluice's BPF maps (memlock).
	rssMiB, mapsMiB float64
	// changeP50 and changeMax: from an EndpointSlice update (of one Service, while 20 others
	// are updated every second) until that Service's new endpoint answers.
	changeP50, changeMax time.Duration
}

// proxyVIP is the load-balancer address of Service i: 10.200.0.0/16, routed to the node.
func proxyVIP(i int) string { return fmt.Sprintf("10.200.%d.%d", i/250, i%250+1) }

func newProxyLab(b *testing.B, n int) *proxyLab {
	b.Helper()
	p := &proxyLab{singleNode: newSingleNode(b, 2), env: kubeapi.Start(b, kubeapi.Options{})}
	must(b, p.client.AddRoute("10.200.0.0/16", "198.18.0.1"))
	// A node has a default route: without one, connect() to a cluster IP fails before
	// kube-proxy's OUTPUT rules can translate it.
	must(b, p.node.AddRoute("default", "198.18.0.2"))
	relay := relayAPI(b, p.env, p.node)
	b.Cleanup(func() { relay.Close() })
	p.kubeconfig = p.env.KubeConfigFile(b, p.dir)
	p.target = net.JoinHostPort(proxyVIP(n-1), "80")
	p.targetName, p.services = fmt.Sprintf("svc-%d", n-1), n

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
	var failed atomic.Pointer[error]
	for range 16 {
		wg.Go(func() {
			for i := range jobs { // after a failure, drain: the sender must not block
				if failed.Load() != nil {
					continue
				}
				if err := createProxyService(ctx, c, i); err != nil {
					failed.CompareAndSwap(nil, &err)
				}
			}
		})
	}
	for i := range n {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	if err := failed.Load(); err != nil {
		b.Fatalf("creating the Services: %v", *err)
	}
	var last corev1.Service
	must(b, c.Get(ctx, client.ObjectKey{Namespace: "demo", Name: fmt.Sprintf("svc-%d", n-1)}, &last))
	p.cluster = net.JoinHostPort(last.Spec.ClusterIP, "80")
	return p
}

func createProxyService(ctx context.Context, c client.Client, i int) error {
	name := fmt.Sprintf("svc-%d", i)
	noNodePorts := false // 10k Services would not fit the 2768 node ports
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: name}, Spec: corev1.ServiceSpec{
		Type:                          corev1.ServiceTypeLoadBalancer,
		AllocateLoadBalancerNodePorts: &noNodePorts,
		Ports:                         []corev1.ServicePort{{Name: "tcp", Port: 80, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt32(8080)}},
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
	// Measure a proxy at rest: whatever it does right after its first sync (kube-proxy's
	// second full sync with 10k Services takes minutes of CPU in iptables mode) is over once
	// it uses under 5% of a CPU for a second.
	settle := time.Now()
	for cpu := procCPU(b, proc.PID); time.Since(settle) < 5*time.Minute; {
		time.Sleep(time.Second)
		next := procCPU(b, proc.PID)
		if next-cpu < 50*time.Millisecond {
			break
		}
		cpu = next
	}
	b.Logf("%s: settled %v after serving", mode, time.Since(settle).Round(time.Second))

	c.Timeout = 2 * time.Second
	var connects []time.Duration
	for range 400 {
		t0 := time.Now()
		conn, err := c.Dial("tcp", p.target)
		if err != nil {
			// A connection that gets no answer within 2 s counts as 2 s (and is logged):
			// the p99 shows it, the run goes on.
			b.Logf("%s: connect to %s: %v", mode, p.target, err)
			r.connectFailed++
			connects = append(connects, c.Timeout)
			continue
		}
		connects = append(connects, time.Since(t0))
		conn.Close()
	}
	slices.Sort(connects)
	r.connectP50, r.connectP99 = connects[len(connects)/2], connects[len(connects)*99/100]

	t0 := time.Now()
	res := c.Spread("tcp", p.target, 2000, 4)
	if res.Failed != 0 {
		b.Logf("%s: %v", mode, res)
	}
	r.rate = float64(res.OK()) / time.Since(t0).Seconds()
	r.connectFailed += res.Failed

	cg, err := p.node.Cgroup()
	must(b, err)
	pod := &traffic.PodClient{NS: p.node, Cgroup: cg}
	if r.cluster, err = pod.Connects(p.cluster, 400, 4); err != nil {
		b.Fatalf("%s: cluster IP %s: %v", mode, p.cluster, err)
	}
	r.changeP50, r.changeMax = p.endpointChanges(b, mode, c)
	r.rssMiB = float64(procStatusKiB(b, proc.PID, "VmRSS")) / 1024
	if mode == "sluice" {
		r.mapsMiB = float64(bpfMemlock(b, proc.PID)) / (1 << 20)
	}
	return r
}

// endpointChanges moves the last Service's only endpoint between be1 and be2, ten times,
// and measures how long each move takes to be served (the client asks every 5 ms), while
// other Services' EndpointSlices churn at 20 updates a second. It leaves the slice as it was.
func (p *proxyLab) endpointChanges(b *testing.B, mode string, c *traffic.Client) (p50, worst time.Duration) {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	kc := p.env.Client
	name := p.targetName
	set := func(svc string, addrs ...string) {
		var es discoveryv1.EndpointSlice
		must(b, kc.Get(ctx, client.ObjectKey{Namespace: "demo", Name: svc}, &es))
		es.Endpoints = endpointSlice(svc, addrs...).Endpoints
		must(b, kc.Update(ctx, &es))
	}
	stop := make(chan struct{})
	var churn sync.WaitGroup
	churn.Go(func() { // other Services' endpoints flap: the proxy's syncs carry them too
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			other := fmt.Sprintf("svc-%d", i%max(p.services-1, 1))
			if other == name {
				continue
			}
			if i%2 == 0 {
				set(other, "198.51.100.11")
			} else {
				set(other, "198.51.100.11", "198.51.100.12")
			}
		}
	})
	// Start from be1 alone, so that an answer from be2 can only follow the first move.
	set(name, "198.51.100.11")
	for streak, start := 0, time.Now(); streak < 5; {
		if server, err := c.Ask("tcp", p.target); err == nil && server == "be1" {
			streak++
		} else {
			streak = 0
		}
		if time.Since(start) > time.Minute {
			b.Fatalf("%s: %s not served by be1 alone a minute after the change", mode, name)
		}
	}
	var times []time.Duration
	for i := range 10 {
		to, addr := "be1", "198.51.100.11"
		if i%2 == 0 {
			to, addr = "be2", "198.51.100.12"
		}
		start := time.Now()
		set(name, addr)
		for {
			if server, err := c.Ask("tcp", p.target); err == nil && server == to {
				break
			}
			if time.Since(start) > time.Minute {
				b.Fatalf("%s: %s not served by %s a minute after the change", mode, name, to)
			}
			time.Sleep(5 * time.Millisecond)
		}
		times = append(times, time.Since(start))
	}
	close(stop)
	churn.Wait()
	set(name, "198.51.100.11", "198.51.100.12")
	slices.Sort(times)
	return times[len(times)/2], times[len(times)-1]
}

// procCPU is the CPU time process pid has used (user and system).
func procCPU(b testing.TB, pid int) time.Duration {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	must(b, err)
	// The fields after the command (in parentheses, which may hold spaces): utime and stime
	// are the 12th and 13th, in clock ticks (100 a second on Linux).
	f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+2:]))
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		b.Fatalf("/proc/%d/stat: %q", pid, stat)
	}
	return time.Duration(utime+stime) * 10 * time.Millisecond
}

// procStatusKiB is a field of /proc/PID/status in KiB (VmRSS, ...).
func procStatusKiB(b testing.TB, pid int, field string) int64 {
	out, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	must(b, err)
	for _, line := range strings.Split(string(out), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			kib, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			must(b, err)
			return kib
		}
	}
	b.Fatalf("/proc/%d/status has no %s", pid, field)
	return 0
}

// bpfMemlock sums the kernel memory (memlock) of the BPF maps process pid holds open.
func bpfMemlock(b testing.TB, pid int) int64 {
	dir := fmt.Sprintf("/proc/%d/fdinfo", pid)
	entries, err := os.ReadDir(dir)
	must(b, err)
	seen := map[string]bool{}
	var total int64
	for _, e := range entries {
		info, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil || !strings.Contains(string(info), "map_type:") {
			continue
		}
		var id, memlock string
		for _, line := range strings.Split(string(info), "\n") {
			if v, ok := strings.CutPrefix(line, "map_id:"); ok {
				id = strings.TrimSpace(v)
			}
			if v, ok := strings.CutPrefix(line, "memlock:"); ok {
				memlock = strings.TrimSpace(v)
			}
		}
		if seen[id] {
			continue
		}
		seen[id] = true
		n, err := strconv.ParseInt(memlock, 10, 64)
		must(b, err)
		total += n
	}
	return total
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
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute) // minutes with 10k Services in iptables
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
