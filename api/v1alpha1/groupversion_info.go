package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

var (
	// GroupVersion is the group and version of this API.
	GroupVersion = schema.GroupVersion{Group: "sluice.dev", Version: "v1alpha1"}

	// SchemeBuilder registers the kinds of this API.
	SchemeBuilder = runtime.NewSchemeBuilder(addKnownTypes)

	// AddToScheme adds the kinds of this API to a scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)

func addKnownTypes(s *runtime.Scheme) error {
	s.AddKnownTypes(GroupVersion,
		&IPPool{}, &IPPoolList{},
		&BGPPeer{}, &BGPPeerList{},
		&BGPAdvertisement{}, &BGPAdvertisementList{},
		&L2Advertisement{}, &L2AdvertisementList{},
	)
	metav1.AddToGroupVersion(s, GroupVersion)
	return nil
}

// Condition types shared by the kinds of this API.
const (
	// ConditionValid is True when the object was accepted into the model, False with the
	// reason when it was rejected (or a part of it was ignored).
	ConditionValid = "Valid"
	// ConditionConflict is True when an IPPool overlaps an older pool and was disabled.
	ConditionConflict = "Conflict"
)
