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
