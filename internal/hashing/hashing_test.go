package hashing

import "testing"

// TestSum64Pinned: a value nodes agree on (lb's Maglev offset seed). A change here would make
// nodes of two versions build different Maglev tables and pick different owners.
func TestSum64Pinned(t *testing.T) {
	if got := Sum64([]byte("sluice"), 0x5eed_0ff5_e7ed_a7a0); got != 0x28b0b567db51ff6b {
		t.Errorf("Sum64 = %#x, want 0x28b0b567db51ff6b", got)
	}
	if Sum64([]byte("node-1"), 0) == Sum64([]byte("node-2"), 0) {
		t.Error("names differing in a last character hash alike")
	}
}
