package source

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sluice-lb/sluice/api/v1alpha1"
)

// EventType says what an Event is.
type EventType int

const (
	// Upsert: Object was added or changed.
	Upsert EventType = iota
	// Delete: Object is gone.
	Delete
	// Synced: every object present at start has been sent.
	Synced
	// Problems: Problems is the complete current list of input problems.
	Problems
)

func (t EventType) String() string {
	return [...]string{"Upsert", "Delete", "Synced", "Problems"}[t]
}

// Event is one change from a Source.
type Event struct {
	Type     EventType
	Object   client.Object
	Problems []error
	// More says that more events of the same change follow at once (one reload of a file
	// gives several): a consumer may wait for the last before acting on them.
	More bool
}

// Source yields object events; see the package documentation for the contract.
type Source interface {
	Run(ctx context.Context, out chan<- Event) error
}

// Scheme returns a scheme with every kind Sluice reads.
func Scheme() *runtime.Scheme {
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		panic(err) // a programming error: the built-in kinds always register
	}
	if err := v1alpha1.AddToScheme(s); err != nil {
		panic(err)
	}
	return s
}

// Key identifies an object: kind, namespace, name.
type Key struct {
	Kind      string
	Namespace string
	Name      string
}

func (k Key) String() string {
	if k.Namespace == "" {
		return k.Kind + " " + k.Name
	}
	return k.Kind + " " + k.Namespace + "/" + k.Name
}

// KindOf names the kind of an object Sluice reads ("" for any other).
func KindOf(obj runtime.Object) string {
	switch obj.(type) {
	case *v1alpha1.IPPool:
		return "IPPool"
	case *v1alpha1.BGPPeer:
		return "BGPPeer"
	case *v1alpha1.BGPAdvertisement:
		return "BGPAdvertisement"
	case *v1alpha1.L2Advertisement:
		return "L2Advertisement"
	case *corev1.Service:
		return "Service"
	case *discoveryv1.EndpointSlice:
		return "EndpointSlice"
	case *corev1.Node:
		return "Node"
	case *corev1.Secret:
		return "Secret"
	case *corev1.Namespace:
		return "Namespace"
	}
	return ""
}

// KeyOf returns the key of an object.
func KeyOf(obj client.Object) Key {
	return Key{Kind: KindOf(obj), Namespace: obj.GetNamespace(), Name: obj.GetName()}
}

// Store holds the current objects and problems of a Source. It is safe for concurrent use.
type Store struct {
	mu       sync.Mutex
	objects  map[Key]client.Object
	sorted   []Key // the keys of objects, sorted; nil until the first List
	problems []error
	synced   bool
}

// NewStore returns an empty Store.
func NewStore() *Store { return &Store{objects: map[Key]client.Object{}} }

// Apply applies one event.
func (s *Store) Apply(ev Event) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch ev.Type {
	case Upsert:
		k := KeyOf(ev.Object)
		if k.Kind == "" {
			return fmt.Errorf("source: object of type %T is not a kind sluice reads", ev.Object)
		}
		if _, ok := s.objects[k]; !ok && s.sorted != nil {
			i, _ := slices.BinarySearchFunc(s.sorted, k, compareKeys)
			s.sorted = slices.Insert(s.sorted, i, k)
		}
		s.objects[k] = ev.Object
	case Delete:
		k := KeyOf(ev.Object)
		if _, ok := s.objects[k]; ok && s.sorted != nil {
			i, _ := slices.BinarySearchFunc(s.sorted, k, compareKeys)
			s.sorted = slices.Delete(s.sorted, i, i+1)
		}
		delete(s.objects, k)
	case Synced:
		s.synced = true
	case Problems:
		s.problems = ev.Problems
	}
	return nil
}

// Synced reports whether the Source has sent everything it had at start.
func (s *Store) Synced() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.synced
}

// List returns the objects, sorted by key, and the current problems. The keys stay sorted
// between calls (an event moves at most one), so a List costs a copy, not a sort.
func (s *Store) List() ([]client.Object, []error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sorted == nil {
		s.sorted = slices.SortedFunc(maps.Keys(s.objects), compareKeys)
	}
	out := make([]client.Object, len(s.sorted))
	for i, k := range s.sorted {
		out[i] = s.objects[k]
	}
	return out, append([]error(nil), s.problems...)
}

// compareKeys orders keys by kind, namespace and name.
func compareKeys(a, b Key) int {
	return cmp.Or(cmp.Compare(a.Kind, b.Kind), cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
}
