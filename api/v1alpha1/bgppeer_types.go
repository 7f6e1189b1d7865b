package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// SecretReference names a Secret; its "password" key holds the TCP-MD5 password.
type SecretReference struct {
	// Name of the Secret.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
	// Namespace of the Secret; the agent's own namespace when empty.
	// +optional
	// +kubebuilder:validation:MaxLength=63
	Namespace string `json:"namespace,omitempty"`
}

// GracefulRestart configures BGP graceful restart (RFC 4724) for a session.
type GracefulRestart struct {
	// Enabled turns graceful restart on.
	Enabled bool `json:"enabled"`
	// RestartTime is how long the peer keeps our routes while we restart (default 120s,
	// at most 4095s).
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="!self.matches('^([0-9]+([.][0-9]+)?(ms|s|m|h))+$') || (duration(self) >= duration('1s') && duration(self) <= duration('4095s'))",message="restartTime must be between 1s and 4095s"
	RestartTime *metav1.Duration `json:"restartTime,omitempty"`
}

// Family is an address family and sub-address family a session carries.
// +kubebuilder:validation:Enum=ipv4-unicast;ipv6-unicast
type Family string

// Families a session can carry.
const (
	FamilyIPv4Unicast Family = "ipv4-unicast"
	FamilyIPv6Unicast Family = "ipv6-unicast"
)

// BGPPeerSpec is the desired state of a BGPPeer.
//
// +kubebuilder:validation:XValidation:rule="!has(self.holdTime) || !self.holdTime.matches('^([0-9]+([.][0-9]+)?(ms|s|m|h))+$') || duration(self.holdTime) == duration('0s') || duration(self.holdTime) >= duration('3s')",message="holdTime must be 0 (no keepalives) or at least 3s"
// +kubebuilder:validation:XValidation:rule="!has(self.holdTime) || !self.holdTime.matches('^([0-9]+([.][0-9]+)?(ms|s|m|h))+$') || duration(self.holdTime) <= duration('65535s')",message="holdTime must be at most 65535s"
// +kubebuilder:validation:XValidation:rule="!has(self.keepaliveTime) || !has(self.holdTime) || !self.keepaliveTime.matches('^([0-9]+([.][0-9]+)?(ms|s|m|h))+$') || !self.holdTime.matches('^([0-9]+([.][0-9]+)?(ms|s|m|h))+$') || duration(self.holdTime) == duration('0s') || duration(self.keepaliveTime) < duration(self.holdTime)",message="keepaliveTime must be less than holdTime"
// +kubebuilder:validation:XValidation:rule="!has(self.keepaliveTime) || has(self.holdTime) || !self.keepaliveTime.matches('^([0-9]+([.][0-9]+)?(ms|s|m|h))+$') || duration(self.keepaliveTime) < duration('90s')",message="keepaliveTime must be less than the default holdTime (90s)"
type BGPPeerSpec struct {
	// PeerAddress is the address of the router to peer with.
	// +kubebuilder:validation:MaxLength=45
	// +kubebuilder:validation:XValidation:rule="isIP(self)",message="peerAddress must be an IP address"
	PeerAddress string `json:"peerAddress"`
	// PeerASN is the router's AS number.
	// +kubebuilder:validation:XValidation:rule="self >= 1 && self <= 4294967295",message="peerASN must be between 1 and 4294967295"
	PeerASN int64 `json:"peerASN"`
	// LocalASN is our AS number on this session.
	// +kubebuilder:validation:XValidation:rule="self >= 1 && self <= 4294967295",message="localASN must be between 1 and 4294967295"
	LocalASN int64 `json:"localASN"`
	// PeerPort is the router's TCP port (default 179).
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	PeerPort int32 `json:"peerPort,omitempty"`
	// SourceAddress is the local address the session is opened from.
	// +optional
	// +kubebuilder:validation:MaxLength=45
	// +kubebuilder:validation:XValidation:rule="isIP(self)",message="sourceAddress must be an IP address"
	SourceAddress string `json:"sourceAddress,omitempty"`
	// RouterID overrides the BGP router ID (an IPv4 address); by default the node's first
	// IPv4 address.
	// +optional
	// +kubebuilder:validation:MaxLength=15
	// +kubebuilder:validation:XValidation:rule="isIP(self) && ip(self).family() == 4",message="routerID must be an IPv4 address"
	RouterID string `json:"routerID,omitempty"`
	// HoldTime is the BGP hold time: 0, or 3s to 65535s (default 90s).
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$`
	HoldTime *metav1.Duration `json:"holdTime,omitempty"`
	// KeepaliveTime is the interval between keepalives, less than HoldTime (default a third
	// of it).
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$`
	KeepaliveTime *metav1.Duration `json:"keepaliveTime,omitempty"`
	// ConnectRetryTime is the pause between connection attempts (default 120s).
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="!self.matches('^([0-9]+([.][0-9]+)?(ms|s|m|h))+$') || duration(self) >= duration('1s')",message="connectRetryTime must be at least 1s"
	ConnectRetryTime *metav1.Duration `json:"connectRetryTime,omitempty"`
	// EBGPMultihop is the TTL of the session's packets for a peer that is not directly
	// connected (1, the default, means directly connected).
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=255
	EBGPMultihop int32 `json:"ebgpMultihop,omitempty"`
	// Passive makes the nodes wait for the router to open the session instead of opening it:
	// the agent listens on TCP port 179 of sourceAddress (or of every address of the peer's
	// family) and accepts only peerAddress. Two passive peers of one family need different
	// sourceAddresses.
	// +optional
	Passive bool `json:"passive,omitempty"`
	// PasswordSecretRef names a Secret whose "password" key is the TCP-MD5 password.
	// +optional
	PasswordSecretRef *SecretReference `json:"passwordSecretRef,omitempty"`
	// GracefulRestart keeps routes at the peer while the agent restarts.
	// +optional
	GracefulRestart *GracefulRestart `json:"gracefulRestart,omitempty"`
	// Families are the address families the session carries (default: the family of
	// peerAddress only; both need a peer that accepts next hops of the other family).
	// +optional
	// +kubebuilder:validation:MaxItems=2
	// +listType=set
	Families []Family `json:"families,omitempty"`
	// NodeSelector picks the nodes that peer with this router (default: all).
	// +optional
	NodeSelector *metav1.LabelSelector `json:"nodeSelector,omitempty"`
}

// PeerSession is the state of the session from one node.
type PeerSession struct {
	// Node is the node the session runs on.
	Node string `json:"node"`
	// State is the BGP FSM state: Idle, Connect, Active, OpenSent, OpenConfirm, Established.
	State string `json:"state"`
	// Since is when the session entered State.
	// +optional
	Since *metav1.Time `json:"since,omitempty"`
	// PrefixesSent is how many prefixes the node advertises on the session.
	// +optional
	PrefixesSent int32 `json:"prefixesSent,omitempty"`
	// Message explains a failure (a notification received, a refused connection).
	// +optional
	Message string `json:"message,omitempty"`
}

// BGPPeerStatus is the observed state of a BGPPeer.
type BGPPeerStatus struct {
	// Conditions: Valid.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
	// Sessions is the state of the session from each node that peers; each node's agent
	// writes its own entry (server-side apply, field manager sluice-agent/<node>).
	// +optional
	// +listType=map
	// +listMapKey=node
	Sessions []PeerSession `json:"sessions,omitempty"`
}

// BGPPeer is a router the nodes open BGP sessions to.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=bgppeer,categories=sluice
// +kubebuilder:printcolumn:name="Address",type=string,JSONPath=`.spec.peerAddress`
// +kubebuilder:printcolumn:name="ASN",type=integer,JSONPath=`.spec.peerASN`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type BGPPeer struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   BGPPeerSpec   `json:"spec"`
	Status BGPPeerStatus `json:"status,omitempty"`
}

// BGPPeerList is a list of BGPPeers.
//
// +kubebuilder:object:root=true
type BGPPeerList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []BGPPeer `json:"items"`
}
