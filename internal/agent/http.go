package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// httpServer is one listener serving metrics, health, or both.
type httpServer struct {
	ln      net.Listener
	srv     *http.Server
	metrics bool
	health  bool
}

// listenHTTP opens the metrics and health listeners (one, when the addresses are the same).
func (a *Agent) listenHTTP() ([]*httpServer, error) {
	var servers []*httpServer
	add := func(addr string, metrics, health bool) error {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("listening on %s: %w", addr, err)
		}
		mux := http.NewServeMux()
		if metrics {
			mux.Handle("GET /metrics", promhttp.HandlerFor(a.metrics.registry, promhttp.HandlerOpts{Registry: a.metrics.registry}))
		}
		if health {
			mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
			mux.HandleFunc("GET /readyz", a.ready)
		}
		servers = append(servers, &httpServer{ln: ln, metrics: metrics, health: health,
			srv: &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}})
		return nil
	}
	var err error
	switch m, h := a.cfg.MetricsAddr, a.cfg.HealthAddr; {
	case m != "" && m == h:
		err = add(m, true, true)
	default:
		if m != "" {
			err = add(m, true, false)
		}
		if err == nil && h != "" {
			err = add(h, false, true)
		}
	}
	if err != nil {
		for _, s := range servers {
			s.ln.Close()
		}
		return nil, err
	}
	return servers, nil
}

func (a *Agent) closeHTTP() {
	for _, s := range a.http {
		s.ln.Close()
	}
}

// ready answers 200 once the source synced and a model was built.
func (a *Agent) ready(w http.ResponseWriter, _ *http.Request) {
	if ok, why := a.isReady(); !ok {
		http.Error(w, "not ready: "+why, http.StatusServiceUnavailable)
		return
	}
	fmt.Fprintln(w, "ok")
}

func (h *httpServer) serve(ctx context.Context) error {
	errc := make(chan error, 1)
	go func() { errc <- h.srv.Serve(h.ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := h.srv.Shutdown(shutdown)
	if e := <-errc; !errors.Is(e, http.ErrServerClosed) && err == nil {
		err = e
	}
	return err
}
