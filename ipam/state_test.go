package ipam

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"path/filepath"
	"testing"
)

// TestStateMarshal: the state file's hand-written encoding is byte for byte what
// json.MarshalIndent writes, and reads back to the same state.
func TestStateMarshal(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	states := []State{
		{Version: 1, Services: map[string][]netip.Addr{}},
		{Version: 1},
		{Version: 1, Services: map[string][]netip.Addr{"a/b": nil, "c/d": {}, `q"uote/\x`: {netip.MustParseAddr("2001:db8::1")},
			"a<b>/x": nil, "a&b/c": nil, "a/b>": nil, "ü/\x01\u2028": {}, "plain-ns.1/name": nil}},
	}
	for range 20 {
		st := State{Version: 1, Services: map[string][]netip.Addr{}}
		for i := range rng.IntN(50) {
			var addrs []netip.Addr
			for range rng.IntN(3) {
				if rng.IntN(2) == 0 {
					addrs = append(addrs, netip.AddrFrom4([4]byte{203, 0, 113, byte(rng.IntN(256))}))
				} else {
					addrs = append(addrs, netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: byte(rng.IntN(256))}))
				}
			}
			st.Services[fmt.Sprintf("ns%d/svc-%d", rng.IntN(5), i)] = addrs
		}
		states = append(states, st)
	}
	for i, st := range states {
		got, err := st.marshal()
		if err != nil {
			t.Fatal(err)
		}
		want, err := json.MarshalIndent(st, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("state %d:\n%s\nwant:\n%s", i, got, want)
		}
		path := filepath.Join(t.TempDir(), StateFile)
		if err := st.Write(path); err != nil {
			t.Fatal(err)
		}
		back, err := ReadState(path)
		if err != nil || !back.Equal(st) && len(st.Services) > 0 {
			t.Fatalf("state %d read back: %+v, %v", i, back, err)
		}
	}
}
