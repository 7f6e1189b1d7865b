package bgp

import (
	"testing"
	"time"
)

func TestSessionsOf(t *testing.T) {
	s := NewSessions("node-1")
	t0 := time.Date(2026, 12, 2, 8, 0, 0, 0, time.UTC)
	got := s.Of(t0, []PeerStatus{
		{Name: "up", State: "established", Uptime: 90 * time.Second, Sent: 3},
		{Name: "down", State: "active", LastError: "failed to connect: connection refused"},
		{Name: "odd", State: "unknown"},
	})
	if len(got) != 3 {
		t.Fatalf("%d sessions, want 3: %+v", len(got), got)
	}
	up, down, odd := got["up"], got["down"], got["odd"]
	if up.Node != "node-1" || up.State != "Established" || !up.Since.Time.Equal(t0.Add(-90*time.Second)) || up.PrefixesSent != 3 || up.Message != "" {
		t.Errorf("established session: %+v", up)
	}
	if down.State != "Active" || !down.Since.Time.Equal(t0) || down.Message != "failed to connect: connection refused" {
		t.Errorf("active session: %+v", down)
	}
	if odd.State != "Unknown" {
		t.Errorf("unknown state: %+v", odd)
	}

	// A state that holds keeps its Since (the uptime, truncated to seconds, would wobble);
	// a new state starts a new one; a peer that went is forgotten.
	t1 := t0.Add(10 * time.Second)
	got = s.Of(t1, []PeerStatus{
		{Name: "up", State: "established", Uptime: 99 * time.Second, Sent: 4},
		{Name: "down", State: "established", Uptime: time.Second},
	})
	if !got["up"].Since.Time.Equal(t0.Add(-90*time.Second)) || got["up"].PrefixesSent != 4 {
		t.Errorf("held state: %+v", got["up"])
	}
	if got["down"].State != "Established" || !got["down"].Since.Time.Equal(t1.Add(-time.Second)) {
		t.Errorf("changed state: %+v", got["down"])
	}
	if _, ok := s.since["odd"]; ok || len(got) != 2 {
		t.Errorf("a peer that went is still tracked: %+v", got)
	}
}
