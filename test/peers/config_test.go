package peers

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/internal/testenv"
)

// goldenConfig uses every option: IPv4 and IPv6 neighbors, passive, iBGP, timers and
// networks of both families.
var goldenConfig = Config{
	RouterID: addr("10.255.0.9"),
	ASN:      65009,
	Neighbors: []Neighbor{
		{Address: addr("10.0.0.1"), ASN: 65001},
		{Address: addr("2001:db8::1"), ASN: 65001, Passive: true},
		{Address: addr("10.0.0.2"), ASN: 65009},
	},
	Networks: []netip.Prefix{prefix("198.51.100.0/24"), prefix("2001:db8:100::/48")},
	HoldTime: 9 * time.Second,
}

var generators = map[string]func(Config) (string, error){
	"frr-bgpd.conf": frrConfig,
	"bird.conf":     birdConfig,
	"gobgpd.toml":   gobgpConfig,
}

func TestConfigGolden(t *testing.T) {
	for file, gen := range generators {
		got, err := gen(goldenConfig)
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		path := filepath.Join("testdata", file)
		if *Update {
			if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if got != string(want) {
			t.Errorf("%s differs from %s (rerun with -update and review the diff):\n%s", file, path, got)
		}
	}
}

// TestConfigAcceptedByDaemons runs each daemon's own configuration check on the golden
// configuration: bgpd -C (which reports errors but exits 0), bird -p, gobgpd -d.
func TestConfigAcceptedByDaemons(t *testing.T) {
	testenv.RequireCommands(t, FRRBgpd, "bird", "gobgpd")
	dir := t.TempDir()
	for file, gen := range generators {
		conf, err := gen(goldenConfig)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, file)
		if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
			t.Fatal(err)
		}
		var cmd *exec.Cmd
		switch file {
		case "frr-bgpd.conf":
			cmd = exec.Command(FRRBgpd, "-C", "-f", path, "-Z", "-S", "-p", "0", "-P", "0", "--vty_socket", dir, "-i", filepath.Join(dir, "bgpd.pid"))
		case "bird.conf":
			cmd = exec.Command("bird", "-p", "-c", path)
		case "gobgpd.toml":
			cmd = exec.Command("gobgpd", "-d", "-f", path)
		}
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		check := exec.CommandContext(ctx, cmd.Path, cmd.Args[1:]...)
		out, err := check.CombinedOutput()
		cancel()
		if file == "frr-bgpd.conf" && check.Process != nil {
			// bgpd -C exits without removing its (empty) crash-log directory.
			os.Remove(fmt.Sprintf("/var/tmp/frr/bgpd.%d", check.Process.Pid))
		}
		if err != nil || strings.Contains(string(out), "[EC ") || strings.Contains(strings.ToLower(string(out)), "error") {
			t.Errorf("%s rejects %s: %v\n%s\n%s", cmd.Path, file, err, out, conf)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	for name, cfg := range map[string]Config{
		"IPv6 router ID":      {RouterID: addr("2001:db8::1"), ASN: 1},
		"no ASN":              {RouterID: addr("10.0.0.1")},
		"neighbor ASN 0":      {RouterID: addr("10.0.0.1"), ASN: 1, Neighbors: []Neighbor{{Address: addr("10.0.0.2")}}},
		"neighbor twice":      {RouterID: addr("10.0.0.1"), ASN: 1, Neighbors: []Neighbor{{Address: addr("10.0.0.2"), ASN: 2}, {Address: addr("10.0.0.2"), ASN: 2}}},
		"link-local":          {RouterID: addr("10.0.0.1"), ASN: 1, Neighbors: []Neighbor{{Address: addr("fe80::1%eth0"), ASN: 2}}},
		"unmasked network":    {RouterID: addr("10.0.0.1"), ASN: 1, Networks: []netip.Prefix{prefix("10.1.2.3/24")}},
		"hold time too short": {RouterID: addr("10.0.0.1"), ASN: 1, HoldTime: time.Second},
	} {
		for file, gen := range generators {
			if _, err := gen(cfg); err == nil {
				t.Errorf("%s: %s accepted it", name, file)
			}
		}
	}
}
