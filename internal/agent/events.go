package agent

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/events"
)

// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// eventReason is the reason of the Event a node records on a Service when it starts
// answering ARP/NDP for one of its addresses.
const eventReason = "L2Announced"

// startEvents records Events on Services for the agent (Kubernetes mode) until ctx ends, and
// returns the function that records one. nil when there is no API server to write to.
func (a *Agent) startEvents(ctx context.Context) func(svc types.NamespacedName, uid types.UID, note string) {
	if a.cfg.Rest == nil {
		return nil
	}
	cs, err := kubernetes.NewForConfig(a.cfg.Rest)
	if err != nil {
		a.log.Warn("no Events on Services: cannot reach the API", "error", err)
		return nil
	}
	b := events.NewBroadcaster(&events.EventSinkImpl{Interface: cs.EventsV1()})
	if err := b.StartRecordingToSinkWithContext(ctx); err != nil {
		a.log.Warn("no Events on Services", "error", err)
		return nil
	}
	context.AfterFunc(ctx, b.Shutdown)
	rec := b.NewRecorder(scheme.Scheme, "sluice.dev/agent")
	return func(svc types.NamespacedName, uid types.UID, note string) {
		// The UID makes the Event show in kubectl describe, which matches on it.
		ref := &corev1.Service{TypeMeta: metav1.TypeMeta{Kind: "Service", APIVersion: "v1"},
			ObjectMeta: metav1.ObjectMeta{Namespace: svc.Namespace, Name: svc.Name, UID: uid}}
		rec.Eventf(ref, nil, corev1.EventTypeNormal, eventReason, "Announce", "%s", note)
	}
}
