// Package v1alpha1 holds the sluice.dev/v1alpha1 API: the cluster-scoped kinds IPPool,
// BGPPeer, BGPAdvertisement and L2Advertisement. Field names follow MetalLB where the concept
// is the same. The kubebuilder markers and CEL rules here make the API server itself reject
// what is plainly wrong; everything that needs more context than one object (overlaps between
// pools, references to other objects, IPv6 range order) is checked by internal/model and
// reported in status conditions.
//
// +kubebuilder:object:generate=true
// +groupName=sluice.dev
package v1alpha1
