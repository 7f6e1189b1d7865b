package ipam

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"slices"

	"k8s.io/apimachinery/pkg/types"

	"github.com/sluice-lb/sluice/internal/model"
)

// StateFile is the name of the file in the agent's state directory where standalone mode
// keeps the addresses it gave out, so that a restart gives every Service the same ones.
const StateFile = "ipam.json"

// State is every Service's addresses, as standalone mode remembers them between runs.
type State struct {
	Version  int                     `json:"version"`
	Services map[string][]netip.Addr `json:"services"` // "namespace/name" -> addresses
}

const stateVersion = 1

// ReadState reads a state file; a missing file is an empty state.
func ReadState(path string) (State, error) {
	st := State{Version: stateVersion, Services: map[string][]netip.Addr{}}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return State{Version: stateVersion, Services: map[string][]netip.Addr{}}, fmt.Errorf("%s: %w", path, err)
	}
	if st.Version != stateVersion {
		return State{Version: stateVersion, Services: map[string][]netip.Addr{}}, fmt.Errorf("%s: version %d, want %d", path, st.Version, stateVersion)
	}
	if st.Services == nil {
		st.Services = map[string][]netip.Addr{}
	}
	return st, nil
}

// Write replaces the state file atomically (a new file renamed over the old one).
func (st State) Write(path string) error {
	b, err := st.marshal()
	if err != nil {
		return err
	}
	return writeFile(path, b)
}

// writeFile replaces the file at path with b and a newline, atomically.
func writeFile(path string, b []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// marshal encodes st exactly as json.MarshalIndent(st, "", "  ") does, in a fraction of
// its time: the file is rewritten on every allocation change, and 10k Services make it
// large.
func (st State) marshal() ([]byte, error) {
	return st.appendJSON(nil, slices.Sorted(maps.Keys(st.Services)))
}

// appendJSON appends what marshal returns to b; keys are st.Services' keys, sorted.
func (st State) appendJSON(b []byte, keys []string) ([]byte, error) {
	b = fmt.Appendf(b, "{\n  \"version\": %d,\n  \"services\": ", st.Version)
	if st.Services == nil {
		return append(b, "null\n}"...), nil
	}
	b = slices.Grow(b, len(keys)*64)
	b = append(b, '{')
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, "\n    "...)
		if plainJSON(k) {
			b = append(append(append(b, '"'), k...), '"')
		} else {
			key, err := json.Marshal(k)
			if err != nil {
				return nil, err
			}
			b = append(b, key...)
		}
		b = append(b, ": "...)
		addrs := st.Services[k]
		if addrs == nil {
			b = append(b, "null"...)
			continue
		}
		b = append(b, '[')
		for j, a := range addrs {
			if j > 0 {
				b = append(b, ',')
			}
			b = append(b, "\n      \""...)
			b, _ = a.AppendText(b) // as MarshalText: never fails
			b = append(b, '"')
		}
		if len(addrs) > 0 {
			b = append(b, "\n    "...)
		}
		b = append(b, ']')
	}
	if len(keys) > 0 {
		b = append(b, "\n  "...)
	}
	return append(b, "}\n}"...), nil
}

// plainJSON reports whether s is its own JSON string body: printable ASCII that
// encoding/json neither escapes nor replaces (Service keys always are).
func plainJSON(s string) bool {
	for i := range len(s) {
		switch c := s[i]; {
		case c < 0x20 || c >= 0x7f, c == '"', c == '\\', c == '<', c == '>', c == '&':
			return false
		}
	}
	return true
}

// Equal reports whether two states hold the same addresses.
func (st State) Equal(o State) bool {
	return maps.EqualFunc(st.Services, o.Services, slices.Equal)
}

// StateOf is the state to remember after an allocation.
func StateOf(r *Result) State {
	st := State{Version: stateVersion, Services: map[string][]netip.Addr{}}
	for _, a := range r.Allocations {
		if len(a.IPs) > 0 {
			st.Services[a.Service.String()] = slices.Clone(a.IPs)
		}
	}
	return st
}

// WithState returns a model whose Services without a status address hold the ones st
// remembers for them, as if their status said so: what a restart of standalone mode
// allocates from. A Service's own status, when it has one, wins. m is not modified.
func WithState(m *model.Model, st State) *model.Model {
	return withIngress(m, func(s *model.Service) []netip.Addr {
		if len(s.IngressIPs) > 0 || !s.Ours {
			return nil
		}
		return st.Services[s.Key.String()]
	})
}

// withIngress returns a copy of m in which each Service for which ips gives addresses holds
// them as its status; m is not modified.
func withIngress(m *model.Model, ips func(*model.Service) []netip.Addr) *model.Model {
	out := *m
	out.Services = slices.Clone(m.Services)
	for i, s := range out.Services {
		if a := ips(s); len(a) > 0 {
			c := *s
			c.IngressIPs = slices.Clone(a)
			out.Services[i] = &c
		}
	}
	return &out
}

// Addresses returns the addresses of the Services that have any, for the datapath and the
// announcers.
func (r *Result) Addresses() map[types.NamespacedName][]netip.Addr {
	out := make(map[types.NamespacedName][]netip.Addr, len(r.Allocations))
	for _, a := range r.Allocations {
		if len(a.IPs) > 0 {
			out[a.Service] = a.IPs
		}
	}
	return out
}
