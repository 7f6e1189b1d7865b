package lab

import (
	"fmt"
	"os"
	"strings"
	"testing"
)

func TestParseOwner(t *testing.T) {
	for _, tc := range []struct {
		name   string
		pid    int
		prefix string
		ok     bool
	}{
		{"sluicelab-4242-7-router", 4242, "sluicelab-4242-7-", true},
		{"sluicelab-4242-7-testinterop-a", 4242, "sluicelab-4242-7-", true},
		{"sluicelab-x-7-router", 0, "", false},
		{"sluice-4242-7-router", 0, "", false},
		{"router", 0, "", false},
	} {
		pid, prefix, ok := parseOwner(tc.name)
		if pid != tc.pid || prefix != tc.prefix || ok != tc.ok {
			t.Errorf("parseOwner(%q) = %d, %q, %v; want %d, %q, %v", tc.name, pid, prefix, ok, tc.pid, tc.prefix, tc.ok)
		}
	}
}

func TestSanitizeLabel(t *testing.T) {
	for in, want := range map[string]string{
		"":                      "",
		"TestInterop/FRR_gobgp": "testinteropfrrgo",
		"demo":                  "demo",
		"a-b c":                 "abc",
	} {
		if got := sanitizeLabel(in); got != want {
			t.Errorf("sanitizeLabel(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestStaleOwnPIDOnlyWithoutOpenLab(t *testing.T) {
	self := os.Getpid()
	prefix := fmt.Sprintf("sluicelab-%d-1000001-", self)
	openMu.Lock()
	open[prefix+"x-"] = true
	openMu.Unlock()
	defer func() {
		openMu.Lock()
		delete(open, prefix+"x-")
		openMu.Unlock()
	}()
	if stale(self, prefix) {
		t.Errorf("open lab %s of this process considered stale", prefix)
	}
	if other := fmt.Sprintf("sluicelab-%d-100000-", self); !stale(self, other) {
		t.Errorf("%s (no open lab, this PID) not considered stale", other)
	}
	if !stale(1<<30, "sluicelab-1073741824-1-") {
		t.Error("lab of a PID that does not exist not considered stale")
	}
	if stale(1, "sluicelab-1-1-") {
		t.Error("lab of PID 1 (alive) considered stale")
	}
}

func TestTailKeepsTheEnd(t *testing.T) {
	var tl tail
	tl.Write([]byte(strings.Repeat("a", outputLimit)))
	tl.Write([]byte("end"))
	s := tl.String()
	if len(s) != outputLimit || !strings.HasSuffix(s, "end") {
		t.Errorf("tail holds %d bytes ending %q; want %d ending \"end\"", len(s), s[len(s)-3:], outputLimit)
	}
}
