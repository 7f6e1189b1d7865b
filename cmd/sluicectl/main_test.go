package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/api/v1alpha1"
	"github.com/sluice-lb/sluice/internal/localapi"
	"github.com/sluice-lb/sluice/internal/model"
	"github.com/sluice-lb/sluice/test/kubeapi"
)

func runCtl(args ...string) (int, string, string) {
	var out, errOut bytes.Buffer
	code := run(args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func repoFile(t *testing.T, rel string) string {
	t.Helper()
	p := filepath.Join("..", "..", rel)
	if _, err := os.Stat(p); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestValidateQuickstart(t *testing.T) {
	code, out, errOut := runCtl("validate", "-f", repoFile(t, "examples/quickstart.yaml"))
	if code != 0 {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
	for _, want := range []string{"quickstart           203.0.113.0/28, 2001:db8:100::1-2001:db8:100::ff (271 addresses)", "router               198.51.100.1 AS64512", "Problems: none", "Services: 3 (3 LoadBalancer", "demo/web      203.0.113.1, 2001:db8:100::1  quickstart, quickstart  Allocated"} {
		if !strings.Contains(out, want) {
			t.Fatalf("output lacks %q:\n%s", want, out)
		}
	}
}

// TestValidateEveryExample: the examples directory as a whole is valid: no overlaps between
// the example pools, every reference resolves.
func TestValidateEveryExample(t *testing.T) {
	code, out, errOut := runCtl("validate", "-f", repoFile(t, "examples"))
	if code != 0 {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
}

func TestValidateBadInput(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	text := `apiVersion: sluice.dev/v1alpha1
kind: IPPool
metadata: {name: good}
spec: {blocks: [{cidr: 203.0.113.0/28}]}
---
apiVersion: sluice.dev/v1alpha1
kind: BGPPeer
metadata: {name: zero}
spec: {peerAddress: 198.51.100.1, peerASN: 0, localASN: 64513}
---
apiVersion: sluice.dev/v1alpha1
kind: IPPool
metadata: {name: typo}
spec: {blocks: [{cdir: 203.0.113.16/28}]}
`
	if err := os.WriteFile(bad, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runCtl("validate", "-f", bad, "-o", "json")
	if code != 1 {
		t.Fatalf("exit %d, want 1\n%s%s", code, out, errOut)
	}
	var st localapi.Status
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("json output: %v\n%s", err, out)
	}
	if len(st.Pools) != 1 || st.Pools[0].Name != "good" {
		t.Fatalf("the good pool must be reported: %+v", st.Pools)
	}
	want := model.Problem{Object: model.ObjectRef{Kind: "BGPPeer", Name: "zero"}, Field: "spec.peerASN", Message: "must be between 1 and 4294967295, got 0", Rejected: true}
	if len(st.Problems) != 1 || st.Problems[0] != want {
		t.Fatalf("problems = %+v, want %+v", st.Problems, want)
	}
	if len(st.InputProblems) != 1 || !strings.Contains(st.InputProblems[0], `bad.yaml: document 3 (IPPool typo): strict decoding error: unknown field "spec.blocks[0].cdir"`) {
		t.Fatalf("input problems = %v", st.InputProblems)
	}
	if !strings.Contains(errOut, "2 problem(s)") {
		t.Fatalf("stderr = %q", errOut)
	}
}

func TestUsageAndVersion(t *testing.T) {
	if code, _, errOut := runCtl("frobnicate"); code != 2 || !strings.Contains(errOut, `unknown command "frobnicate"`) {
		t.Fatalf("unknown command: %d %q", code, errOut)
	}
	if code, _, _ := runCtl("validate"); code != 2 {
		t.Fatalf("validate without -f: %d", code)
	}
	if code, _, errOut := runCtl("validate", "-f", "/nonexistent.yaml"); code != 1 || !strings.Contains(errOut, "1 problem(s)") {
		t.Fatalf("missing file: %d %q", code, errOut)
	}
	if code, out, _ := runCtl("version"); code != 0 || !strings.HasPrefix(out, "sluicectl dev (go") {
		t.Fatalf("version: %d %q", code, out)
	}
}

// TestStatus reads a status from a local API server, as from a running agent.
func TestStatus(t *testing.T) {
	dir := t.TempDir()
	srv, err := localapi.Listen(dir, localapi.Handlers{Status: func() localapi.Status {
		return localapi.Status{Version: "v9", Node: "node-7", Mode: "standalone", Source: "/etc/sluice", Synced: true,
			Pools:    []localapi.PoolStatus{{Name: "p", Ranges: []string{"203.0.113.0/28"}, AutoAssign: true, Size: "16"}},
			Problems: []model.Problem{{Object: model.ObjectRef{Kind: "IPPool", Name: "q"}, Field: "spec.blocks", Message: "overlaps", Rejected: true}},
			Features: map[string]string{"model": "running", "bgp": "not implemented yet"}}
	}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	defer func() { cancel(); <-done }()

	code, out, errOut := runCtl("status", "--state-dir", dir)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{"Agent v9 on node node-7, standalone mode (/etc/sluice), synced=true", "p                    203.0.113.0/28 (16 addresses)",
		"IPPool q rejected: spec.blocks: overlaps", "bgp         not implemented yet"} {
		if !strings.Contains(out, want) {
			t.Fatalf("status lacks %q:\n%s", want, out)
		}
	}
	if code, _, errOut := runCtl("status", "--state-dir", t.TempDir()); code != 1 || !strings.Contains(errOut, "is sluice-agent running with this --state-dir?") {
		t.Fatalf("no agent: %d %q", code, errOut)
	}
}

// TestMigrateMetalLBFiles: sluicectl migrate metallb writes for each corpus file exactly the
// golden output, exits 0 when everything converted and 1 when something did not, and what it
// writes passes sluicectl validate.
func TestMigrateMetalLBFiles(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("..", "..", "internal", "migrate", "testdata", "corpus", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no corpus: %v", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "sluice.yaml")
			code, _, errOut := runCtl("migrate", "metallb", "-f", f, "-o", out)
			lossy := strings.HasPrefix(filepath.Base(f), "lossy-")
			if (code != 0 && !lossy) || (code != 1 && lossy) {
				t.Fatalf("exit %d (lossy %v)\n%s", code, lossy, errOut)
			}
			if !strings.Contains(errOut, "objects converted;") {
				t.Errorf("no summary on stderr:\n%s", errOut)
			}
			got, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			if st, err := os.Stat(out); err != nil || st.Mode().Perm() != 0o600 {
				t.Errorf("%s: mode %v, want 0600 (it may hold passwords)", out, st.Mode().Perm())
			}
			golden, err := os.ReadFile(filepath.Join("..", "..", "internal", "migrate", "testdata", "golden", filepath.Base(f)))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, golden) {
				t.Errorf("output differs from the golden file:\n%s", got)
			}
			if lossy {
				return
			}
			if code, vout, verr := runCtl("validate", "-f", out); code != 0 {
				t.Errorf("sluicectl validate of the output: exit %d\n%s%s", code, vout, verr)
			}
		})
	}
	if code, _, _ := runCtl("migrate", "metallb"); code != 2 {
		t.Errorf("no input: exit %d, want 2", code)
	}
	if code, _, _ := runCtl("migrate", "metallb", "-f", "/nonexistent"); code != 2 {
		t.Errorf("missing file: exit %d, want 2", code)
	}
}

// TestMigrateApply: --apply changes the cluster only when everything converted (or with
// --force), and a cluster without MetalLB is an error, not an empty success.
func TestMigrateApply(t *testing.T) {
	env := kubeapi.Start(t, kubeapi.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := env.EnsureNamespace(ctx, "sluice-system"); err != nil {
		t.Fatal(err)
	}
	kubeconfig := env.KubeConfigFile(t, t.TempDir())
	lossy := repoFile(t, "internal/migrate/testdata/corpus/lossy-features.yaml")
	pools := func() int {
		var l v1alpha1.IPPoolList
		if err := env.Client.List(ctx, &l); err != nil {
			t.Fatal(err)
		}
		return len(l.Items)
	}
	code, _, errOut := runCtl("migrate", "metallb", "-f", lossy, "--apply", "--kubeconfig", kubeconfig)
	if code != 1 || !strings.Contains(errOut, "not applied: something was not converted") || pools() != 0 {
		t.Fatalf("--apply with errors: exit %d, %d pools in the cluster\n%s", code, pools(), errOut)
	}
	code, _, errOut = runCtl("migrate", "metallb", "-f", lossy, "--apply", "--force", "--kubeconfig", kubeconfig)
	if code != 1 || !strings.Contains(errOut, "applied IPPool pool") || pools() != 2 {
		t.Fatalf("--apply --force: exit %d, %d pools in the cluster\n%s", code, pools(), errOut)
	}
	code, out, errOut := runCtl("migrate", "metallb", "--from-cluster", "--kubeconfig", kubeconfig)
	if code != 1 || !strings.Contains(errOut, "no MetalLB configuration found") || !strings.Contains(out, "0 objects") {
		t.Fatalf("--from-cluster without MetalLB: exit %d\n%s%s", code, out, errOut)
	}
}
