package agent

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/internal/localapi"
	"github.com/sluice-lb/sluice/internal/source"
	"github.com/sluice-lb/sluice/internal/testenv"
	"github.com/sluice-lb/sluice/ipam"
)

const ipamConfig = `
apiVersion: sluice.dev/v1alpha1
kind: IPPool
metadata: {name: lab}
spec:
  avoidBuggyIPs: true
  blocks: [{cidr: %BLOCK%}, {start: "2001:db8:100::1", stop: "2001:db8:100::ff"}]
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: demo}
spec: {type: LoadBalancer, ipFamilyPolicy: PreferDualStack, ports: [{port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: legacy, namespace: demo, annotations: {metallb.universe.tf/loadBalancerIPs: 203.0.113.10}}
spec: {type: LoadBalancer, ports: [{port: 8080}]}
---
apiVersion: v1
kind: Service
metadata: {name: kept, namespace: demo}
spec: {type: LoadBalancer, ports: [{port: 81}]}
status: {loadBalancer: {ingress: [{ip: 198.51.100.7}]}}
`

// runStandalone runs an agent on cfgDir and stateDir until the returned stop is called.
func runStandalone(t *testing.T, cfgDir, stateDir string) (stop func() string) {
	t.Helper()
	var logs testenv.Buffer
	src := source.NewFile(cfgDir)
	src.Debounce = 20 * time.Millisecond
	a, err := New(Config{ConfigPath: cfgDir, NodeName: "node-1", StateDir: stateDir, BPFFS: "/sys/fs/bpf"},
		slog.New(slog.NewTextHandler(&logs, nil)), src)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	return func() string {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
		return logs.String()
	}
}

func writeConfig(t *testing.T, dir, block string) {
	t.Helper()
	tmp := filepath.Join(dir, ".tmp")
	if err := os.WriteFile(tmp, []byte(strings.ReplaceAll(ipamConfig, "%BLOCK%", block)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, "config.yaml")); err != nil {
		t.Fatal(err)
	}
}

// allocationsOf waits for the agent's allocations to satisfy want, and returns them by Service.
func allocationsOf(t *testing.T, stateDir string, want func(map[string]localapi.Allocation) bool) map[string]localapi.Allocation {
	t.Helper()
	var got map[string]localapi.Allocation
	eventually(t, "the allocations", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		list, err := localapi.NewClient(stateDir).Allocations(ctx)
		if err != nil {
			return false
		}
		got = map[string]localapi.Allocation{}
		for _, a := range list {
			got[a.Service] = a
		}
		return want(got)
	})
	return got
}

func ips(a localapi.Allocation) string { return strings.Join(a.IPs, " ") }

// TestStandaloneIPAM: the agent gives the file's Services addresses from its pools, shows
// them in the local API, remembers them in the state directory, and a restart or a shrunk
// pool moves none of them.
func TestStandaloneIPAM(t *testing.T) {
	dir := t.TempDir()
	cfgDir, stateDir := filepath.Join(dir, "config"), filepath.Join(dir, "state")
	if err := os.MkdirAll(cfgDir, 0o755); err != nil {
		t.Fatal(err)
	}
	writeConfig(t, cfgDir, "203.0.113.0/28")
	stop := runStandalone(t, cfgDir, stateDir)
	got := allocationsOf(t, stateDir, func(m map[string]localapi.Allocation) bool { return len(m) == 3 })
	// legacy (its MetalLB annotation) and kept (its status, in no pool) are older by name;
	// web gets the lowest free addresses, skipping .0.
	if a := got["demo/web"]; ips(a) != "203.0.113.1 2001:db8:100::1" || a.Reason != "Allocated" || !a.Ready {
		t.Errorf("demo/web: %+v", a)
	}
	if a := got["demo/legacy"]; ips(a) != "203.0.113.10" || a.Reason != "Allocated" {
		t.Errorf("demo/legacy: %+v", a)
	}
	if a := got["demo/kept"]; ips(a) != "198.51.100.7" || a.Reason != "OutsidePools" {
		t.Errorf("demo/kept: %+v", a)
	}
	st, err := ipam.ReadState(filepath.Join(stateDir, ipam.StateFile))
	if err != nil || len(st.Services) != 3 || st.Services["demo/web"][0].String() != "203.0.113.1" {
		t.Fatalf("state file: %+v, %v", st, err)
	}

	// The pool shrinks below web's address: web keeps it and is told.
	writeConfig(t, cfgDir, "203.0.113.8/29")
	got = allocationsOf(t, stateDir, func(m map[string]localapi.Allocation) bool { return m["demo/web"].Reason == "OutsidePools" })
	if a := got["demo/web"]; ips(a) != "203.0.113.1 2001:db8:100::1" || !strings.Contains(a.Message, "in no pool now") {
		t.Errorf("demo/web after the shrink: %+v", a)
	}
	logs := stop()
	if !strings.Contains(logs, "load balancer addresses") {
		t.Errorf("allocations not logged:\n%s", logs)
	}

	// A restart reads the state file: the same addresses, although the file has no status.
	writeConfig(t, cfgDir, "203.0.113.0/28")
	stop = runStandalone(t, cfgDir, stateDir)
	got = allocationsOf(t, stateDir, func(m map[string]localapi.Allocation) bool { return len(m) == 3 })
	if a := got["demo/web"]; ips(a) != "203.0.113.1 2001:db8:100::1" || a.Reason != "Allocated" {
		t.Errorf("demo/web after a restart: %+v", a)
	}
	stop()

	// Without the state file the allocation is the same too: it is deterministic.
	if err := os.Remove(filepath.Join(stateDir, ipam.StateFile)); err != nil {
		t.Fatal(err)
	}
	stop = runStandalone(t, cfgDir, stateDir)
	got = allocationsOf(t, stateDir, func(m map[string]localapi.Allocation) bool { return len(m) == 3 })
	if a := got["demo/web"]; ips(a) != "203.0.113.1 2001:db8:100::1" {
		t.Errorf("demo/web without the state file: %+v", a)
	}
	stop()
}
