package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// IPBlock is one range of addresses of a pool: either a CIDR, or a start/stop pair of the same
// family (both ends included).
//
// +kubebuilder:validation:XValidation:rule="has(self.cidr) || has(self.start) || has(self.stop)",message="a block needs cidr or start/stop"
// +kubebuilder:validation:XValidation:rule="!has(self.cidr) || !(has(self.start) || has(self.stop))",message="a block has either cidr or start/stop, not both"
// +kubebuilder:validation:XValidation:rule="has(self.start) == has(self.stop)",message="start and stop go together"
// +kubebuilder:validation:XValidation:rule="!has(self.start) || !has(self.stop) || !isIP(self.start) || !isIP(self.stop) || ip(self.start).family() == ip(self.stop).family()",message="start and stop must be of the same address family"
// +kubebuilder:validation:XValidation:rule="!has(self.start) || !has(self.stop) || !isIP(self.start) || !isIP(self.stop) || ip(self.start).family() != 4 || ip(self.stop).family() != 4 || (int(self.start.split('.')[0]) * 16777216 + int(self.start.split('.')[1]) * 65536 + int(self.start.split('.')[2]) * 256 + int(self.start.split('.')[3])) <= (int(self.stop.split('.')[0]) * 16777216 + int(self.stop.split('.')[1]) * 65536 + int(self.stop.split('.')[2]) * 256 + int(self.stop.split('.')[3]))",message="start must not be after stop"
type IPBlock struct {
	// CIDR is a prefix such as 192.0.2.0/24 or 2001:db8::/64.
	// +optional
	// +kubebuilder:validation:MaxLength=49
	// +kubebuilder:validation:XValidation:rule="isCIDR(self)",message="cidr must be a CIDR such as 192.0.2.0/24 or 2001:db8::/64"
	// +kubebuilder:validation:XValidation:rule="!isCIDR(self) || cidr(self).ip() == cidr(self).masked().ip()",message="cidr must have no host bits set (192.0.2.0/24, not 192.0.2.1/24)"
	CIDR string `json:"cidr,omitempty"`
	// Start is the first address of the range.
	// +optional
	// +kubebuilder:validation:MaxLength=45
	// +kubebuilder:validation:XValidation:rule="isIP(self)",message="start must be an IP address"
	Start string `json:"start,omitempty"`
	// Stop is the last address of the range.
	// +optional
	// +kubebuilder:validation:MaxLength=45
	// +kubebuilder:validation:XValidation:rule="isIP(self)",message="stop must be an IP address"
	Stop string `json:"stop,omitempty"`
}

// IPPoolSpec is the desired state of an IPPool.
type IPPoolSpec struct {
	// Blocks are the address ranges of the pool.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=64
	// +listType=atomic
	Blocks []IPBlock `json:"blocks"`
	// AutoAssign lets the allocator hand out addresses of this pool to Services that do not
	// name a pool or address. A pool with autoAssign false serves only explicit requests.
	// +optional
	// +kubebuilder:default=true
	AutoAssign *bool `json:"autoAssign,omitempty"`
	// AvoidBuggyIPs skips addresses ending in .0 and .255, which some client stacks drop.
	// +optional
	AvoidBuggyIPs bool `json:"avoidBuggyIPs,omitempty"`
	// ServiceSelector limits the pool to Services whose labels match.
	// +optional
	ServiceSelector *metav1.LabelSelector `json:"serviceSelector,omitempty"`
	// NamespaceSelector limits the pool to Services in namespaces whose labels match.
	// +optional
	NamespaceSelector *metav1.LabelSelector `json:"namespaceSelector,omitempty"`
	// Namespaces limits the pool to Services in these namespaces.
	// +optional
	// +kubebuilder:validation:MaxItems=256
	// +listType=set
	Namespaces []string `json:"namespaces,omitempty"`
	// Priority orders pools when several could serve a Service: lower numbers are tried
	// first; 0 (the default) comes after every positive priority.
	// +optional
	// +kubebuilder:validation:Minimum=0
	Priority int32 `json:"priority,omitempty"`
	// Disabled stops new allocations from this pool; addresses already handed out stay.
	// +optional
	Disabled bool `json:"disabled,omitempty"`
}

// AddressCount is the use of one address family of a pool.
type AddressCount struct {
	// Family is IPv4 or IPv6.
	Family string `json:"family"`
	// Used is how many addresses are handed out.
	Used int64 `json:"used"`
	// Free is how many addresses are left, in decimal (IPv6 counts do not fit 64 bits).
	Free string `json:"free"`
}

// IPPoolStatus is the observed state of an IPPool.
type IPPoolStatus struct {
	// Conditions: Valid, Conflict.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
	// Addresses counts used and free addresses per family.
	// +optional
	// +listType=map
	// +listMapKey=family
	Addresses []AddressCount `json:"addresses,omitempty"`
}

// IPPool is a set of addresses that LoadBalancer Services are given addresses from.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=ippool,categories=sluice
// +kubebuilder:printcolumn:name="Disabled",type=boolean,JSONPath=`.spec.disabled`
// +kubebuilder:printcolumn:name="Valid",type=string,JSONPath=`.status.conditions[?(@.type=="Valid")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type IPPool struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   IPPoolSpec   `json:"spec"`
	Status IPPoolStatus `json:"status,omitempty"`
}

// IPPoolList is a list of IPPools.
//
// +kubebuilder:object:root=true
type IPPoolList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []IPPool `json:"items"`
}
