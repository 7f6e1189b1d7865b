package kubeapi

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	kruntime "k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/sluice-lb/sluice/api/v1alpha1"
	"github.com/sluice-lb/sluice/internal/testenv"
)

// DefaultServiceCIDRs are the Service cluster-IP ranges of the API server unless
// Options.ServiceCIDRs says otherwise: one per family, so dual-stack Services work.
const DefaultServiceCIDRs = "10.96.0.0/16,fd00:10:96::/112"

// startTimeout bounds each start attempt of etcd and of kube-apiserver.
const startTimeout = 90 * time.Second

// Options configure an API server started by Start or New. The zero value is a server on
// 127.0.0.1 with DefaultServiceCIDRs.
type Options struct {
	// BindAddress is the IP address kube-apiserver listens on (on a free port). It must be
	// an address of the current network namespace; use a non-loopback one to reach the
	// server from other namespaces. Default 127.0.0.1. etcd always stays on 127.0.0.1.
	BindAddress string
	// ServiceCIDRs is --service-cluster-ip-range: one CIDR, or two of different
	// families separated by a comma. Default DefaultServiceCIDRs.
	ServiceCIDRs string
}

// Env is a running etcd + kube-apiserver with the sluice.dev CRDs installed.
type Env struct {
	// Config authenticates as an administrator (group system:masters).
	Config *rest.Config
	// Client uses Config and Scheme. It discovers kinds it does not know, so it also
	// works with unstructured objects of any installed kind.
	Client client.Client
	// Scheme holds client-go's built-in kinds and sluice.dev/v1alpha1.
	Scheme *kruntime.Scheme
	// KubeConfig is a kubeconfig file's content for Config, for processes such as
	// kube-proxy. The credentials are valid until Stop.
	KubeConfig []byte
	// Host is the API server's URL, https://address:port.
	Host string

	env     *envtest.Environment
	apiOut  *tail // kube-apiserver's output, for error messages
	etcdOut *tail
	dir     string // holds everything on disk: etcd data, certificates, wrapper scripts

	release  chan struct{} // closed by Stop: the owner goroutine stops the processes
	stopped  chan error    // the owner goroutine's result of stopping them
	stopOnce sync.Once
	stopErr  error
}

// Start starts an API server for t alone and stops it in t.Cleanup. Without
// KUBEBUILDER_ASSETS the test is skipped (or fails under CI=true); see testenv.RequireAssets.
func Start(t testing.TB, opts Options) *Env {
	t.Helper()
	assets := testenv.RequireAssets(t)
	e, err := New(assets, opts)
	if err != nil {
		t.Fatalf("kubeapi: %v", err)
	}
	t.Cleanup(func() {
		if err := e.Stop(); err != nil {
			t.Errorf("kubeapi: %v", err)
		}
	})
	return e
}

// New starts etcd and kube-apiserver from the binaries in the assets directory and installs
// the CRDs of manifests/crds. The caller must call Stop.
func New(assets string, opts Options) (*Env, error) {
	if opts.BindAddress == "" {
		opts.BindAddress = "127.0.0.1"
	}
	if opts.ServiceCIDRs == "" {
		opts.ServiceCIDRs = DefaultServiceCIDRs
	}
	crdDir, err := CRDDir()
	if err != nil {
		return nil, err
	}
	port, err := freePort(opts.BindAddress)
	if err != nil {
		return nil, err
	}
	scheme := kruntime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return nil, err
	}
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		return nil, err
	}

	// One directory of ours for everything on disk, removed by Stop: envtest leaves its
	// own temporary directories behind when a start attempt fails and it retries.
	dir, err := os.MkdirTemp("", "sluice-kubeapi-")
	if err != nil {
		return nil, err
	}
	e := &Env{Scheme: scheme, apiOut: &tail{}, etcdOut: &tail{}, dir: dir}
	apiServer := &envtest.APIServer{Out: e.apiOut, Err: e.apiOut, CertDir: filepath.Join(dir, "kube-apiserver"),
		Path: filepath.Join(assets, "kube-apiserver")}
	apiServer.SecureServing.ListenAddr = envtest.ListenAddr{Address: opts.BindAddress, Port: strconv.Itoa(port)}
	apiServer.Configure().Set("service-cluster-ip-range", opts.ServiceCIDRs)
	etcd := &envtest.Etcd{Out: e.etcdOut, Err: e.etcdOut, DataDir: filepath.Join(dir, "etcd"),
		Path: filepath.Join(assets, "etcd")}
	err = errors.Join(os.Mkdir(apiServer.CertDir, 0o700), os.Mkdir(etcd.DataDir, 0o700),
		guardBinaries(filepath.Join(dir, "bin"), &apiServer.Path, &etcd.Path))
	if err != nil {
		return nil, errors.Join(err, os.RemoveAll(dir))
	}
	e.env = &envtest.Environment{
		ControlPlane:             envtest.ControlPlane{APIServer: apiServer, Etcd: etcd},
		Scheme:                   scheme,
		CRDDirectoryPaths:        []string{crdDir},
		ErrorIfCRDPathMissing:    true,
		BinaryAssetsDirectory:    assets,
		ControlPlaneStartTimeout: startTimeout,
		ControlPlaneStopTimeout:  30 * time.Second,
	}

	if err := e.run(); err != nil {
		return nil, errors.Join(err, os.RemoveAll(dir))
	}
	e.Config = e.env.Config
	e.KubeConfig = e.env.KubeConfig
	e.Host = apiServer.SecureServing.URL("https", "").String()
	if e.Client, err = client.New(e.Config, client.Options{Scheme: scheme}); err != nil {
		return nil, errors.Join(fmt.Errorf("client: %w", err), e.Stop())
	}
	return e, nil
}

// run starts the control plane from a goroutine locked to its OS thread, which stays
// locked, and so alive, until Stop: the processes' parent-death signal fires when the
// thread that forked them exits, and no other goroutine can make a locked thread exit.
func (e *Env) run() error {
	started := make(chan error, 1)
	e.release = make(chan struct{})
	e.stopped = make(chan error, 1)
	go func() { // owned by e; ends after Stop has stopped the processes
		runtime.LockOSThread() // never unlocked: the thread ends with this goroutine
		if _, err := e.env.Start(); err != nil {
			started <- errors.Join(fmt.Errorf("starting the API server: %w%s", err, e.output()), e.env.Stop())
			return
		}
		started <- nil
		<-e.release
		e.stopped <- e.env.Stop()
	}()
	return <-started
}

// Stop stops kube-apiserver and etcd and removes their files. It is idempotent.
func (e *Env) Stop() error {
	e.stopOnce.Do(func() {
		close(e.release)
		if err := <-e.stopped; err != nil {
			e.stopErr = fmt.Errorf("stopping the API server: %w", err)
		}
		e.stopErr = errors.Join(e.stopErr, os.RemoveAll(e.dir))
	})
	return e.stopErr
}

// output is the tail of both processes' output, for error messages.
func (e *Env) output() string {
	return fmt.Sprintf("\n--- kube-apiserver output (tail) ---\n%s\n--- etcd output (tail) ---\n%s",
		e.apiOut.String(), e.etcdOut.String())
}

// freePort finds a TCP port that is free on the given address now.
func freePort(address string) (int, error) {
	if net.ParseIP(address) == nil {
		return 0, fmt.Errorf("bind address %q is not an IP address", address)
	}
	l, err := net.Listen("tcp", net.JoinHostPort(address, "0"))
	if err != nil {
		return 0, fmt.Errorf("bind address %s: %w", address, err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
