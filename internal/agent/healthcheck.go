package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/sluice-lb/sluice/internal/model"
)

// healthChecks serves, on each node, the healthCheckNodePort of every LoadBalancer Service
// with externalTrafficPolicy Local, answering as kube-proxy does: 200 while the node has a
// ready endpoint of the Service, 503 while it has none, with the count in the body and the
// X-Load-Balancing-Endpoint-Weight header. Load balancers in front of the nodes (cloud ones,
// hardware ones probing node ports) then send traffic only to nodes that can serve it.
type healthChecks struct {
	node string
	log  *slog.Logger

	mu      sync.Mutex
	ctx     context.Context
	servers map[uint16]*hcServer
	failed  map[uint16]string // listen errors logged, by port
}

type hcServer struct {
	srv   *http.Server
	svc   types.NamespacedName
	local int // ready endpoints on this node
}

func newHealthChecks(node string, log *slog.Logger) *healthChecks {
	return &healthChecks{node: node, log: log, servers: map[uint16]*hcServer{}, failed: map[uint16]string{}}
}

// start records the agent's run context; the servers stop with it.
func (h *healthChecks) start(ctx context.Context) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ctx = ctx
	context.AfterFunc(ctx, h.closeAll)
}

// update serves the health check ports of model m's Services, and closes those no longer
// wanted.
func (h *healthChecks) update(m *model.Model) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.ctx == nil || h.ctx.Err() != nil {
		return
	}
	want := map[uint16]bool{}
	for _, s := range m.Services {
		if s.Type != corev1.ServiceTypeLoadBalancer || s.ExternalTrafficPolicy != corev1.ServiceExternalTrafficPolicyLocal || s.HealthCheckNodePort == 0 {
			continue
		}
		port := s.HealthCheckNodePort
		want[port] = true
		local := localReady(s, h.node)
		if hs := h.servers[port]; hs != nil {
			hs.svc, hs.local = s.Key, local
			continue
		}
		hs := &hcServer{svc: s.Key, local: local}
		ln, err := net.Listen("tcp", net.JoinHostPort("", strconv.Itoa(int(port))))
		if err != nil {
			if h.failed[port] != err.Error() {
				h.failed[port] = err.Error()
				h.log.Warn("health check node port: cannot listen", "service", s.Key.String(), "port", port, "error", err)
			}
			continue
		}
		delete(h.failed, port)
		hs.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { h.answer(w, port) }),
			ReadHeaderTimeout: 5 * time.Second}
		h.servers[port] = hs
		go func() {
			if err := hs.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				h.log.Warn("health check node port stopped", "port", port, "error", err)
			}
		}()
	}
	for port, hs := range h.servers {
		if !want[port] {
			_ = hs.srv.Close()
			delete(h.servers, port)
		}
	}
}

// answer writes the health of the Service on port, as kube-proxy does.
func (h *healthChecks) answer(w http.ResponseWriter, port uint16) {
	h.mu.Lock()
	hs := h.servers[port]
	var svc types.NamespacedName
	local := 0
	if hs != nil {
		svc, local = hs.svc, hs.local
	}
	h.mu.Unlock()
	body, _ := json.Marshal(map[string]any{
		"service":             map[string]string{"namespace": svc.Namespace, "name": svc.Name},
		"localEndpoints":      local,
		"serviceProxyHealthy": true,
	})
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("X-Load-Balancing-Endpoint-Weight", strconv.Itoa(local))
	if local > 0 {
		w.WriteHeader(http.StatusOK)
	} else {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	fmt.Fprintf(w, "%s\n", body)
}

func (h *healthChecks) closeAll() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for port, hs := range h.servers {
		_ = hs.srv.Close()
		delete(h.servers, port)
	}
}

// localReady counts the distinct ready, not terminating endpoint addresses of s on node.
func localReady(s *model.Service, node string) int {
	var seen []string
	for _, e := range s.Endpoints {
		if e.Node == node && e.Ready && !e.Terminating && !slices.Contains(seen, e.Addr.String()) {
			seen = append(seen, e.Addr.String())
		}
	}
	return len(seen)
}
