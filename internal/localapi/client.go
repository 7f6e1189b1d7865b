package localapi

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
)

// Client talks to an agent's local API.
type Client struct {
	socket string
	http   *http.Client
}

// NewClient returns a client for the agent whose state directory is stateDir.
func NewClient(stateDir string) *Client {
	socket := filepath.Join(stateDir, SocketName)
	return &Client{socket: socket, http: &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
	}}}
}

// Status fetches the agent's status.
func (c *Client) Status(ctx context.Context) (*Status, error) {
	var st Status
	return &st, c.get(ctx, "/v1/status", &st)
}

// Allocations fetches the addresses the agent's allocator gave LoadBalancer Services.
func (c *Client) Allocations(ctx context.Context) ([]Allocation, error) {
	var v []Allocation
	return v, c.get(ctx, "/v1/allocations", &v)
}

// L2 fetches the agent's view of the L2 announcements: who owns which address.
func (c *Client) L2(ctx context.Context) (*L2Status, error) {
	var v L2Status
	return &v, c.get(ctx, "/v1/l2/owners", &v)
}

// BGPPeers fetches the agent's BGP sessions and what it announces on each.
func (c *Client) BGPPeers(ctx context.Context) ([]BGPPeer, error) {
	var v []BGPPeer
	return v, c.get(ctx, "/v1/bgp/peers", &v)
}

// Services fetches what the agent's datapath has programmed.
func (c *Client) Services(ctx context.Context) ([]ServiceStatus, error) {
	var v []ServiceStatus
	return v, c.get(ctx, "/v1/services", &v)
}

// Conntrack fetches up to limit conntrack entries.
func (c *Client) Conntrack(ctx context.Context, limit int) ([]ConntrackEntry, error) {
	var v []ConntrackEntry
	return v, c.get(ctx, fmt.Sprintf("/v1/conntrack?limit=%d", limit), &v)
}

func (c *Client) get(ctx context.Context, path string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://sluice"+path, nil)
	if err != nil {
		return err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("agent at %s: %w (is sluice-agent running with this --state-dir?)", c.socket, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("agent at %s: %s: %s", c.socket, resp.Status, strings.TrimSpace(string(body)))
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		return fmt.Errorf("agent at %s: bad answer to %s: %w", c.socket, path, err)
	}
	return nil
}
