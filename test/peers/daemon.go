package peers

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sluice-lb/sluice/test/lab"
)

// SessionState is a BGP finite-state-machine state, named as in RFC 4271.
type SessionState string

// The BGP session states. Daemons' own names are mapped onto these; an unknown name is
// kept as the daemon spelled it.
const (
	Idle        SessionState = "Idle"
	Connect     SessionState = "Connect"
	Active      SessionState = "Active"
	OpenSent    SessionState = "OpenSent"
	OpenConfirm SessionState = "OpenConfirm"
	Established SessionState = "Established"
)

// Session is the state of the session with one neighbor.
type Session struct {
	Neighbor netip.Addr
	ASN      uint32 // the neighbor's
	State    SessionState
	RemoteID netip.Addr // the neighbor's router ID; invalid until it is known
	// PrefixesReceived counts the prefixes accepted from the neighbor, over all families.
	PrefixesReceived int
	// Up is how long the session has been established (FRR only; 0 otherwise).
	Up time.Duration
}

// Route is one path of the daemon's BGP table.
type Route struct {
	Prefix   netip.Prefix
	Peer     netip.Addr   // the neighbor it was learned from; invalid if originated here
	NextHops []netip.Addr // the BGP next hops; empty if originated here
	ASPath   []uint32     // AS_SEQUENCE and AS_SET members in order
	Best     bool
}

// Daemon is what the three daemons have in common.
type Daemon interface {
	Sessions(ctx context.Context) ([]Session, error)
	Routes(ctx context.Context) ([]Route, error)
	// Log returns the tail of the daemon's output.
	Log() string
	Stop() error
}

// DefaultWait bounds WaitEstablished, WaitRoute and WaitWithdrawn when ctx has no deadline.
const DefaultWait = 60 * time.Second

// pollInterval is how often the Wait methods read the daemon's state.
const pollInterval = 200 * time.Millisecond

// daemon is the part of FRR, BIRD and GoBGP that runs the process and polls state.
type daemon struct {
	kind  string // "frr", "bird", "gobgpd": for messages
	netns string
	dir   string
	proc  *lab.Process
	state stateReader // the FRR, BIRD or GoBGP that embeds this
}

type stateReader interface {
	Sessions(ctx context.Context) ([]Session, error)
	Routes(ctx context.Context) ([]Route, error)
}

// PID is the daemon's process ID.
func (d *daemon) PID() int { return d.proc.PID }

// Dir is the daemon's runtime directory (configuration, sockets, PID file).
func (d *daemon) Dir() string { return d.dir }

// Log returns the tail of the daemon's stdout and stderr.
func (d *daemon) Log() string { return d.proc.Output() }

// Stop kills the daemon by PID: SIGTERM, then SIGKILL after 5 s. It removes nothing.
func (d *daemon) Stop() error {
	if err := d.proc.Stop(lab.StopGrace); err != nil {
		return fmt.Errorf("%s: %w", d.kind, err)
	}
	return nil
}

// WaitEstablished polls until the session with neighbor is Established and returns it.
func (d *daemon) WaitEstablished(ctx context.Context, neighbor netip.Addr) (Session, error) {
	var last Session
	err := d.poll(ctx, fmt.Sprintf("session with %v Established", neighbor), func(ctx context.Context) (bool, string, error) {
		sessions, err := d.state.Sessions(ctx)
		if err != nil {
			return false, "", err
		}
		i := slices.IndexFunc(sessions, func(s Session) bool { return s.Neighbor == neighbor })
		if i < 0 {
			return false, fmt.Sprintf("no neighbor %v among %d", neighbor, len(sessions)), nil
		}
		last = sessions[i]
		return last.State == Established, fmt.Sprintf("state %s", last.State), nil
	})
	return last, err
}

// WaitRoute polls until the BGP table has a path for prefix selected as best, and returns
// it. A daemon lists a path a moment before it has run best-path selection over it (FRR
// does), so waiting for the path alone would race with that.
func (d *daemon) WaitRoute(ctx context.Context, prefix netip.Prefix) (Route, error) {
	var found Route
	err := d.poll(ctx, fmt.Sprintf("best route %v", prefix), func(ctx context.Context) (bool, string, error) {
		routes, err := d.state.Routes(ctx)
		if err != nil {
			return false, "", err
		}
		paths := RoutesFor(routes, prefix)
		if len(paths) == 0 {
			return false, fmt.Sprintf("%d routes, none for %v", len(routes), prefix), nil
		}
		for _, r := range paths {
			if r.Best {
				found = r
				return true, "", nil
			}
		}
		found = paths[0]
		return false, fmt.Sprintf("%d paths for %v, none selected best yet: %+v", len(paths), prefix, paths), nil
	})
	return found, err
}

// WaitWithdrawn polls until the BGP table has no path for prefix.
func (d *daemon) WaitWithdrawn(ctx context.Context, prefix netip.Prefix) error {
	return d.poll(ctx, fmt.Sprintf("route %v withdrawn", prefix), func(ctx context.Context) (bool, string, error) {
		routes, err := d.state.Routes(ctx)
		if err != nil {
			return false, "", err
		}
		n := len(RoutesFor(routes, prefix))
		return n == 0, fmt.Sprintf("%d paths left", n), nil
	})
}

// RoutesFor returns the paths for prefix.
func RoutesFor(routes []Route, prefix netip.Prefix) []Route {
	var out []Route
	for _, r := range routes {
		if r.Prefix == prefix {
			out = append(out, r)
		}
	}
	return out
}

// poll calls check until it reports done, ctx ends, or the daemon exits. Errors from
// check (a daemon still starting, say) are retried and reported if time runs out.
func (d *daemon) poll(ctx context.Context, what string, check func(context.Context) (bool, string, error)) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultWait)
		defer cancel()
	}
	ticker := time.NewTicker(pollInterval)
	defer ticker.Stop()
	var status string
	for {
		done, s, err := check(ctx)
		switch {
		case done:
			return nil
		case err != nil:
			status = err.Error()
		default:
			status = s
		}
		select {
		case <-ticker.C:
		case <-d.proc.Done():
			return fmt.Errorf("%s in netns %s: waiting for %s: daemon exited (%v); last: %s; log:\n%s", d.kind, d.netns, what, d.proc.Err(), status, lastLines(d.Log(), 30))
		case <-ctx.Done():
			return fmt.Errorf("%s in netns %s: waiting for %s: %w; last: %s; log:\n%s", d.kind, d.netns, what, ctx.Err(), status, lastLines(d.Log(), 30))
		}
	}
}

// startDaemon runs argv in netns, then waits until ready succeeds; on failure it stops the
// process and returns an error with its output.
func startDaemon(ctx context.Context, kind, netns, dir string, argv []string, ready func(context.Context) error) (*daemon, error) {
	proc, err := lab.StartIn(netns, argv[0], argv[1:]...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", kind, err)
	}
	d := &daemon{kind: kind, netns: netns, dir: dir, proc: proc}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 15*time.Second)
		defer cancel()
	}
	err = d.poll(ctx, "control interface", func(ctx context.Context) (bool, string, error) {
		err := ready(ctx)
		return err == nil, "", err
	})
	if err != nil {
		return nil, errors.Join(fmt.Errorf("%s: starting: %w", kind, err), d.Stop())
	}
	return d, nil
}

// StartForTest starts a daemon in t.TempDir for a test (failing it on error) and stops
// it when the test ends, logging the daemon's output if the test failed.
//
//	frr := peers.StartForTest(t, peers.StartFRR, ns.Name, cfg)
func StartForTest[D Daemon](t testing.TB, start func(ctx context.Context, netns, dir string, cfg Config) (D, error), netns string, cfg Config) D {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	d, err := start(ctx, netns, t.TempDir(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("%T in netns %s, output:\n%s", d, netns, lastLines(d.Log(), 100))
		}
		if err := d.Stop(); err != nil {
			t.Error(err)
		}
	})
	return d
}

// writeConfig writes a configuration file into dir and checks that a control socket
// path in dir fits a Unix socket address.
func writeConfig(dir, name, content, socket string) (string, error) {
	if socket != "" && len(dir)+1+len(socket) > 107 {
		return "", fmt.Errorf("runtime dir %s: socket path %s/%s is longer than 107 bytes", dir, dir, socket)
	}
	path := dir + "/" + name
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		return "", err
	}
	return path, nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
