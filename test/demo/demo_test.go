package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/internal/testenv"
	"github.com/sluice-lb/sluice/test/peers"
)

// TestDemo runs the whole demo with freshly built binaries and checks what it shows and
// that it leaves nothing behind.
func TestDemo(t *testing.T) {
	testenv.RequirePrivileged(t)
	testenv.RequireCommands(t, "go", "ip", "ping", peers.FRRBgpd, "vtysh")
	root := t.TempDir()
	bin := filepath.Join(root, "bin")
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	build := exec.CommandContext(ctx, "go", "build", "-o", bin+"/",
		"github.com/sluice-lb/sluice/cmd/sluice-agent", "github.com/sluice-lb/sluice/cmd/sluicectl")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the binaries: %v\n%s", err, out)
	}

	var buf bytes.Buffer
	start := time.Now()
	err := run(ctx, options{
		Agent:     filepath.Join(bin, "sluice-agent"),
		Sluicectl: filepath.Join(bin, "sluicectl"),
		Config:    "../../examples/quickstart.yaml",
		TempDir:   root,
	}, io.MultiWriter(&buf, t.Output()))
	t.Logf("demo ran in %v", time.Since(start).Round(time.Millisecond))
	if err != nil {
		t.Fatalf("demo failed: %v", err)
	}

	out := buf.String()
	want := []string{`demo: cleaned up`}
	for _, n := range []string{"node-1", "node-2"} {
		want = append(want,
			n+` \| understood +IPPool quickstart: \[203\.0\.113\.0/28 2001:db8:100::/120\]`,
			n+` \| understood +BGPPeer router: 198\.51\.100\.1 AS64512 \(local AS64513\)`,
			n+`: sluice-agent stopped by SIGTERM, exit status 0`,
		)
	}
	for _, target := range []string{"node-1 +198.51.100.11", "node-1 +2001:db8:1::11", "node-2 +198.51.100.12", "node-2 +2001:db8:1::12"} {
		want = append(want, `client -> `+strings.ReplaceAll(target, ".", `\.`)+` +ok`)
	}
	for _, re := range want {
		if !regexp.MustCompile(`(?m)` + re).MatchString(out) {
			t.Errorf("output lacks a line matching %q", re)
		}
	}

	// Nothing may be left: no namespace of this process's labs (lab names them
	// sluicelab-<pid>-...), no sluice-agent or bgpd started from this test's directory.
	entries, err := os.ReadDir("/run/netns")
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	prefix := fmt.Sprintf("sluicelab-%d-", os.Getpid())
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), prefix) {
			t.Errorf("namespace %s left behind", e.Name())
		}
	}
	for _, p := range leftProcesses(t, root, "sluice-agent", "bgpd") {
		t.Errorf("process left behind: %s", p)
	}
	if _, err := os.Stat(filepath.Join(root, "bin")); err != nil {
		t.Errorf("the demo removed more than its own work directory: %v", err)
	}
	if matches, _ := filepath.Glob(filepath.Join(root, "sluice-demo-*")); len(matches) > 0 {
		t.Errorf("work directory left behind: %v", matches)
	}
}

// leftProcesses lists the processes with one of the command names whose command line
// mentions dir.
func leftProcesses(t *testing.T, dir string, names ...string) []string {
	t.Helper()
	procs, err := filepath.Glob("/proc/[0-9]*")
	if err != nil {
		t.Fatal(err)
	}
	var left []string
	for _, p := range procs {
		comm, err1 := os.ReadFile(filepath.Join(p, "comm"))
		cmdline, err2 := os.ReadFile(filepath.Join(p, "cmdline"))
		if err1 != nil || err2 != nil { // exited meanwhile
			continue
		}
		args := strings.ReplaceAll(string(bytes.TrimRight(cmdline, "\x00")), "\x00", " ")
		for _, name := range names {
			if strings.TrimSpace(string(comm)) == name && strings.Contains(args, dir) {
				left = append(left, filepath.Base(p)+" "+args)
			}
		}
	}
	return left
}
