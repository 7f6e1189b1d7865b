package bgp

import (
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sluice-lb/sluice/api/v1alpha1"
)

// StateNames are the session states as the BGPPeer status spells them (RFC 4271's names),
// by the speaker's.
var StateNames = map[string]string{
	"idle": "Idle", "connect": "Connect", "active": "Active", "opensent": "OpenSent",
	"openconfirm": "OpenConfirm", "established": "Established",
}

// Sessions turns the speaker's status into each BGPPeer's session entry for one node, and
// remembers since when each session is in its state. Not safe for concurrent use.
type Sessions struct {
	node  string
	since map[string]stateSince // by peer name
}

type stateSince struct {
	state string
	since time.Time
}

// NewSessions returns a Sessions for node.
func NewSessions(node string) *Sessions {
	return &Sessions{node: node, since: map[string]stateSince{}}
}

// Of returns, by peer name, the node's session with each peer in sts, as of now. Since is
// when the state was first seen (for an established session: when it came up, from its
// uptime), kept while the state holds, so an unchanged session gives an equal entry.
func (s *Sessions) Of(now time.Time, sts []PeerStatus) map[string]v1alpha1.PeerSession {
	out := make(map[string]v1alpha1.PeerSession, len(sts))
	seen := make(map[string]bool, len(sts))
	for _, st := range sts {
		state, ok := StateNames[st.State]
		if !ok {
			state = "Unknown"
		}
		prev, known := s.since[st.Name]
		if !known || prev.state != state {
			since := now
			if state == "Established" {
				since = now.Add(-st.Uptime)
			}
			prev = stateSince{state: state, since: since.Truncate(time.Second)}
			s.since[st.Name] = prev
		}
		seen[st.Name] = true
		since := metav1.NewTime(prev.since)
		out[st.Name] = v1alpha1.PeerSession{Node: s.node, State: state, Since: &since, PrefixesSent: int32(min(st.Sent, 1<<31-1)), Message: st.LastError}
	}
	for name := range s.since {
		if !seen[name] {
			delete(s.since, name)
		}
	}
	return out
}
