package v1alpha1

import (
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/scheme"
)

var (
	// GroupVersion is the group and version of this API.
	GroupVersion = schema.GroupVersion{Group: "sluice.dev", Version: "v1alpha1"}

	// SchemeBuilder registers the kinds of this API.
	SchemeBuilder = &scheme.Builder{GroupVersion: GroupVersion}

	// AddToScheme adds the kinds of this API to a scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)

// Condition types shared by the kinds of this API.
const (
	// ConditionValid is True when the object was accepted into the model, False with the
	// reason when it was rejected (or a part of it was ignored).
	ConditionValid = "Valid"
	// ConditionConflict is True when an IPPool overlaps an older pool and was disabled.
	ConditionConflict = "Conflict"
)
