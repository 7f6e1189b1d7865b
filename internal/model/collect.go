package model

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/sluice-lb/sluice/api/v1alpha1"
)

// Add files an object under its kind. Objects of kinds Sluice does not read are an error.
func (o *Objects) Add(obj runtime.Object) error {
	switch v := obj.(type) {
	case *v1alpha1.IPPool:
		o.Pools = append(o.Pools, v)
	case *v1alpha1.BGPPeer:
		o.Peers = append(o.Peers, v)
	case *v1alpha1.BGPAdvertisement:
		o.BGPAdverts = append(o.BGPAdverts, v)
	case *v1alpha1.L2Advertisement:
		o.L2Adverts = append(o.L2Adverts, v)
	case *corev1.Service:
		o.Services = append(o.Services, v)
	case *discoveryv1.EndpointSlice:
		o.EndpointSlices = append(o.EndpointSlices, v)
	case *corev1.Node:
		o.Nodes = append(o.Nodes, v)
	case *corev1.Secret:
		o.Secrets = append(o.Secrets, v)
	case *corev1.Namespace:
		o.Namespaces = append(o.Namespaces, v)
	default:
		return fmt.Errorf("sluice does not read objects of type %T", obj)
	}
	return nil
}

// Collect files every object under its kind; objects of other kinds are errors.
func Collect[T runtime.Object](objs []T) (Objects, []error) {
	var in Objects
	var errs []error
	for _, o := range objs {
		if err := in.Add(o); err != nil {
			errs = append(errs, err)
		}
	}
	return in, errs
}

// Count returns how many objects of each kind there are.
func (o *Objects) Count() map[string]int {
	return map[string]int{
		"IPPool": len(o.Pools), "BGPPeer": len(o.Peers), "BGPAdvertisement": len(o.BGPAdverts),
		"L2Advertisement": len(o.L2Adverts), "Service": len(o.Services), "EndpointSlice": len(o.EndpointSlices),
		"Node": len(o.Nodes), "Secret": len(o.Secrets), "Namespace": len(o.Namespaces),
	}
}
