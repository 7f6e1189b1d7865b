package source

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"

	"github.com/sluice-lb/sluice/api/v1alpha1"
)

// Kube is the Source that watches the Kubernetes API with shared informers. Secrets are
// watched only in Namespace (the agent's own), where BGP passwords live.
type Kube struct {
	Config    *rest.Config
	Namespace string
	// Log, when set, hears why the source is not synced yet, each time the reason changes:
	// the API server cannot be reached, or does not serve the sluice.dev kinds (their CRDs
	// are not installed). Informers alone would only retry.
	Log *slog.Logger
	// WaitReport is how often the reason is looked for (default 5s).
	WaitReport time.Duration
}

// kinds are the object types Kube watches.
func kinds() []client.Object {
	return []client.Object{
		&v1alpha1.IPPool{}, &v1alpha1.BGPPeer{}, &v1alpha1.BGPAdvertisement{}, &v1alpha1.L2Advertisement{},
		&corev1.Service{}, &discoveryv1.EndpointSlice{}, &corev1.Node{}, &corev1.Namespace{}, &corev1.Secret{},
	}
}

// restMapper maps the kinds Kube watches without asking the API server (discovery): an agent
// that starts while the API server is away must wait for it, watching, not exit — its
// informers retry — while the pinned datapath serves as it was.
func restMapper(scheme *runtime.Scheme) (meta.RESTMapper, error) {
	m := meta.NewDefaultRESTMapper(nil)
	for _, obj := range kinds() {
		gvk, err := apiutil.GVKForObject(obj, scheme)
		if err != nil {
			return nil, err
		}
		scope := meta.RESTScopeRoot
		if namespaced(obj) {
			scope = meta.RESTScopeNamespace
		}
		m.Add(gvk, scope)
	}
	return m, nil
}

// Run implements Source.
func (k *Kube) Run(ctx context.Context, out chan<- Event) error {
	scheme := Scheme()
	mapper, err := restMapper(scheme)
	if err != nil {
		return fmt.Errorf("kubernetes source: %w", err)
	}
	c, err := cache.New(k.Config, cache.Options{
		Scheme: scheme,
		Mapper: mapper,
		ByObject: map[client.Object]cache.ByObject{
			&corev1.Secret{}: {Namespaces: map[string]cache.Config{k.Namespace: {}}},
		},
	})
	if err != nil {
		return fmt.Errorf("kubernetes source: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	// Handlers run on informer goroutines; until Synced is sent they may not block on out
	// forever, so every send also watches ctx.
	handler := toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { forward(ctx, out, Upsert, obj) },
		UpdateFunc: func(_, obj any) { forward(ctx, out, Upsert, obj) },
		DeleteFunc: func(obj any) { forward(ctx, out, Delete, obj) },
	}
	var synced []toolscache.InformerSynced
	for _, obj := range kinds() {
		inf, err := c.GetInformer(ctx, obj)
		if err != nil {
			return fmt.Errorf("kubernetes source: informer for %s: %w", KindOf(obj), err)
		}
		reg, err := inf.AddEventHandler(handler)
		if err != nil {
			return fmt.Errorf("kubernetes source: handler for %s: %w", KindOf(obj), err)
		}
		synced = append(synced, reg.HasSynced)
	}

	var wg sync.WaitGroup
	errc := make(chan error, 1)
	wg.Add(2)
	go func() {
		defer wg.Done()
		errc <- c.Start(ctx)
	}()
	syncDone := make(chan struct{})
	go func() {
		defer wg.Done()
		k.explainWait(ctx, syncDone)
	}()
	defer wg.Wait()
	ok := c.WaitForCacheSync(ctx) && toolscache.WaitForCacheSync(ctx.Done(), synced...)
	close(syncDone)
	if !ok {
		cancel()
		if err := <-errc; err != nil {
			return fmt.Errorf("kubernetes source: %w", err)
		}
		return nil
	}
	// Informers deliver the initial list to handlers asynchronously: HasSynced on every
	// registration (waited for above) means each handler has seen its initial objects.
	send(ctx, out, Event{Type: Synced})
	select {
	case <-ctx.Done():
		return nil
	case err := <-errc:
		if err != nil {
			return fmt.Errorf("kubernetes source: %w", err)
		}
		return nil
	}
}

// explainWait logs, until done is closed, why the informers have not synced yet, whenever
// the reason changes.
func (k *Kube) explainWait(ctx context.Context, done <-chan struct{}) {
	if k.Log == nil {
		return
	}
	dc, err := discovery.NewDiscoveryClientForConfig(k.Config)
	if err != nil {
		return
	}
	every := k.WaitReport
	if every <= 0 {
		every = 5 * time.Second
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	last := ""
	for {
		select {
		case <-ctx.Done():
			return
		case <-done:
			return
		case <-tick.C:
		}
		why := whyNotSynced(dc)
		if why != "" && why != last {
			k.Log.Warn("kubernetes source: waiting for the initial objects", "why", why)
		}
		last = why
	}
}

// whyNotSynced names what keeps the informers from syncing, as far as discovery tells: ""
// when it finds nothing wrong (a large cluster takes time).
func whyNotSynced(dc discovery.DiscoveryInterface) string {
	gv := v1alpha1.GroupVersion.String()
	list, err := dc.ServerResourcesForGroupVersion(gv)
	switch {
	case apierrors.IsNotFound(err):
		return "the API server does not serve " + gv + ": the sluice.dev CRDs are not installed (manifests/crds)"
	case err != nil:
		return "the API server cannot be reached: " + err.Error() + " (the datapath serves what it had)"
	}
	var missing []string
	for _, plural := range []string{"ippools", "bgppeers", "bgpadvertisements", "l2advertisements"} {
		if !slices.ContainsFunc(list.APIResources, func(r metav1.APIResource) bool { return r.Name == plural }) {
			missing = append(missing, plural+"."+v1alpha1.GroupVersion.Group)
		}
	}
	if len(missing) > 0 {
		return "CRDs not installed: " + strings.Join(missing, ", ") + " (manifests/crds)"
	}
	return ""
}

func forward(ctx context.Context, out chan<- Event, t EventType, obj any) {
	if tomb, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
		obj = tomb.Obj
	}
	cobj, ok := obj.(client.Object)
	if !ok {
		return
	}
	send(ctx, out, Event{Type: t, Object: cobj})
}
