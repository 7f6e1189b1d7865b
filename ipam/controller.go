package ipam

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/sluice-lb/sluice/api/v1alpha1"
	"github.com/sluice-lb/sluice/internal/model"
)

// What the controller writes on a Service of ours.
const (
	// ConditionAllocated is the Service condition: True when every family it needs has an
	// address; its reason is the allocator's Reason and its message says exactly what.
	ConditionAllocated = "sluice.dev/AddressesAllocated"
	// AnnotationAllocatedPool names the pool (comma-separated when the families' addresses
	// come from different pools) of the Service's addresses.
	AnnotationAllocatedPool = "sluice.dev/allocated-pool"
	// Pool condition types.
	PoolConditionValid    = "Valid"
	PoolConditionConflict = "Conflict"
)

// ControllerOptions configure the IPAM controller.
type ControllerOptions struct {
	// Config reaches the API server. The controller raises its client-side rate limits.
	Config *rest.Config
	// LeaderElection makes only the holder of the Lease LeaseName in LeaseNamespace
	// allocate; the others wait.
	LeaderElection bool
	LeaseNamespace string
	LeaseName      string // default "sluice-ipam"
	// Lease timing; zero values are controller-runtime's defaults (15s, 10s, 2s).
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
	// Allocate configures the allocator.
	Allocate Options
	// LoadBalancerClass is the spec.loadBalancerClass served besides an unset one (default
	// model.LoadBalancerClass).
	LoadBalancerClass string
	// MetricsAddr and HealthAddr, when set, serve controller-runtime's /metrics and the
	// /healthz and /readyz probes (a controller run on its own, in a Deployment).
	MetricsAddr, HealthAddr string
	// Writers is how many Service writes run at once (default 16).
	Writers int
	Log     *slog.Logger
}

// The permissions the controller needs (for controller-gen's RBAC output):
//
// +kubebuilder:rbac:groups="",resources=services,verbs=get;list;watch;patch
// +kubebuilder:rbac:groups="",resources=services/status,verbs=patch
// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get;list;watch
// +kubebuilder:rbac:groups=sluice.dev,resources=ippools,verbs=get;list;watch
// +kubebuilder:rbac:groups=sluice.dev,resources=ippools/status,verbs=patch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch
// +kubebuilder:rbac:groups=coordination.k8s.io,resources=leases,verbs=get;create;update

// Controller runs Allocate over the cluster's IPPools and Services and writes the result:
// each Service's status.loadBalancer.ingress, its ConditionAllocated condition, the
// AnnotationAllocatedPool annotation and an Event when its addresses change; each pool's
// status (Valid and Conflict conditions, used and free addresses per family).
//
// It reconciles the whole cluster as one key: every change of a Service, pool or namespace
// queues one run (runs coalesce), and a run writes only what differs. The first run starts
// once the informers hold every object, so every address already in a status is loaded
// before any new one is handed out.
type Controller struct {
	opts     ControllerOptions
	mgr      manager.Manager
	client   client.Client
	recorder events.EventRecorder
	log      *slog.Logger

	mu sync.Mutex
	// written are the addresses this controller last wrote into each Service's status, with
	// the resourceVersion the write was based on: while the informer still shows that
	// version, the write is not in the cache yet, and a run takes the written addresses as
	// the status (an allocation from the stale cache could hand them out again) and does not
	// write them twice.
	written map[types.NamespacedName]writtenStatus
	// runs counts completed runs, for tests and metrics.
	runs int
}

type writtenStatus struct {
	uid types.UID
	ips []netip.Addr
	at  time.Time
}

// writtenTTL bounds how long a write may take to show in the informer before the cache is
// believed again.
const writtenTTL = time.Minute

// shows reports whether Service s's status holds exactly ips.
func shows(s *corev1.Service, ips []netip.Addr) bool {
	return slices.EqualFunc(s.Status.LoadBalancer.Ingress, ips, func(in corev1.LoadBalancerIngress, ip netip.Addr) bool { return in.IP == ip.String() })
}

// allKey is the one key the controller reconciles.
var allKey = reconcile.Request{NamespacedName: types.NamespacedName{Name: "all"}}

// NewController sets up the controller; Start runs it.
func NewController(opts ControllerOptions) (*Controller, error) {
	if opts.LeaseName == "" {
		opts.LeaseName = "sluice-ipam"
	}
	if opts.Writers <= 0 {
		opts.Writers = 16
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	scheme := kruntime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return nil, err
	}
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		return nil, err
	}
	cfg := rest.CopyConfig(opts.Config)
	// One run may write thousands of Services: client-go's default 5 QPS would take minutes.
	cfg.QPS, cfg.Burst = 1000, 2000
	mopts := manager.Options{
		Scheme:                        scheme,
		Logger:                        logr.FromSlogHandler(opts.Log.Handler()),
		Metrics:                       metricsserver.Options{BindAddress: cmp.Or(opts.MetricsAddr, "0")},
		HealthProbeBindAddress:        cmp.Or(opts.HealthAddr, "0"),
		LeaderElection:                opts.LeaderElection,
		LeaderElectionID:              opts.LeaseName,
		LeaderElectionNamespace:       opts.LeaseNamespace,
		LeaderElectionReleaseOnCancel: true,
	}
	for _, d := range []struct {
		v   time.Duration
		dst **time.Duration
	}{{opts.LeaseDuration, &mopts.LeaseDuration}, {opts.RenewDeadline, &mopts.RenewDeadline}, {opts.RetryPeriod, &mopts.RetryPeriod}} {
		if d.v > 0 {
			v := d.v
			*d.dst = &v
		}
	}
	mgr, err := ctrl.NewManager(cfg, mopts)
	if err != nil {
		return nil, fmt.Errorf("ipam controller: %w", err)
	}
	if opts.HealthAddr != "" {
		if err := errors.Join(mgr.AddHealthzCheck("ping", healthz.Ping), mgr.AddReadyzCheck("ping", healthz.Ping)); err != nil {
			return nil, fmt.Errorf("ipam controller: %w", err)
		}
	}
	c := &Controller{opts: opts, mgr: mgr, client: mgr.GetClient(), recorder: mgr.GetEventRecorder("sluice-ipam"),
		log: opts.Log, written: map[types.NamespacedName]writtenStatus{}}
	all := handler.EnqueueRequestsFromMapFunc(func(context.Context, client.Object) []reconcile.Request {
		return []reconcile.Request{allKey}
	})
	err = ctrl.NewControllerManagedBy(mgr).Named("sluice-ipam").
		Watches(&corev1.Service{}, all).
		Watches(&v1alpha1.IPPool{}, all).
		Watches(&corev1.Namespace{}, all).
		WithOptions(controller.Options{MaxConcurrentReconciles: 1, SkipNameValidation: ptr(true)}).
		Complete(c)
	if err != nil {
		return nil, fmt.Errorf("ipam controller: %w", err)
	}
	return c, nil
}

// Start runs the controller until ctx ends (leading, if leader election is on, once it holds
// the Lease).
func (c *Controller) Start(ctx context.Context) error { return c.mgr.Start(ctx) }

// Elected is closed once this controller leads (at once without leader election).
func (c *Controller) Elected() <-chan struct{} { return c.mgr.Elected() }

// Runs returns how many runs completed.
func (c *Controller) Runs() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.runs
}

// Reconcile is one run over the whole cluster.
func (c *Controller) Reconcile(ctx context.Context, _ reconcile.Request) (reconcile.Result, error) {
	start := time.Now()
	var pools v1alpha1.IPPoolList
	var svcs corev1.ServiceList
	var nss corev1.NamespaceList
	for _, l := range []client.ObjectList{&pools, &svcs, &nss} {
		if err := c.client.List(ctx, l); err != nil {
			return reconcile.Result{}, err
		}
	}
	var in model.Objects
	for i := range pools.Items {
		in.Pools = append(in.Pools, &pools.Items[i])
	}
	byKey := map[types.NamespacedName]*corev1.Service{}
	for i := range svcs.Items {
		s := &svcs.Items[i]
		in.Services = append(in.Services, s)
		byKey[types.NamespacedName{Namespace: s.Namespace, Name: s.Name}] = s
	}
	for i := range nss.Items {
		in.Namespaces = append(in.Namespaces, &nss.Items[i])
	}
	m, problems := model.Build(in, model.Options{LoadBalancerClass: c.opts.LoadBalancerClass})
	r := Allocate(c.withWritten(m, byKey), c.opts.Allocate)

	// Services: ours get the result, others lose what this controller once gave them.
	var jobs []func(context.Context) error
	for _, a := range r.Allocations {
		if s := byKey[a.Service]; s != nil {
			if job := c.serviceJob(s, *a); job != nil {
				jobs = append(jobs, job)
			}
		}
	}
	for _, s := range svcs.Items {
		if r.Of(types.NamespacedName{Namespace: s.Namespace, Name: s.Name}) == nil {
			if job := c.releaseJob(&s); job != nil {
				jobs = append(jobs, job)
			}
		}
	}
	for i := range pools.Items {
		if job := c.poolJob(&pools.Items[i], m, problems, r); job != nil {
			jobs = append(jobs, job)
		}
	}
	err := runJobs(ctx, jobs, c.opts.Writers)
	c.mu.Lock()
	c.runs++
	c.mu.Unlock()
	c.log.Debug("ipam run", "services", len(r.Allocations), "writes", len(jobs), "took", time.Since(start), "error", err)
	return reconcile.Result{}, err
}

// withWritten returns m with the addresses this controller wrote, and the informer does not
// show yet, as the Services' status; it forgets the records the informer caught up with.
func (c *Controller) withWritten(m *model.Model, byKey map[types.NamespacedName]*corev1.Service) *model.Model {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.written) == 0 {
		return m
	}
	stale := map[types.NamespacedName][]netip.Addr{}
	for k, w := range c.written {
		if s := byKey[k]; s == nil || s.UID != w.uid || shows(s, w.ips) || time.Since(w.at) > writtenTTL {
			delete(c.written, k)
			continue
		}
		stale[k] = w.ips
	}
	return withIngress(m, func(s *model.Service) []netip.Addr { return stale[s.Key] })
}

// inFlight reports whether this controller already wrote ips for Service s, and the
// informer has not caught up yet.
func (c *Controller) inFlight(s *corev1.Service, ips []netip.Addr) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	w, ok := c.written[types.NamespacedName{Namespace: s.Namespace, Name: s.Name}]
	return ok && w.uid == s.UID && !shows(s, w.ips) && time.Since(w.at) <= writtenTTL && slices.Equal(w.ips, ips)
}

// serviceJob returns the write that brings Service s to allocation a, or nil if it is there.
func (c *Controller) serviceJob(s *corev1.Service, a Allocation) func(context.Context) error {
	want := make([]corev1.LoadBalancerIngress, len(a.IPs))
	for i, ip := range a.IPs {
		want[i] = corev1.LoadBalancerIngress{IP: ip.String()}
		for _, have := range s.Status.LoadBalancer.Ingress {
			if have.IP == want[i].IP {
				want[i] = have // keep what others set on it (ipMode, ports)
			}
		}
	}
	cond := metav1.Condition{Type: ConditionAllocated, Status: metav1.ConditionFalse, Reason: string(a.Reason),
		Message: truncate(a.Message, 32000), ObservedGeneration: s.Generation}
	if a.Ready {
		cond.Status = metav1.ConditionTrue
	}
	pools := strings.Join(slices.Compact(slices.DeleteFunc(slices.Clone(a.Pools), func(p string) bool { return p == "" })), ",")

	ingressSame := slices.EqualFunc(s.Status.LoadBalancer.Ingress, want, func(x, y corev1.LoadBalancerIngress) bool { return x.IP == y.IP })
	old := meta.FindStatusCondition(s.Status.Conditions, ConditionAllocated)
	condSame := old != nil && old.Status == cond.Status && old.Reason == cond.Reason && old.Message == cond.Message && old.ObservedGeneration == cond.ObservedGeneration
	annSame := s.Annotations[AnnotationAllocatedPool] == pools
	if (ingressSame && condSame && annSame) || c.inFlight(s, a.IPs) {
		return nil
	}
	key := types.NamespacedName{Namespace: s.Namespace, Name: s.Name}
	s = s.DeepCopy()
	return func(ctx context.Context) error {
		// The annotation first: once the status shows the addresses, it names their pool.
		if !annSame {
			orig := s.DeepCopy()
			if pools == "" {
				delete(s.Annotations, AnnotationAllocatedPool)
			} else {
				if s.Annotations == nil {
					s.Annotations = map[string]string{}
				}
				s.Annotations[AnnotationAllocatedPool] = pools
			}
			if err := c.client.Patch(ctx, s, client.MergeFrom(orig)); err != nil {
				return fmt.Errorf("service %s: write annotation: %w", key, err)
			}
		}
		if !ingressSame || !condSame {
			orig := s.DeepCopy()
			s.Status.LoadBalancer.Ingress = want
			meta.SetStatusCondition(&s.Status.Conditions, cond)
			// The patch replaces the conditions list: with the optimistic lock it fails (and the
			// next run retries from a fresh cache) rather than erase another writer's condition.
			if err := c.client.Status().Patch(ctx, s, client.MergeFromWithOptions(orig, client.MergeFromWithOptimisticLock{})); err != nil {
				return fmt.Errorf("service %s: write status: %w", key, err)
			}
			c.mu.Lock()
			c.written[key] = writtenStatus{uid: s.UID, ips: a.IPs, at: time.Now()}
			c.mu.Unlock()
		}
		if !ingressSame {
			c.recorder.Eventf(s, nil, corev1.EventTypeNormal, "AddressesAllocated", "Allocate", "%s", a.Message)
			c.log.Info("load balancer addresses", "service", key.String(), "ips", a.IPs, "pools", a.Pools, "reason", a.Reason)
		}
		if !a.Ready && (old == nil || old.Reason != cond.Reason || old.Message != cond.Message) {
			c.recorder.Eventf(s, nil, corev1.EventTypeWarning, string(a.Reason), "Allocate", "%s", a.Message)
			c.log.Warn("load balancer addresses incomplete", "service", key.String(), "ips", a.IPs, "reason", a.Reason, "detail", a.Message)
		}
		return nil
	}
}

// releaseJob clears what this controller wrote on a Service that is no longer ours (its
// type or class changed), or returns nil if there is nothing of ours on it.
func (c *Controller) releaseJob(s *corev1.Service) func(context.Context) error {
	_, annotated := s.Annotations[AnnotationAllocatedPool]
	cond := meta.FindStatusCondition(s.Status.Conditions, ConditionAllocated)
	if !annotated && cond == nil {
		return nil
	}
	key := types.NamespacedName{Namespace: s.Namespace, Name: s.Name}
	s = s.DeepCopy()
	return func(ctx context.Context) error {
		if cond != nil {
			orig := s.DeepCopy()
			s.Status.LoadBalancer.Ingress = nil
			meta.RemoveStatusCondition(&s.Status.Conditions, ConditionAllocated)
			if err := c.client.Status().Patch(ctx, s, client.MergeFromWithOptions(orig, client.MergeFromWithOptimisticLock{})); err != nil {
				return fmt.Errorf("service %s: release: %w", key, err)
			}
		}
		if annotated {
			orig := s.DeepCopy()
			delete(s.Annotations, AnnotationAllocatedPool)
			if err := c.client.Patch(ctx, s, client.MergeFrom(orig)); err != nil {
				return fmt.Errorf("service %s: release: %w", key, err)
			}
		}
		c.recorder.Eventf(s, nil, corev1.EventTypeNormal, "AddressesReleased", "Release", "no longer a LoadBalancer Service served by Sluice")
		c.log.Info("load balancer addresses released", "service", key.String())
		return nil
	}
}

// poolJob returns the write that brings pool p's status up to date, or nil.
func (c *Controller) poolJob(p *v1alpha1.IPPool, m *model.Model, problems []model.Problem, r *Result) func(context.Context) error {
	var mine []model.Problem
	for _, pr := range problems {
		if pr.Object.Kind == "IPPool" && pr.Object.Name == p.Name {
			mine = append(mine, pr)
		}
	}
	valid := metav1.Condition{Type: PoolConditionValid, Status: metav1.ConditionTrue, Reason: "Valid", Message: "the pool serves addresses", ObservedGeneration: p.Generation}
	conflict := metav1.Condition{Type: PoolConditionConflict, Status: metav1.ConditionFalse, Reason: "NoConflict", Message: "no older pool overlaps it", ObservedGeneration: p.Generation}
	var msgs []string
	for _, pr := range mine {
		msgs = append(msgs, pr.Error())
		if pr.Conflict {
			conflict.Status, conflict.Reason, conflict.Message = metav1.ConditionTrue, "Overlap", pr.Message+": this pool gives out no address until the overlap is removed"
		}
	}
	if m.Pool(p.Name) == nil {
		valid.Status, valid.Reason, valid.Message = metav1.ConditionFalse, "Invalid", truncate(strings.Join(msgs, "; "), 32000)
		if conflict.Status == metav1.ConditionTrue {
			valid.Reason = "Conflict"
		}
	} else if len(msgs) > 0 {
		valid.Message = "the pool serves addresses; ignored: " + truncate(strings.Join(msgs, "; "), 30000)
	}
	var addrs []v1alpha1.AddressCount
	if use, ok := r.Pools[p.Name]; ok {
		for _, fam := range []string{"IPv4", "IPv6"} {
			if free, ok := use.Free[fam]; ok {
				addrs = append(addrs, v1alpha1.AddressCount{Family: fam, Used: use.Used[fam], Free: free.String()})
			}
		}
	}
	same := slices.Equal(p.Status.Addresses, addrs)
	for _, cond := range []metav1.Condition{valid, conflict} {
		old := meta.FindStatusCondition(p.Status.Conditions, cond.Type)
		same = same && old != nil && old.Status == cond.Status && old.Reason == cond.Reason && old.Message == cond.Message && old.ObservedGeneration == cond.ObservedGeneration
	}
	if same {
		return nil
	}
	p = p.DeepCopy()
	return func(ctx context.Context) error {
		orig := p.DeepCopy()
		p.Status.Addresses = addrs
		meta.SetStatusCondition(&p.Status.Conditions, valid)
		meta.SetStatusCondition(&p.Status.Conditions, conflict)
		if err := c.client.Status().Patch(ctx, p, client.MergeFromWithOptions(orig, client.MergeFromWithOptimisticLock{})); err != nil {
			return fmt.Errorf("ippool %s: write status: %w", p.Name, err)
		}
		return nil
	}
}

// runJobs runs the jobs with at most n at once and returns their errors joined.
func runJobs(ctx context.Context, jobs []func(context.Context) error, n int) error {
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	sem := make(chan struct{}, n)
	for _, job := range jobs {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := job(ctx); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

func ptr[T any](v T) *T { return &v }

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
