package kubeapi

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"net"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/sluice-lb/sluice/api/v1alpha1"
	"github.com/sluice-lb/sluice/internal/testenv"
)

// TestStartBindAddress starts a dedicated API server on another address with other Service
// CIDRs, uses it, and checks that t.Cleanup left no process, port or directory behind.
func TestStartBindAddress(t *testing.T) {
	testenv.RequireAssets(t)
	var host, certDir, dataDir, dir string
	t.Run("running", func(t *testing.T) {
		e := Start(t, Options{BindAddress: "127.0.0.2", ServiceCIDRs: "10.97.0.0/24"})
		host = e.Host
		certDir, dataDir, dir = e.env.ControlPlane.APIServer.CertDir, e.env.ControlPlane.Etcd.DataDir, e.dir
		if u, err := url.Parse(e.Host); err != nil || u.Scheme != "https" || u.Hostname() != "127.0.0.2" {
			t.Fatalf("Host %q, want https://127.0.0.2:PORT", e.Host)
		}
		for _, c := range []struct{ name, arg string }{{"kube-apiserver", certDir}, {"etcd", dataDir}} {
			if pids := processesWith(t, c.arg); len(pids) != 1 || comm(pids[0]) != c.name {
				t.Errorf("processes with %s in their arguments: %v, want one %s", c.arg, pids, c.name)
			}
		}

		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		// The CRDs are installed, and the client knows the sluice.dev kinds.
		var pools v1alpha1.IPPoolList
		if err := e.Client.List(ctx, &pools); err != nil {
			t.Fatalf("listing IPPools: %v", err)
		}
		// Services get cluster IPs from ServiceCIDRs.
		svc := &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default"},
			Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer,
				Ports: []corev1.ServicePort{{Port: 80}}},
		}
		if err := e.Client.Create(ctx, svc); err != nil {
			t.Fatal(err)
		}
		if ip, err := netip.ParseAddr(svc.Spec.ClusterIP); err != nil || !netip.MustParsePrefix("10.97.0.0/24").Contains(ip) {
			t.Errorf("cluster IP %q, want one of 10.97.0.0/24", svc.Spec.ClusterIP)
		}
		// KubeConfig points at the same server, with working credentials.
		cfg, err := clientcmd.RESTConfigFromKubeConfig(e.KubeConfig)
		if err != nil {
			t.Fatal(err)
		}
		if strings.TrimSuffix(cfg.Host, "/") != e.Host {
			t.Errorf("kubeconfig server %q, want %q", cfg.Host, e.Host)
		}
	})

	for _, arg := range []string{certDir, dataDir} {
		if pids := processesWith(t, arg); len(pids) != 0 {
			t.Errorf("after cleanup, processes with %s in their arguments: %v", arg, pids)
		}
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("after cleanup, %s is still there (%v)", dir, err)
	}
	if u, err := url.Parse(host); err == nil {
		if c, err := net.DialTimeout("tcp", u.Host, time.Second); err == nil {
			c.Close()
			t.Errorf("after cleanup, %s still accepts connections", u.Host)
		}
	}
}

// orphanEnv makes TestParentDeathStopsServer's child process start a server and exit.
const orphanEnv = "KUBEAPI_TEST_ORPHAN"

// TestParentDeathStopsServer runs this test binary as a child that starts an API server and
// exits without stopping it, as a test that times out does, and checks that etcd and
// kube-apiserver die with it.
func TestParentDeathStopsServer(t *testing.T) {
	if os.Getenv(orphanEnv) == "1" {
		e, err := New(os.Getenv("KUBEBUILDER_ASSETS"), Options{})
		if err != nil {
			os.Stdout.WriteString("error " + err.Error() + "\n")
			os.Exit(2)
		}
		os.Stdout.WriteString("dir " + e.dir + "\n")
		os.Stdout.WriteString("certs " + e.env.WebhookInstallOptions.LocalServingCertDir + "\n")
		os.Exit(3) // without Stop
	}
	testenv.RequireAssets(t)
	testenv.RequireCommands(t, "setpriv")

	cmd := exec.Command(os.Args[0], "-test.run=^TestParentDeathStopsServer$", "-test.count=1")
	cmd.Env = append(os.Environ(), orphanEnv+"=1")
	out, _ := cmd.Output()
	var dir string
	for line := range strings.Lines(string(out)) {
		if d, ok := strings.CutPrefix(strings.TrimSpace(line), "dir "); ok && strings.Contains(d, "sluice-kubeapi-") {
			dir = d
		}
		// envtest's own temporary directory of webhook certificates, which Stop would remove.
		if d, ok := strings.CutPrefix(strings.TrimSpace(line), "certs "); ok && strings.Contains(d, "envtest-serving-certs-") {
			t.Cleanup(func() { _ = os.RemoveAll(d) })
		}
	}
	if dir == "" {
		t.Fatalf("child did not start a server: %s", out)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) }) // the child could not
	for _, arg := range []string{filepath.Join(dir, "kube-apiserver"), filepath.Join(dir, "etcd")} {
		var pids []int
		for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
			if pids = processesWith(t, arg); len(pids) == 0 {
				break
			}
		}
		if len(pids) != 0 {
			t.Errorf("processes %v with %s in their arguments outlived the test binary that started them", pids, arg)
			for _, pid := range pids {
				_ = syscall.Kill(pid, syscall.SIGKILL) // the child's, started by this test
			}
		}
	}
}

// processesWith lists the processes that have an argument containing s.
func processesWith(t *testing.T, s string) []int {
	t.Helper()
	if s == "" {
		t.Fatal("processesWith an empty string")
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && bytes.Contains(cmdline, []byte(s)) && !isZombie(pid) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// comm is a process's command name.
func comm(pid int) string {
	b, _ := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "comm"))
	return strings.TrimSpace(string(b))
}

// isZombie reports whether a process has exited but not been reaped.
func isZombie(pid int) bool {
	f, err := os.Open(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		return true // gone
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if state, ok := strings.CutPrefix(s.Text(), "State:"); ok {
			return strings.HasPrefix(strings.TrimSpace(state), "Z")
		}
	}
	return false
}
