package localapi

import (
	"time"

	"github.com/sluice-lb/sluice/internal/model"
)

// SocketName is the file name of the socket in the agent's state directory.
const SocketName = "sluice.sock"

// Status is what the agent understood of its input: GET /v1/status.
type Status struct {
	Version string `json:"version"`
	Node    string `json:"node"`
	// Mode is "standalone" (Source is the config path) or "kubernetes".
	Mode   string `json:"mode"`
	Source string `json:"source"`
	// Synced is true once the source delivered everything it had at start.
	Synced  bool      `json:"synced"`
	BuiltAt time.Time `json:"builtAt"`
	// Objects counts the input objects by kind.
	Objects map[string]int `json:"objects"`
	Pools   []PoolStatus   `json:"pools"`
	Peers   []PeerStatus   `json:"peers"`
	// Services counts Services: all, and those of type LoadBalancer that Sluice serves.
	Services     int `json:"services"`
	ServicesOurs int `json:"servicesOurs"`
	BGPAdverts   int `json:"bgpAdvertisements"`
	L2Adverts    int `json:"l2Advertisements"`
	// InputProblems are documents that could not be read at all.
	InputProblems []string `json:"inputProblems"`
	// Problems are objects (or parts) that were rejected or ignored.
	Problems []model.Problem `json:"problems"`
	// Features says which subsystems run on this build and which are not there yet.
	Features map[string]string `json:"features"`
}

// PoolStatus is one pool as understood.
type PoolStatus struct {
	Name       string   `json:"name"`
	Ranges     []string `json:"ranges"`
	AutoAssign bool     `json:"autoAssign"`
	Disabled   bool     `json:"disabled"`
	Size       string   `json:"size"`
}

// PeerStatus is one BGP peer as understood.
type PeerStatus struct {
	Name     string `json:"name"`
	Address  string `json:"address"`
	ASN      uint32 `json:"asn"`
	LocalASN uint32 `json:"localASN"`
}

// ServiceStatus is one programmed frontend with its backends, read from the datapath's maps:
// GET /v1/services.
type ServiceStatus struct {
	Service   string          `json:"service"` // namespace/name:port (family)
	Frontend  string          `json:"frontend"`
	ServiceID uint32          `json:"serviceID"`
	Slots     uint32          `json:"slots"` // Maglev table size; 0: no usable backend (connections are refused)
	Affinity  string          `json:"affinity,omitempty"`
	Algorithm string          `json:"algorithm"`
	Backends  []BackendStatus `json:"backends"`
}

// Allocation is the LB-IPAM outcome for one LoadBalancer Service of ours:
// GET /v1/allocations.
type Allocation struct {
	Service string   `json:"service"` // namespace/name
	IPs     []string `json:"ips"`
	Pools   []string `json:"pools"` // the pool of each address ("" for one kept outside every pool)
	Ready   bool     `json:"ready"` // every family the Service needs has an address
	Reason  string   `json:"reason"`
	Message string   `json:"message"`
}

// BGPPeer is one BGP session of the agent: GET /v1/bgp/peers.
type BGPPeer struct {
	Name     string `json:"name"`
	Address  string `json:"address"`
	ASN      uint32 `json:"asn"`
	RouterID string `json:"routerID"`
	State    string `json:"state"` // idle, connect, active, opensent, openconfirm, established
	Uptime   string `json:"uptime,omitempty"`
	Sent     int    `json:"prefixesSent"`
	// LastError is the last thing that went wrong with the session (empty once it is up).
	LastError string   `json:"lastError,omitempty"`
	Routes    []string `json:"routes"` // the paths announced to it: prefix and attributes
}

// L2Owner is a Service address answered for over ARP/NDP: GET /v1/l2/owners. Every agent
// computes every owner, so any agent lists them all.
type L2Owner struct {
	Address string `json:"address"`
	Service string `json:"service"`
	// Owner is the node that answers for the address ("" while none may: no live node).
	Owner string `json:"owner"`
	// Candidates are the nodes that may answer for it, alive or not.
	Candidates []string `json:"candidates"`
	// Interfaces are where this agent answers, when it is the owner.
	Interfaces []string `json:"interfaces,omitempty"`
}

// L2Status is this agent's view of the L2 announcements: GET /v1/l2/owners.
type L2Status struct {
	Node string `json:"node"`
	// Alive are the nodes whose agents this one hears (itself included); empty while it
	// doubts its view (just started, or back from a stall).
	Alive  []string  `json:"alive"`
	Owners []L2Owner `json:"owners"`
}

// BackendStatus is a backend of a programmed service.
type BackendStatus struct {
	ID      uint32 `json:"id"`
	Address string `json:"address"`
	State   string `json:"state"`
	// Slots is the backend's share of the service's Maglev table (terminating: 0).
	Slots int `json:"slots"`
}

// ConntrackEntry is one flow direction of the datapath's connection tracking:
// GET /v1/conntrack?limit=N.
type ConntrackEntry struct {
	Proto     string `json:"proto"`
	Direction string `json:"direction"` // original (client → frontend) or reply (backend → client)
	Src       string `json:"src"`
	Dst       string `json:"dst"`
	NAT       string `json:"nat"` // original: the backend; reply: the frontend
	State     string `json:"state"`
	BackendID uint32 `json:"backendID"`
	ServiceID uint32 `json:"serviceID"`
	Age       string `json:"age"`
	Idle      string `json:"idle"`
	Packets   uint64 `json:"packets"`
	Bytes     uint64 `json:"bytes"`
}

// MaxConntrackEntries bounds one conntrack answer.
const MaxConntrackEntries = 100000

// ErrNoDatapath is answered by an agent that runs no datapath (no --devices).
const ErrNoDatapath = "this agent runs no datapath (no --devices)"

// ErrNoAllocator is the answer to /v1/allocations of an agent that allocates nothing: in
// Kubernetes mode the IPAM controller writes the addresses into the Services' status.
const ErrNoAllocator = "this agent allocates no addresses (Kubernetes mode: see the Services' status)"
