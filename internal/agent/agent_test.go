package agent

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/internal/localapi"
	"github.com/sluice-lb/sluice/internal/source"
	"github.com/sluice-lb/sluice/internal/testenv"
)

const pools = `
apiVersion: sluice.dev/v1alpha1
kind: IPPool
metadata: {name: a}
spec: {blocks: [{cidr: 203.0.113.0/28}]}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: demo}
spec: {type: LoadBalancer, ports: [{port: 80}]}
`

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestAgentStandalone runs the agent on a config directory and checks every way out of it:
// readiness, metrics, the local API; a bad file is reported without losing the good objects;
// on cancel everything stops and the socket is removed.
func TestAgentStandalone(t *testing.T) {
	goroutines := runtime.NumGoroutine()
	dir := t.TempDir()
	cfgDir, stateDir := filepath.Join(dir, "config"), filepath.Join(dir, "state")
	if err := os.MkdirAll(cfgDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(cfgDir, "pools.yaml"), []byte(pools), 0o644); err != nil {
		t.Fatal(err)
	}
	var logs testenv.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	src := source.NewFile(cfgDir)
	src.Debounce = 20 * time.Millisecond
	a, err := New(Config{ConfigPath: cfgDir, NodeName: "node-1", StateDir: stateDir, BPFFS: "/sys/fs/bpf",
		MetricsAddr: "127.0.0.1:0", HealthAddr: "127.0.0.1:0"}, log, src)
	if err != nil {
		t.Fatal(err)
	}
	metricsAddr, healthAddr := a.Addrs()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()

	client := localapi.NewClient(stateDir)
	status := func() *localapi.Status {
		st, err := client.Status(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	eventually(t, "ready", func() bool { code, _ := get(t, "http://"+healthAddr.String()+"/readyz"); return code == 200 })
	st := status()
	if len(st.Pools) != 1 || st.Pools[0].Name != "a" || st.Pools[0].Size != "16" || st.ServicesOurs != 1 || st.Node != "node-1" || st.Mode != "standalone" {
		t.Fatalf("status = %+v", st)
	}
	if st.Features["bgp"] == "running" || st.Features["model"] != "running" {
		t.Fatalf("features must say honestly what runs: %v", st.Features)
	}
	_, body := get(t, "http://"+metricsAddr.String()+"/metrics")
	for _, want := range []string{`sluice_objects{kind="IPPool"} 1`, `sluice_objects{kind="Service"} 1`, "sluice_source_synced 1", `sluice_build_info{version="dev"} 1`} {
		if !strings.Contains(body, want) {
			t.Fatalf("metrics lack %q", want)
		}
	}

	// A bad file: reported everywhere, the good pool stays.
	bad := "apiVersion: sluice.dev/v1alpha1\nkind: IPPool\nmetadata: {name: b}\nspec: {blocks: [{cidr: 203.0.113.8/29}]}\n---\nkind: Mystery\n"
	if err := os.WriteFile(filepath.Join(cfgDir, "bad.yaml"), []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	eventually(t, "problems reported", func() bool { st = status(); return len(st.Problems) == 1 && len(st.InputProblems) == 1 })
	if len(st.Pools) != 1 || st.Pools[0].Name != "a" {
		t.Fatalf("the good pool must survive: %+v", st.Pools)
	}
	if p := st.Problems[0]; p.Object.Name != "b" || !strings.Contains(p.Message, "overlaps 203.0.113.0/28 of older IPPool a") {
		t.Fatalf("problem = %+v", p)
	}
	_, body = get(t, "http://"+metricsAddr.String()+"/metrics")
	if !strings.Contains(body, `sluice_object_problems{kind="IPPool",verdict="rejected"} 1`) || !strings.Contains(body, "sluice_input_problems 1") {
		t.Fatal("metrics do not count the problems")
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	if _, err := os.Stat(filepath.Join(stateDir, localapi.SocketName)); !os.IsNotExist(err) {
		t.Fatalf("socket left behind: %v", err)
	}
	for _, want := range []string{"understood", "IPPool a: [203.0.113.0/28]", "IPPool b rejected: spec.blocks", "bad.yaml: document 2"} {
		if !strings.Contains(logs.String(), want) {
			t.Fatalf("log lacks %q:\n%s", want, logs.String())
		}
	}
	http.DefaultClient.CloseIdleConnections()
	eventually(t, "goroutines to stop", func() bool { return runtime.NumGoroutine() <= goroutines+2 })
}

func TestAgentConfigErrors(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	cases := map[string]struct {
		cfg  Config
		want string
	}{
		"device": {Config{NodeName: "n", StateDir: t.TempDir(), BPFFS: "/b", Devices: []string{"eth0/1"}}, `--devices: "eth0/1" is not an interface name`},
		"addr":   {Config{NodeName: "n", StateDir: t.TempDir(), BPFFS: "/b", MetricsAddr: "9472"}, `--metrics-addr: "9472" is not host:port`},
		"node":   {Config{StateDir: t.TempDir(), BPFFS: "/b"}, "--node-name: empty"},
		"in use": {Config{NodeName: "n", StateDir: t.TempDir(), BPFFS: "/b", HealthAddr: busy.Addr().String()}, "listening on " + busy.Addr().String()},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := New(tc.cfg, log, source.NewFile("/nonexistent"))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

// TestAgentSourceFailure: a source that cannot start stops the agent with its error.
func TestAgentSourceFailure(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	a, err := New(Config{NodeName: "n", StateDir: t.TempDir(), BPFFS: "/b"}, log, source.NewFile("/nonexistent/sluice.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	err = a.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "source: standalone config") || !strings.Contains(err.Error(), "/nonexistent/sluice.yaml") {
		t.Fatalf("Run = %v", err)
	}
}

// silentSource never syncs.
type silentSource struct{}

func (silentSource) Run(ctx context.Context, _ chan<- source.Event) error { <-ctx.Done(); return nil }

// TestAgentNotReadyUntilSynced: /readyz answers 503 while the source has not delivered its
// initial objects, and /healthz answers 200 all along.
func TestAgentNotReadyUntilSynced(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	a, err := New(Config{NodeName: "n", StateDir: t.TempDir(), BPFFS: "/b", HealthAddr: "127.0.0.1:0"}, log, silentSource{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer func() { cancel(); <-done }()
	_, health := a.Addrs()
	if code, body := get(t, "http://"+health.String()+"/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "waiting for the source") {
		t.Fatalf("readyz = %d %q, want 503", code, body)
	}
	if code, _ := get(t, "http://"+health.String()+"/healthz"); code != http.StatusOK {
		t.Fatalf("healthz = %d", code)
	}
}
