package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/internal/localapi"
)

func TestFlagErrors(t *testing.T) {
	cases := map[string]struct {
		args []string
		code int
		want string
	}{
		"log level":     {[]string{"--log-level", "loud"}, 2, `--log-level: "loud" is not debug, info, warn or error`},
		"log format":    {[]string{"--log-format", "xml"}, 2, `--log-format: "xml" is not text or json`},
		"unknown flag":  {[]string{"--frobnicate"}, 2, "flag provided but not defined: -frobnicate"},
		"arguments":     {[]string{"extra"}, 2, `unexpected arguments ["extra"]`},
		"both sources":  {[]string{"--config", "a.yaml", "--kubeconfig", "k"}, 1, "--config and --kubeconfig exclude each other"},
		"bad device":    {[]string{"--config", "a.yaml", "--devices", "eth0,a/b", "--state-dir", t.TempDir()}, 1, `--devices: \"a/b\" is not an interface name`},
		"no kubeconfig": {[]string{"--state-dir", t.TempDir()}, 1, "outside a cluster, pass --kubeconfig, or --config for standalone mode"},
		"external ips":  {[]string{"--external-ip-cidrs", "198.18.0.0/24,10.0.0.1/8"}, 2, `"10.0.0.1/8" has host bits set (did you mean 10.0.0.0/8?)`},
		"snat ports":    {[]string{"--snat-port-range", "62000-61000"}, 2, `"62000-61000" is not a port range FIRST-LAST (1-65535) or off`},
		"port overlap":  {[]string{"--config", "a.yaml", "--state-dir", t.TempDir(), "--snat-port-range", "32000-33000"}, 1, "--snat-port-range 32000-33000 overlaps --node-port-range 30000-32767"},
		"lb mode":       {[]string{"--lb-mode", "direct"}, 2, `--lb-mode: "direct" is not snat or dsr`},
		"node ports":    {[]string{"--node-port-range", "off"}, 2, `"off" is not a port range FIRST-LAST (1-65535)`},
		"snat port big": {[]string{"--snat-port-range", "61000-70000"}, 2, `"61000-70000" is not a port range`},
		"l2 timeout":    {[]string{"--config", "a.yaml", "--state-dir", t.TempDir(), "--l2-heartbeat-interval", "1s", "--l2-heartbeat-timeout", "500ms"}, 1, "--l2-heartbeat-timeout 500ms must be longer than --l2-heartbeat-interval 1s"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			var stderr bytes.Buffer
			if code := run(tc.args, &stderr); code != tc.code || !strings.Contains(stderr.String(), tc.want) {
				t.Fatalf("exit %d (want %d), stderr:\n%s\nwant %q", code, tc.code, stderr.String(), tc.want)
			}
		})
	}
}

// TestBinarySIGTERM builds and runs the real binary in standalone mode: it becomes ready,
// serves its status on the socket, and on SIGTERM exits 0 promptly, removing the socket.
func TestBinarySIGTERM(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "sluice-agent")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	stateDir := filepath.Join(dir, "state")
	var logs bytes.Buffer
	cmd := exec.Command(bin, "--config", "../../examples/quickstart.yaml", "--node-name", "node-1", "--state-dir", stateDir,
		"--metrics-addr", "127.0.0.1:0", "--health-addr", "127.0.0.1:0", "--log-format", "json")
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			<-exited
		}
	}()

	client := localapi.NewClient(stateDir)
	deadline := time.Now().Add(20 * time.Second)
	var st *localapi.Status
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		s, err := client.Status(ctx)
		cancel()
		if err == nil && s.Synced {
			st = s
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("agent not ready: %v\n%s", err, logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if len(st.Pools) != 2 || !slices.ContainsFunc(st.Pools, func(p localapi.PoolStatus) bool { return p.Name == "quickstart" }) || len(st.Peers) != 2 || len(st.Problems) != 0 {
		t.Fatalf("status = %+v", st)
	}

	start := time.Now()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		var exitErr *exec.ExitError
		if errors.As(err, &exitErr) || err != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", err, logs.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("agent still running 10s after SIGTERM\n%s", logs.String())
	}
	t.Logf("stopped %s after SIGTERM", time.Since(start))
	if _, err := os.Stat(filepath.Join(stateDir, localapi.SocketName)); !os.IsNotExist(err) {
		t.Fatalf("socket left behind: %v", err)
	}
	for _, want := range []string{`"msg":"understood"`, `IPPool quickstart`, `"msg":"stopped"`} {
		if !strings.Contains(logs.String(), want) {
			t.Fatalf("log lacks %q:\n%s", want, logs.String())
		}
	}
}
