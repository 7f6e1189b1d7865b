package bpf

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cilium/ebpf/link"

	"github.com/sluice-lb/sluice/internal/testenv"
)

// TestAttachDevicePinnedLinks: the programs attach through links pinned on bpffs; a second
// datapath (a restarted agent) updates the same links in place to its programs — the
// device never runs without one —; DetachDevices removes them.
func TestAttachDevicePinnedLinks(t *testing.T) {
	testenv.RequirePrivileged(t)
	testenv.RequireCommands(t, "ip")
	var id [4]byte
	_, _ = rand.Read(id[:])
	ns := "sluice-test-" + hex.EncodeToString(id[:])
	newNetns(t, ns)
	ipCmd(t, "-n", ns, "link", "add", "dev0", "type", "veth", "peer", "name", "dev1")
	ipCmd(t, "-n", ns, "link", "set", "dev0", "up")
	ipCmd(t, "-n", ns, "link", "set", "dev1", "up")

	pin := filepath.Join(tempBPFFS(t), "sluice")
	linkDir := filepath.Join(pin, "links")

	first := mustLoad(t, Options{PinPath: pin})
	if err := inNetns(t, ns, func() error { return first.AttachDevice("dev0", linkDir) }); err != nil {
		t.Fatalf("first attach: %v", err)
	}
	deviceKinds := []string{"xdp", "tcx-ingress", "tcx-egress"}
	for _, kind := range deviceKinds {
		if _, err := os.Stat(filepath.Join(linkDir, "dev0_"+kind)); err != nil {
			t.Fatalf("link %s not pinned: %v", kind, err)
		}
	}
	// dev1 as a pod's interface: the pod fallback's two links.
	if err := inNetns(t, ns, func() error { return first.AttachPodDevice("dev1", linkDir) }); err != nil {
		t.Fatalf("attach to a pod device: %v", err)
	}
	for _, kind := range []string{"tcx-pod-ingress", "tcx-egress"} {
		if _, err := os.Stat(filepath.Join(linkDir, "dev1_"+kind)); err != nil {
			t.Fatalf("pod device link %s not pinned: %v", kind, err)
		}
	}
	if err := DetachDevices(linkDir, []string{"dev0"}); err != nil {
		t.Fatal(err)
	}
	if left, _ := filepath.Glob(filepath.Join(linkDir, "dev1_*")); len(left) != 0 {
		t.Fatalf("pod device links left after DetachDevices kept only dev0: %v", left)
	}
	if out := ipCmd(t, "-n", ns, "link", "show", "dev0"); !strings.Contains(out, "xdp") {
		t.Fatalf("no XDP program on dev0:\n%s", out)
	}
	// pinned describes the pinned link of one kind.
	pinned := func(kind string) *link.Info {
		l, err := link.LoadPinnedLink(filepath.Join(linkDir, "dev0_"+kind), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		info, err := l.Info()
		if err != nil {
			t.Fatal(err)
		}
		return info
	}
	linkIDs := func() map[string]link.ID {
		ids := map[string]link.ID{}
		for _, kind := range deviceKinds {
			ids[kind] = pinned(kind).ID
		}
		return ids
	}
	before := linkIDs()
	first.Close() // the agent exits: the pinned links keep the programs attached
	if out := ipCmd(t, "-n", ns, "link", "show", "dev0"); !strings.Contains(out, "xdp") {
		t.Fatalf("XDP program gone with the first datapath:\n%s", out)
	}

	second := mustLoad(t, Options{PinPath: pin})
	if err := inNetns(t, ns, func() error { return second.AttachDevice("dev0", linkDir) }); err != nil {
		t.Fatalf("second attach: %v", err)
	}
	if after := linkIDs(); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatalf("links were replaced (%v -> %v), not updated in place: the device ran without a program for a moment", before, after)
	}
	want, err := second.XDPProgram().Info()
	if err != nil {
		t.Fatal(err)
	}
	wantID, _ := want.ID()
	if info := pinned("xdp"); uint32(info.Program) != uint32(wantID) {
		t.Fatalf("pinned XDP link runs program %d, want the second datapath's %d", info.Program, wantID)
	}

	if err := DetachDevices(linkDir, nil); err != nil {
		t.Fatal(err)
	}
	if out := ipCmd(t, "-n", ns, "link", "show", "dev0"); strings.Contains(out, "xdp") {
		t.Fatalf("XDP program still attached after DetachDevices:\n%s", out)
	}
}
