package bgp

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	api "github.com/osrg/gobgp/v3/api"

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

// TestSpeakerSendsChanges: a Desired that says what changed since the one the speaker holds
// is applied by those prefixes alone (a path it does not list stays as it was, even one the
// Desired has, which only a full sync would add); one that is based on another Desired, or
// none, is applied in full. Read back from GoBGP's own RIB.
func TestSpeakerSendsChanges(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s := NewSpeaker(slog.New(slog.DiscardHandler))
	defer s.Close(ctx, true)
	peer := &model.Peer{Name: "r", Address: netip.MustParseAddr("127.0.0.9"), ASN: 64512, LocalASN: 64513, Port: 1790,
		HoldTime: 9 * time.Second, KeepaliveTime: 3 * time.Second, ConnectRetryTime: time.Second, Families: []v1alpha1.Family{v1alpha1.FamilyIPv4Unicast}}
	path := func(p string, communities ...uint32) Path {
		out := Path{Prefix: netip.MustParsePrefix(p)}
		for _, c := range communities {
			out.Communities = append(out.Communities, model.Community{Value: c})
		}
		return out
	}
	a, b, b2, c, d, e := path("10.0.0.1/32"), path("10.0.0.2/32"), path("10.0.0.2/32", 7), path("10.0.0.3/32"), path("10.0.0.4/32"), path("10.0.0.5/32")
	rib := func() string {
		t.Helper()
		var out []string
		err := s.peers["r"].server.ListPath(ctx, &api.ListPathRequest{TableType: api.TableType_GLOBAL, Family: familyIPv4}, func(dst *api.Destination) {
			for _, p := range dst.Paths {
				line := dst.Prefix
				for _, attr := range p.Pattrs {
					var cs api.CommunitiesAttribute
					if attr.UnmarshalTo(&cs) == nil {
						line += fmt.Sprint(" ", cs.Communities)
					}
				}
				out = append(out, line)
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		slices.Sort(out)
		return strings.Join(out, ", ")
	}
	rid := netip.MustParseAddr("127.0.0.1")
	steps := []struct {
		name string
		d    Desired
		want string
	}{
		{"full", Desired{Seq: 1, Paths: map[string][]Path{"r": {a, b, c}}}, "10.0.0.1/32, 10.0.0.2/32, 10.0.0.3/32"},
		{"changes since 1", Desired{Seq: 2, Since: 1, Paths: map[string][]Path{"r": {a, b2, d}},
			Changed: map[string][]netip.Prefix{"r": {b.Prefix, c.Prefix, d.Prefix}}}, "10.0.0.1/32, 10.0.0.2/32 [7], 10.0.0.4/32"},
		{"only what is listed", Desired{Seq: 3, Since: 2, Paths: map[string][]Path{"r": {a, b2, d, e}}, Changed: map[string][]netip.Prefix{}},
			"10.0.0.1/32, 10.0.0.2/32 [7], 10.0.0.4/32"},
		{"based on another", Desired{Seq: 9, Since: 7, Paths: map[string][]Path{"r": {e}}, Changed: map[string][]netip.Prefix{"r": {a.Prefix}}},
			"10.0.0.5/32"},
		{"no basis", Desired{Seq: 10, Paths: map[string][]Path{"r": {a, e}}}, "10.0.0.1/32, 10.0.0.5/32"},
	}
	for _, st := range steps {
		st.d.Node, st.d.Peers = "n", []*model.Peer{peer}
		if err := s.Apply(ctx, st.d, rid); err != nil {
			t.Fatal(err)
		}
		if got := rib(); got != st.want {
			t.Fatalf("%s: RIB holds %s, want %s", st.name, got, st.want)
		}
	}
}
