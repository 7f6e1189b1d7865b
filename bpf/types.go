package bpf

import (
	"fmt"
	"net/netip"
	"time"
)

// The Go view of the maps' keys and values (lib/structs.h). Addresses are
// netip.Addr (stored as 16 bytes, IPv4 as IPv4-mapped IPv6); ports are host
// order here and network order in the maps.

// Scope is where a frontend is reachable from.
type Scope uint8

const (
	ScopeExternal Scope = 0 // from the external devices: LoadBalancer IPs, externalIPs
	ScopeInternal Scope = 1 // from inside the cluster (ClusterIP): the socket programs
)

// IP protocol numbers of frontends and flows.
const (
	ProtoTCP uint8 = 6
	ProtoUDP uint8 = 17
)

// FrontendKey identifies a frontend: one Service port on one address.
type FrontendKey struct {
	Addr  netip.Addr
	Port  uint16
	Proto uint8 // ProtoTCP, ProtoUDP
	Scope Scope
}

// FrontendFlags are per-frontend switches.
type FrontendFlags uint32

const (
	// FrontendRandom selects backends at random instead of with Maglev.
	FrontendRandom FrontendFlags = 1 << 0
	// FrontendSourceRanges admits new flows only from the service's source ranges (see
	// Datapath.PutSourceRange).
	FrontendSourceRanges FrontendFlags = 1 << 1
	// FrontendDSR sends new external flows to remote backends over DSR (a tunnel to the
	// backend's node, which answers the client itself) instead of SNAT.
	FrontendDSR FrontendFlags = 1 << 2
)

// Frontend is what a frontend maps to.
type Frontend struct {
	// ServiceID keys conntrack and affinity: flows of one ServiceID keep
	// their backends while the frontend is updated.
	ServiceID uint32
	// The frontend's Maglev table is maglev[MaglevBase : MaglevBase+MaglevSize].
	// MaglevSize 0: no usable backend, the datapath rejects.
	MaglevBase, MaglevSize uint32
	// AffinityTimeout is the ClientIP session affinity timeout, whole
	// seconds; 0: no affinity.
	AffinityTimeout time.Duration
	Flags           FrontendFlags
}

// BackendState says whether a backend takes new flows.
type BackendState uint8

const (
	BackendActive      BackendState = 0
	BackendTerminating BackendState = 1 // keeps its flows, takes no new ones (keep it out of Maglev)
)

// Backend is a backend address by id (ids are the syncer's; 0 is never used).
type Backend struct {
	Addr  netip.Addr
	Port  uint16
	State BackendState
	// Remote backends are on another node: new flows to them from outside leave SNATed to
	// this node's address (Datapath.SetSNATAddrs), so that their replies come back through
	// it. Socket-level load balancing connects to them directly.
	Remote bool
	// Node is a remote backend's node address, the tunnel endpoint of DSR (invalid: unknown,
	// SNAT then).
	Node netip.Addr
}

// ConntrackState is the TCP (or UDP) state of a flow.
type ConntrackState uint8

const (
	StateNone        = ConntrackState(datapathCtStateCT_STATE_NONE)
	StateSynSent     = ConntrackState(datapathCtStateCT_STATE_SYN_SENT)
	StateEstablished = ConntrackState(datapathCtStateCT_STATE_ESTABLISHED)
	StateFinWait     = ConntrackState(datapathCtStateCT_STATE_FIN_WAIT)
	StateClose       = ConntrackState(datapathCtStateCT_STATE_CLOSE)
	StateUnreplied   = ConntrackState(datapathCtStateCT_STATE_UNREPLIED)
)

func (s ConntrackState) String() string {
	switch s {
	case StateNone:
		return "none"
	case StateSynSent:
		return "syn_sent"
	case StateEstablished:
		return "established"
	case StateFinWait:
		return "fin_wait"
	case StateClose:
		return "close"
	case StateUnreplied:
		return "unreplied"
	}
	return fmt.Sprintf("state_%d", uint8(s))
}

// ConntrackKey is one direction of a flow, as on the wire.
type ConntrackKey struct {
	Src, Dst netip.AddrPort
	Proto    uint8
	Reply    bool // backend -> client; false: client -> frontend
}

// ConntrackEntry is one conntrack entry. For the original direction NAT is
// the backend, for the reply direction the frontend.
type ConntrackEntry struct {
	LastSeen, Created time.Duration // CLOCK_MONOTONIC (bpf_ktime_get_ns), see MonotonicNow
	BackendID         uint32
	ServiceID         uint32
	NAT               netip.AddrPort
	State             ConntrackState
	Packets, Bytes    uint64
	// SNATPort, on an original entry, is the source port the flow leaves with towards a
	// remote backend (0: not SNATed); its source address is the node's (SetSNATAddrs).
	SNATPort uint16
}

// Timeouts are the conntrack timeouts by state, like the kernel's
// nf_conntrack_*_timeout sysctls. Whole seconds.
type Timeouts struct {
	TCPSynSent     time.Duration
	TCPEstablished time.Duration
	TCPFinWait     time.Duration
	TCPClose       time.Duration
	UDPUnreplied   time.Duration // also other protocols
	UDPReplied     time.Duration
}

// DefaultTimeouts are the kernel's defaults.
var DefaultTimeouts = Timeouts{
	TCPSynSent:     120 * time.Second,
	TCPEstablished: 5 * 24 * time.Hour,
	TCPFinWait:     120 * time.Second,
	TCPClose:       10 * time.Second,
	UDPUnreplied:   30 * time.Second,
	UDPReplied:     120 * time.Second,
}

func (t Timeouts) withDefaults() Timeouts {
	d := DefaultTimeouts
	for _, f := range []struct{ v, def *time.Duration }{
		{&t.TCPSynSent, &d.TCPSynSent}, {&t.TCPEstablished, &d.TCPEstablished},
		{&t.TCPFinWait, &d.TCPFinWait}, {&t.TCPClose, &d.TCPClose},
		{&t.UDPUnreplied, &d.UDPUnreplied}, {&t.UDPReplied, &d.UDPReplied},
	} {
		if *f.v == 0 {
			*f.v = *f.def
		}
	}
	return t
}

// Timeout returns the timeout of an entry of protocol proto in state s, as
// the datapath applies it.
func (t Timeouts) Timeout(proto uint8, s ConntrackState) time.Duration {
	t = t.withDefaults()
	if proto == ProtoTCP {
		switch s {
		case StateEstablished:
			return t.TCPEstablished
		case StateFinWait:
			return t.TCPFinWait
		case StateClose:
			return t.TCPClose
		}
		return t.TCPSynSent
	}
	if s == StateEstablished {
		return t.UDPReplied
	}
	return t.UDPUnreplied
}

// Expired reports whether the entry (of protocol proto) is expired at the
// monotonic time now, as the datapath decides it.
func (t Timeouts) Expired(proto uint8, e ConntrackEntry, now time.Duration) bool {
	return now-e.LastSeen > t.Timeout(proto, e.State)
}

// EventType is the kind of a datapath event.
type EventType uint32

const (
	EventNoBackend = EventType(datapathEventTypeEVENT_NO_BACKEND) // rejected: no usable backend
	EventMalformed = EventType(datapathEventTypeEVENT_MALFORMED)  // malformed packet aimed at a frontend
	EventCTClash   = EventType(datapathEventTypeEVENT_CT_CLASH)   // new flow dropped: its reply tuple is a live flow's to another frontend
	// EventSourceDenied: new flow dropped, its client is outside the frontend's source ranges.
	EventSourceDenied = EventType(datapathEventTypeEVENT_SOURCE_DENIED)
)

// String returns the event type's name in snake_case, suitable as a metric label.
func (t EventType) String() string {
	switch t {
	case EventNoBackend:
		return "no_backend"
	case EventMalformed:
		return "malformed"
	case EventCTClash:
		return "ct_clash"
	case EventSourceDenied:
		return "source_denied"
	}
	return fmt.Sprintf("event_%d", uint32(t))
}

// Event is one record from the events ring buffer.
type Event struct {
	Time      time.Duration // CLOCK_MONOTONIC
	Type      EventType
	ServiceID uint32
	Ifindex   uint32
	Len       uint32 // frame length
	Src, Dst  netip.AddrPort
	Proto     uint8
	Counter   Counter // the outcome counted for the packet
}

func seconds(d time.Duration) uint32 { return uint32(d / time.Second) }

// addr16 is a as 16 bytes (IPv4 as IPv4-mapped IPv6).
func addr16(a netip.Addr) [16]uint8 { return a.As16() }

// addrFrom16 is the inverse of addr16: IPv4-mapped addresses come back as IPv4.
func addrFrom16(b [16]uint8) netip.Addr { return netip.AddrFrom16(b).Unmap() }

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// SockAffinityNetns marks the ClientIP affinity entries of the socket programs: their service
// id is the service's with this bit set, their client the network namespace's cookie (one per
// pod) in the address's first 8 bytes. Service ids stay below it.
const SockAffinityNetns = 1 << 31

// PortRange is an inclusive range of ports; the zero value is empty.
type PortRange struct{ First, Last uint16 }

func (r PortRange) String() string { return fmt.Sprintf("%d-%d", r.First, r.Last) }
