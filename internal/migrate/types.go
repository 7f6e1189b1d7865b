package migrate

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The shapes of MetalLB's objects, as its documentation and CRDs describe them. Only what
// the converter reads is typed; strict decoding reports every other field by name.

type ipAddressPoolSpec struct {
	Addresses         []string           `json:"addresses"`
	AutoAssign        *bool              `json:"autoAssign,omitempty"`
	AvoidBuggyIPs     bool               `json:"avoidBuggyIPs,omitempty"`
	ServiceAllocation *serviceAllocation `json:"serviceAllocation,omitempty"`
}

type serviceAllocation struct {
	Priority           int32                  `json:"priority,omitempty"`
	Namespaces         []string               `json:"namespaces,omitempty"`
	NamespaceSelectors []metav1.LabelSelector `json:"namespaceSelectors,omitempty"`
	ServiceSelectors   []metav1.LabelSelector `json:"serviceSelectors,omitempty"`
}

type l2AdvertisementSpec struct {
	IPAddressPools         []string               `json:"ipAddressPools,omitempty"`
	IPAddressPoolSelectors []metav1.LabelSelector `json:"ipAddressPoolSelectors,omitempty"`
	NodeSelectors          []metav1.LabelSelector `json:"nodeSelectors,omitempty"`
	Interfaces             []string               `json:"interfaces,omitempty"`
}

type bgpAdvertisementSpec struct {
	AggregationLength      *int32                 `json:"aggregationLength,omitempty"`
	AggregationLengthV6    *int32                 `json:"aggregationLengthV6,omitempty"`
	LocalPref              uint32                 `json:"localPref,omitempty"`
	Communities            []string               `json:"communities,omitempty"`
	IPAddressPools         []string               `json:"ipAddressPools,omitempty"`
	IPAddressPoolSelectors []metav1.LabelSelector `json:"ipAddressPoolSelectors,omitempty"`
	NodeSelectors          []metav1.LabelSelector `json:"nodeSelectors,omitempty"`
	Peers                  []string               `json:"peers,omitempty"`
}

// bgpPeerSpec holds both versions: v1beta1's nodeSelectors have the same JSON shape as a
// LabelSelector, and v1beta2 only added fields.
type bgpPeerSpec struct {
	MyASN                  uint32                 `json:"myASN"`
	PeerASN                uint32                 `json:"peerASN,omitempty"`
	DynamicASN             string                 `json:"dynamicASN,omitempty"`
	PeerAddress            string                 `json:"peerAddress,omitempty"`
	Interface              string                 `json:"interface,omitempty"`
	SourceAddress          string                 `json:"sourceAddress,omitempty"`
	PeerPort               uint16                 `json:"peerPort,omitempty"`
	HoldTime               *metav1.Duration       `json:"holdTime,omitempty"`
	KeepaliveTime          *metav1.Duration       `json:"keepaliveTime,omitempty"`
	ConnectTime            *metav1.Duration       `json:"connectTime,omitempty"`
	RouterID               string                 `json:"routerID,omitempty"`
	NodeSelectors          []metav1.LabelSelector `json:"nodeSelectors,omitempty"`
	Password               string                 `json:"password,omitempty"`
	PasswordSecret         *secretReference       `json:"passwordSecret,omitempty"`
	BFDProfile             string                 `json:"bfdProfile,omitempty"`
	EnableGracefulRestart  bool                   `json:"enableGracefulRestart,omitempty"`
	EBGPMultiHop           bool                   `json:"ebgpMultiHop,omitempty"`
	VRF                    string                 `json:"vrf,omitempty"`
	DisableMP              bool                   `json:"disableMP,omitempty"`
	DualStackAddressFamily bool                   `json:"dualStackAddressFamily,omitempty"`
}

type secretReference struct {
	Name      string `json:"name,omitempty"`
	Namespace string `json:"namespace,omitempty"`
}

type bfdProfileSpec struct {
	ReceiveInterval  *uint32 `json:"receiveInterval,omitempty"`
	TransmitInterval *uint32 `json:"transmitInterval,omitempty"`
	DetectMultiplier *uint32 `json:"detectMultiplier,omitempty"`
	EchoInterval     *uint32 `json:"echoInterval,omitempty"`
	EchoMode         *bool   `json:"echoMode,omitempty"`
	PassiveMode      *bool   `json:"passiveMode,omitempty"`
	MinimumTTL       *uint32 `json:"minimumTtl,omitempty"`
}

type communitySpec struct {
	Communities []communityAlias `json:"communities,omitempty"`
}

type communityAlias struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// addressPoolSpec is the 0.12/0.13 metallb.io/v1beta1 AddressPool.
type addressPoolSpec struct {
	Protocol          string                `json:"protocol"`
	Addresses         []string              `json:"addresses"`
	AutoAssign        *bool                 `json:"autoAssign,omitempty"`
	AvoidBuggyIPs     bool                  `json:"avoidBuggyIPs,omitempty"`
	BGPAdvertisements []legacyAdvertisement `json:"bgpAdvertisements,omitempty"`
}

type legacyAdvertisement struct {
	AggregationLength   *int32   `json:"aggregationLength,omitempty"`
	AggregationLengthV6 *int32   `json:"aggregationLengthV6,omitempty"`
	LocalPref           uint32   `json:"localPref,omitempty"`
	Communities         []string `json:"communities,omitempty"`
}

// legacyConfig is the "config" key of MetalLB's ConfigMap (up to 0.12), in its own
// kebab-case spelling.
type legacyConfig struct {
	Peers             []legacyPeer       `json:"peers,omitempty"`
	BGPCommunities    map[string]string  `json:"bgp-communities,omitempty"`
	AddressPools      []legacyPool       `json:"address-pools,omitempty"`
	BFDProfiles       []legacyBFDProfile `json:"bfd-profiles,omitempty"`
	PeerAutodiscovery any                `json:"peer-autodiscovery,omitempty"`
}

type legacyPeer struct {
	MyASN         uint32               `json:"my-asn"`
	PeerASN       uint32               `json:"peer-asn"`
	PeerAddress   string               `json:"peer-address"`
	SourceAddress string               `json:"source-address,omitempty"`
	PeerPort      uint16               `json:"peer-port,omitempty"`
	HoldTime      string               `json:"hold-time,omitempty"`
	KeepaliveTime string               `json:"keepalive-time,omitempty"`
	RouterID      string               `json:"router-id,omitempty"`
	NodeSelectors []legacyNodeSelector `json:"node-selectors,omitempty"`
	Password      string               `json:"password,omitempty"`
	BFDProfile    string               `json:"bfd-profile,omitempty"`
	EBGPMultiHop  bool                 `json:"ebgp-multihop,omitempty"`
}

type legacyNodeSelector struct {
	MatchLabels      map[string]string   `json:"match-labels,omitempty"`
	MatchExpressions []legacyRequirement `json:"match-expressions,omitempty"`
}

type legacyRequirement struct {
	Key      string   `json:"key"`
	Operator string   `json:"operator"`
	Values   []string `json:"values,omitempty"`
}

type legacyPool struct {
	Name              string                    `json:"name"`
	Protocol          string                    `json:"protocol"`
	Addresses         []string                  `json:"addresses"`
	AutoAssign        *bool                     `json:"auto-assign,omitempty"`
	AvoidBuggyIPs     bool                      `json:"avoid-buggy-ips,omitempty"`
	BGPAdvertisements []legacyPoolAdvertisement `json:"bgp-advertisements,omitempty"`
}

type legacyPoolAdvertisement struct {
	AggregationLength   *int32   `json:"aggregation-length,omitempty"`
	AggregationLengthV6 *int32   `json:"aggregation-length-v6,omitempty"`
	LocalPref           *uint32  `json:"localpref,omitempty"`
	Communities         []string `json:"communities,omitempty"`
}

type legacyBFDProfile struct {
	Name             string  `json:"name"`
	ReceiveInterval  *uint32 `json:"receive-interval,omitempty"`
	TransmitInterval *uint32 `json:"transmit-interval,omitempty"`
	DetectMultiplier *uint32 `json:"detect-multiplier,omitempty"`
	EchoInterval     *uint32 `json:"echo-interval,omitempty"`
	EchoMode         bool    `json:"echo-mode,omitempty"`
	PassiveMode      bool    `json:"passive-mode,omitempty"`
	MinimumTTL       *uint32 `json:"minimum-ttl,omitempty"`
}
