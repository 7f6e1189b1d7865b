package ipam

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sluice-lb/sluice/api/v1alpha1"
	"github.com/sluice-lb/sluice/test/kubeapi"
)

// benchServices is how many LoadBalancer Services BenchmarkController allocates.
const benchServices = 10000

// BenchmarkController measures the IPAM controller against a real kube-apiserver + etcd:
// 10k LoadBalancer Services exist, the controller starts, and the time until every one has
// its address in its status (informer sync, allocation, 10k status writes and their
// annotations) is reported, with the controller's heap once it is done. Numbers only.
func BenchmarkController(b *testing.B) {
	env := kubeapi.Start(b, kubeapi.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	if err := env.EnsureNamespace(ctx, "bench"); err != nil {
		b.Fatal(err)
	}
	if err := env.Client.Create(ctx, &v1alpha1.IPPool{ObjectMeta: metav1.ObjectMeta{Name: "bench"},
		Spec: v1alpha1.IPPoolSpec{Blocks: []v1alpha1.IPBlock{{CIDR: "10.200.0.0/16"}}}}); err != nil {
		b.Fatal(err)
	}
	cfg := rest.CopyConfig(env.Config)
	cfg.QPS, cfg.Burst = 2000, 4000
	cl, err := client.New(cfg, client.Options{Scheme: env.Scheme})
	if err != nil {
		b.Fatal(err)
	}
	created := time.Now()
	parallel(b, benchServices, 32, func(i int) error {
		return cl.Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "bench", Name: fmt.Sprintf("svc-%05d", i)},
			// No node ports: 10k Services would exhaust the 2768 of the default range.
			Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, AllocateLoadBalancerNodePorts: ptr(false),
				Ports: []corev1.ServicePort{{Port: 80}}}})
	})
	b.Logf("created %d Services in %v", benchServices, time.Since(created).Round(time.Millisecond))

	for range b.N {
		runtime.GC()
		var before runtime.MemStats
		runtime.ReadMemStats(&before)
		ctl, err := NewController(ControllerOptions{Config: env.Config})
		if err != nil {
			b.Fatal(err)
		}
		runCtx, stop := context.WithCancel(ctx)
		done := make(chan error, 1)
		b.ResetTimer()
		start := time.Now()
		go func() { done <- ctl.Start(runCtx) }()
		for n := 0; n < benchServices; {
			time.Sleep(100 * time.Millisecond)
			var list corev1.ServiceList
			if err := cl.List(ctx, &list, client.InNamespace("bench")); err != nil {
				b.Fatal(err)
			}
			n = 0
			for _, s := range list.Items {
				if len(s.Status.LoadBalancer.Ingress) == 1 {
					n++
				}
			}
		}
		elapsed := time.Since(start)
		b.StopTimer()
		runtime.GC()
		var after runtime.MemStats
		runtime.ReadMemStats(&after)
		stop()
		if err := <-done; err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(elapsed.Seconds(), "s/10k-services")
		b.ReportMetric(float64(after.HeapInuse-min(after.HeapInuse, before.HeapInuse))/(1<<20), "heap-MiB")
		b.ReportMetric(float64(ctl.Runs()), "runs")
		// Every Service allocated once: the next controller writes nothing.
		for _, s := range mustList(b, ctx, cl) {
			if s.Annotations[AnnotationAllocatedPool] != "bench" {
				b.Fatalf("%s: annotations %v", s.Name, s.Annotations)
			}
		}
	}
}

func mustList(b *testing.B, ctx context.Context, cl client.Client) []corev1.Service {
	var list corev1.ServiceList
	if err := cl.List(ctx, &list, client.InNamespace("bench")); err != nil {
		b.Fatal(err)
	}
	return list.Items
}

// parallel runs fn(0..n-1) on workers goroutines, failing b on the first error.
func parallel(b *testing.B, n, workers int, fn func(int) error) {
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	next := make(chan int)
	for range workers {
		wg.Go(func() {
			for i := range next {
				if err := fn(i); err != nil {
					select {
					case errs <- err:
					default:
					}
				}
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	select {
	case err := <-errs:
		b.Fatal(err)
	default:
	}
}
