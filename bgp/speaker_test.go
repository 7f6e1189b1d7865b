package bgp

import (
	"context"
	"log/slog"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/api/v1alpha1"
	"github.com/sluice-lb/sluice/internal/model"
)

// TestSpeakerReusesServers: resetting a session (changed settings) and removing and adding a
// peer again reuse the peer's GoBGP server, whose Serve never returns: ten resets leave no
// more goroutines than one. The paths of a new session are in its RIB before the session
// exists, and withdrawing thousands of paths is quick.
func TestSpeakerReusesServers(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s := NewSpeaker(slog.New(slog.DiscardHandler))
	defer s.Close(ctx, true)
	peer := func(hold time.Duration) *model.Peer {
		// Nothing listens there: the session never comes up, which is all this test needs.
		return &model.Peer{Name: "r", Address: netip.MustParseAddr("127.0.0.9"), ASN: 64512, LocalASN: 64513, Port: 1790,
			HoldTime: hold, KeepaliveTime: hold / 3, ConnectRetryTime: time.Second, Families: []v1alpha1.Family{v1alpha1.FamilyIPv4Unicast}}
	}
	var paths []Path
	base := netip.MustParseAddr("10.200.0.0")
	for range 3000 {
		paths = append(paths, Path{Prefix: netip.PrefixFrom(base, 32)})
		base = base.Next()
	}
	rid := netip.MustParseAddr("127.0.0.1")
	apply := func(hold time.Duration, ps []Path) {
		t.Helper()
		d := Desired{Node: "n", Peers: []*model.Peer{peer(hold)}, Paths: map[string][]Path{"r": ps}}
		if err := s.Apply(ctx, d, rid); err != nil {
			t.Fatal(err)
		}
	}
	apply(9*time.Second, paths)
	if got := len(s.Routes()["r"]); got != len(paths) {
		t.Fatalf("%d paths held, want %d", got, len(paths))
	}
	time.Sleep(100 * time.Millisecond)
	before := runtime.NumGoroutine()
	for i := range 10 {
		apply(time.Duration(9+i+1)*time.Second, paths) // a new hold time: the session is made again
	}
	s.Close(ctx, true)
	apply(30*time.Second, paths)
	time.Sleep(100 * time.Millisecond)
	if after := runtime.NumGoroutine(); after > before+5 {
		t.Errorf("%d goroutines after 11 resets, %d before: servers leak", after, before)
	}
	start := time.Now()
	apply(30*time.Second, paths[:10])
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("withdrawing %d paths took %v", len(paths)-10, took)
	}
	if got := len(s.Routes()["r"]); got != 10 {
		t.Fatalf("%d paths held, want 10", got)
	}
}
