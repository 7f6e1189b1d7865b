package localapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// Handlers answer the local API's requests. Services and Conntrack may be nil (no datapath),
// Allocations too (no allocator in this agent).
type Handlers struct {
	Status      func() Status
	Services    func() ([]ServiceStatus, error)
	Conntrack   func(limit int) ([]ConntrackEntry, error)
	Allocations func() []Allocation
	BGPPeers    func(context.Context) []BGPPeer
	L2          func() L2Status
}

// Server serves the local API on a unix socket.
type Server struct {
	path string
	h    Handlers
	ln   net.Listener
	srv  *http.Server
}

// Listen creates the socket in stateDir (replacing a stale one left by a killed agent) and
// returns a Server ready to Serve.
func Listen(stateDir string, h Handlers) (*Server, error) {
	if err := os.MkdirAll(stateDir, 0o755); err != nil {
		return nil, fmt.Errorf("local api: %w", err)
	}
	path := filepath.Join(stateDir, SocketName)
	if err := removeStale(path); err != nil {
		return nil, err
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("local api: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("local api: %w", err)
	}
	s := &Server{path: path, h: h, ln: ln}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, _ *http.Request) { reply(w, s.h.Status(), nil) })
	mux.HandleFunc("GET /v1/services", func(w http.ResponseWriter, _ *http.Request) {
		if s.h.Services == nil {
			http.Error(w, ErrNoDatapath, http.StatusNotFound)
			return
		}
		v, err := s.h.Services()
		reply(w, v, err)
	})
	mux.HandleFunc("GET /v1/allocations", func(w http.ResponseWriter, _ *http.Request) {
		if s.h.Allocations == nil {
			http.Error(w, ErrNoAllocator, http.StatusNotFound)
			return
		}
		reply(w, s.h.Allocations(), nil)
	})
	mux.HandleFunc("GET /v1/bgp/peers", func(w http.ResponseWriter, r *http.Request) {
		if s.h.BGPPeers == nil {
			http.Error(w, "this agent runs no BGP speaker", http.StatusNotFound)
			return
		}
		reply(w, s.h.BGPPeers(r.Context()), nil)
	})
	mux.HandleFunc("GET /v1/l2/owners", func(w http.ResponseWriter, _ *http.Request) {
		if s.h.L2 == nil {
			http.Error(w, "this agent runs no L2 announcements", http.StatusNotFound)
			return
		}
		reply(w, s.h.L2(), nil)
	})
	mux.HandleFunc("GET /v1/conntrack", func(w http.ResponseWriter, r *http.Request) {
		if s.h.Conntrack == nil {
			http.Error(w, ErrNoDatapath, http.StatusNotFound)
			return
		}
		limit, err := strconv.Atoi(r.URL.Query().Get("limit"))
		if err != nil || limit <= 0 {
			limit = 1000
		}
		limit = min(limit, MaxConntrackEntries)
		v, err := s.h.Conntrack(limit)
		reply(w, v, err)
	})
	s.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	return s, nil
}

// removeStale removes a socket file nobody listens on; a live one is an error (another agent
// uses this state directory).
func removeStale(path string) error {
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return fmt.Errorf("local api: %s is in use by another agent; give each agent its own --state-dir", path)
	}
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("local api: removing stale socket: %w", err)
	}
	return nil
}

// Close closes a server that will not Serve, removing its socket.
func (s *Server) Close() error {
	err := s.ln.Close()
	os.Remove(s.path)
	return err
}

// Path is the socket's path.
func (s *Server) Path() string { return s.path }

// Serve serves until ctx ends, then shuts down and removes the socket.
func (s *Server) Serve(ctx context.Context) error {
	errc := make(chan error, 1)
	go func() { errc <- s.srv.Serve(s.ln) }()
	select {
	case err := <-errc:
		os.Remove(s.path)
		return fmt.Errorf("local api: %w", err)
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := s.srv.Shutdown(shutdown)
	<-errc
	os.Remove(s.path)
	return err
}

// reply writes v as JSON, or err as a 500.
func reply(w http.ResponseWriter, v any, err error) {
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
