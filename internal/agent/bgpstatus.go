package agent

import (
	"context"
	"encoding/json"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sluice-lb/sluice/api/v1alpha1"
	"github.com/sluice-lb/sluice/bgp"
)

// +kubebuilder:rbac:groups=sluice.dev,resources=bgppeers,verbs=get;list;watch
// +kubebuilder:rbac:groups=sluice.dev,resources=bgppeers/status,verbs=patch

const (
	// bgpStatusInterval is how often the agent compares its sessions with what it wrote
	// into the BGPPeers' status: a state change shows there within about this long.
	bgpStatusInterval = time.Second
	// bgpCountInterval is how often, at most, a change in the number of prefixes sent alone
	// is written, so that Service churn does not turn into API writes.
	bgpCountInterval = 30 * time.Second
	// bgpRefreshInterval is how often an unchanged entry is applied again (an unchanged
	// apply writes nothing): a BGPPeer deleted and created again, or its status wiped, gets
	// the node's entry back within it.
	bgpRefreshInterval = 5 * time.Minute
)

// writtenSession is a session entry the agent applied, and when.
type writtenSession struct {
	s  v1alpha1.PeerSession
	at time.Time
}

// writeBGPStatus keeps this node's entry in each BGPPeer's status.sessions (Kubernetes
// mode) in line with the speaker's sessions, until ctx ends; then it marks them Idle. Each
// agent applies only its own entry (server-side apply, field manager sluice-agent/<node>),
// so agents never overwrite one another; an entry the node has no session for any more
// (the peer's nodeSelector, this node leaving) is removed, also one left by an earlier run.
// API errors are logged and retried; they never stop the agent.
func (a *Agent) writeBGPStatus(ctx context.Context) error {
	scheme := runtime.NewScheme()
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		return err
	}
	c, err := client.New(a.cfg.Rest, client.Options{Scheme: scheme})
	if err != nil {
		return err
	}
	w := &bgpStatusWriter{c: c, a: a, owner: "sluice-agent/" + a.cfg.NodeName, written: map[string]writtenSession{}, failed: map[string]string{}}
	sessions := bgp.NewSessions(a.cfg.NodeName)
	adopted := false
	tick := time.NewTicker(bgpStatusInterval)
	defer tick.Stop()
	for {
		if !adopted {
			adopted = w.adopt(ctx)
		}
		now := time.Now()
		want := sessions.Of(now, a.speaker.Status(ctx))
		for name, s := range want {
			prev, ok := w.written[name]
			if ok && prev.s.State == s.State && prev.s.Message == s.Message && prev.s.Since.Equal(s.Since) &&
				(prev.s.PrefixesSent == s.PrefixesSent || now.Sub(prev.at) < bgpCountInterval) && now.Sub(prev.at) < bgpRefreshInterval {
				continue
			}
			w.apply(ctx, name, &s)
		}
		for name := range w.written {
			if _, ok := want[name]; !ok {
				w.apply(ctx, name, nil)
			}
		}
		select {
		case <-ctx.Done():
			w.stopped()
			return nil
		case <-tick.C:
		}
	}
}

type bgpStatusWriter struct {
	c       client.Client
	a       *Agent
	owner   string
	written map[string]writtenSession // by peer name
	failed  map[string]string         // the last error logged, by peer name
}

// adopt finds the entries an earlier run of this node's agent left, so that those without a
// session now are removed. It reports whether it could list the BGPPeers.
func (w *bgpStatusWriter) adopt(ctx context.Context) bool {
	var peers v1alpha1.BGPPeerList
	if err := w.c.List(ctx, &peers); err != nil {
		w.logOnce("", "listing BGPPeers to find this node's old session entries", err)
		return false
	}
	for _, p := range peers.Items {
		for _, s := range p.Status.Sessions {
			if _, ok := w.written[p.Name]; !ok && s.Node == w.a.cfg.NodeName {
				w.written[p.Name] = writtenSession{s: s}
			}
		}
	}
	return true
}

// apply writes the node's entry s into peer's status (nil: removes it).
func (w *bgpStatusWriter) apply(ctx context.Context, peer string, s *v1alpha1.PeerSession) {
	sessions := []v1alpha1.PeerSession{}
	if s != nil {
		sessions = append(sessions, *s)
	}
	body, err := json.Marshal(map[string]any{
		"apiVersion": v1alpha1.GroupVersion.String(), "kind": "BGPPeer",
		"metadata": map[string]any{"name": peer},
		"status":   map[string]any{"sessions": sessions},
	})
	if err != nil {
		w.logOnce(peer, "encoding the session status", err)
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	obj := &v1alpha1.BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: peer}}
	err = w.c.Status().Patch(ctx, obj, client.RawPatch(types.ApplyPatchType, body), client.FieldOwner(w.owner), client.ForceOwnership)
	switch {
	case apierrors.IsNotFound(err):
		// The BGPPeer is gone (its sessions follow at the next model build): nothing to write.
		delete(w.written, peer)
	case err != nil:
		w.logOnce(peer, "writing this node's session into the BGPPeer's status", err)
	case s == nil:
		delete(w.written, peer)
		delete(w.failed, peer)
	default:
		w.written[peer] = writtenSession{s: *s, at: time.Now()}
		delete(w.failed, peer)
	}
}

// stopped marks the node's sessions Idle as the agent stops: a router with graceful restart
// keeps the routes meanwhile, but the sessions are down.
func (w *bgpStatusWriter) stopped() {
	now := metav1.NewTime(time.Now().Truncate(time.Second))
	for name, prev := range w.written {
		s := prev.s
		s.State, s.Since, s.PrefixesSent = "Idle", &now, 0
		s.Message = "the agent stopped"
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second) // each peer its own
		w.apply(ctx, name, &s)
		cancel()
	}
}

// logOnce logs err for peer unless it is the error last logged for it.
func (w *bgpStatusWriter) logOnce(peer, what string, err error) {
	if w.failed[peer] == err.Error() {
		return
	}
	w.failed[peer] = err.Error()
	w.a.log.Warn("bgp status: "+what, "peer", peer, "error", err)
}
