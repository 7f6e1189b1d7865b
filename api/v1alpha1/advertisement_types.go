package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// AddressType is a kind of Service (or node) address an advertisement announces.
// +kubebuilder:validation:Enum=LoadBalancerIP;ExternalIP;ClusterIP;PodCIDR
type AddressType string

// Address types.
const (
	AddressLoadBalancerIP AddressType = "LoadBalancerIP"
	AddressExternalIP     AddressType = "ExternalIP"
	AddressClusterIP      AddressType = "ClusterIP"
	AddressPodCIDR        AddressType = "PodCIDR"
)

// Community is a BGP community: standard "65000:100", large "65000:1:2", or a well-known
// name (no-export, no-advertise, no-export-subconfed, no-peer, blackhole,
// graceful-shutdown, accept-own, llgr-stale, no-llgr).
// +kubebuilder:validation:MaxLength=32
// +kubebuilder:validation:XValidation:rule="self.matches('^[0-9]{1,10}:[0-9]{1,10}(:[0-9]{1,10})?$') ? (self.split(':').size() == 2 ? self.split(':').all(p, int(p) <= 65535) : self.split(':').all(p, int(p) <= 4294967295)) : self in ['no-export', 'no-advertise', 'no-export-subconfed', 'no-peer', 'blackhole', 'graceful-shutdown', 'accept-own', 'llgr-stale', 'no-llgr']",message="a community is AA:NN (16-bit parts), a large community A:B:C (32-bit parts), or a well-known name such as no-export"
type Community string

// BGPAdvertisementSpec is the desired state of a BGPAdvertisement.
type BGPAdvertisementSpec struct {
	// Pools names the IPPools whose addresses this advertisement announces.
	// With neither pools nor poolSelector, it applies to every pool.
	// +optional
	// +kubebuilder:validation:MaxItems=256
	// +listType=set
	Pools []string `json:"pools,omitempty"`
	// PoolSelector picks IPPools by label, in addition to Pools.
	// +optional
	PoolSelector *metav1.LabelSelector `json:"poolSelector,omitempty"`
	// ServiceSelector limits the advertisement to Services whose labels match.
	// +optional
	ServiceSelector *metav1.LabelSelector `json:"serviceSelector,omitempty"`
	// NodeSelector picks the nodes that announce (default: all).
	// +optional
	NodeSelector *metav1.LabelSelector `json:"nodeSelector,omitempty"`
	// Peers names the BGPPeers to announce to (default: all).
	// +optional
	// +kubebuilder:validation:MaxItems=256
	// +listType=set
	Peers []string `json:"peers,omitempty"`
	// AddressTypes are what to announce (default: LoadBalancerIP).
	// +optional
	// +kubebuilder:validation:MaxItems=4
	// +listType=set
	AddressTypes []AddressType `json:"addressTypes,omitempty"`
	// AggregationLength is the prefix length IPv4 addresses are announced with (default 32).
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=32
	AggregationLength *int32 `json:"aggregationLength,omitempty"`
	// AggregationLengthV6 is the prefix length IPv6 addresses are announced with (default 128).
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=128
	AggregationLengthV6 *int32 `json:"aggregationLengthV6,omitempty"`
	// Communities are attached to the announced paths.
	// +optional
	// +kubebuilder:validation:MaxItems=32
	// +listType=set
	Communities []Community `json:"communities,omitempty"`
	// LocalPreference is the LOCAL_PREF attribute, sent to iBGP peers only.
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=4294967295
	LocalPreference *int64 `json:"localPreference,omitempty"`
}

// AdvertisementStatus is the observed state of an advertisement.
type AdvertisementStatus struct {
	// Conditions: Valid.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// BGPAdvertisement says which addresses are announced over BGP, from which nodes, to which
// peers and with which attributes.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=bgpadv,categories=sluice
// +kubebuilder:printcolumn:name="Pools",type=string,JSONPath=`.spec.pools`
// +kubebuilder:printcolumn:name="Peers",type=string,JSONPath=`.spec.peers`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type BGPAdvertisement struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   BGPAdvertisementSpec `json:"spec,omitempty"`
	Status AdvertisementStatus  `json:"status,omitempty"`
}

// BGPAdvertisementList is a list of BGPAdvertisements.
//
// +kubebuilder:object:root=true
type BGPAdvertisementList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []BGPAdvertisement `json:"items"`
}

// L2AdvertisementSpec is the desired state of an L2Advertisement.
type L2AdvertisementSpec struct {
	// Pools names the IPPools whose addresses are answered for over ARP/NDP.
	// With neither pools nor poolSelector, it applies to every pool.
	// +optional
	// +kubebuilder:validation:MaxItems=256
	// +listType=set
	Pools []string `json:"pools,omitempty"`
	// PoolSelector picks IPPools by label, in addition to Pools.
	// +optional
	PoolSelector *metav1.LabelSelector `json:"poolSelector,omitempty"`
	// ServiceSelector limits the advertisement to Services whose labels match.
	// +optional
	ServiceSelector *metav1.LabelSelector `json:"serviceSelector,omitempty"`
	// NodeSelector picks the nodes that may answer (default: all).
	// +optional
	NodeSelector *metav1.LabelSelector `json:"nodeSelector,omitempty"`
	// Interfaces are the node interfaces answered on (default: all but loopback and
	// virtual ones).
	// +optional
	// +kubebuilder:validation:MaxItems=64
	// +listType=set
	// +kubebuilder:validation:items:MaxLength=15
	// +kubebuilder:validation:items:Pattern=`^[^/\s:]+$`
	Interfaces []string `json:"interfaces,omitempty"`
}

// L2Advertisement says which addresses are answered for with ARP/NDP, from which nodes and on
// which interfaces.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=l2adv,categories=sluice
// +kubebuilder:printcolumn:name="Pools",type=string,JSONPath=`.spec.pools`
// +kubebuilder:printcolumn:name="Interfaces",type=string,JSONPath=`.spec.interfaces`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type L2Advertisement struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   L2AdvertisementSpec `json:"spec,omitempty"`
	Status AdvertisementStatus `json:"status,omitempty"`
}

// L2AdvertisementList is a list of L2Advertisements.
//
// +kubebuilder:object:root=true
type L2AdvertisementList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []L2Advertisement `json:"items"`
}
