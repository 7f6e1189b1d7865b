// Package kubeapi runs a real Kubernetes API server (etcd + kube-apiserver) for tests, with
// the sluice.dev CRDs of manifests/crds installed. It wraps controller-runtime's envtest; the
// binaries come from KUBEBUILDER_ASSETS, built and cached by hack/kube-binaries.sh.
//
// # Use
//
// Most tests share one API server per test binary, because starting one costs seconds:
//
//	func TestMain(m *testing.M) { os.Exit(kubeapi.Main(m)) }
//
//	func TestSomething(t *testing.T) {
//		env := kubeapi.Shared(t) // skips, or fails under CI=true, without KUBEBUILDER_ASSETS
//		name := kubeapi.UniqueName(t)
//		...
//	}
//
// Shared starts the server on first use; Main stops it after the last test. Tests on a
// shared server must not depend on its global state: they name their objects with
// UniqueName and delete what they create. Start gives a test its own API server instead,
// with Options (for example BindAddress, to reach it from a lab network namespace), stopped
// in t.Cleanup. New and (*Env).Stop are the same without a testing.TB.
//
// # Lifecycle
//
// Stop stops kube-apiserver, then etcd, and removes the one temporary directory
// ($TMPDIR/sluice-kubeapi-*) that holds everything they wrote: etcd data, certificates. When
// setpriv(1) is on PATH, both processes also carry a parent-death signal (SIGKILL): if the
// test binary dies without stopping them (a test timeout panics and exits), they die too
// instead of lingering; only their directory is left. The signal is tied to the OS thread
// that started them, so the Env keeps that thread locked to a goroutine of its own until
// Stop.
//
// The server is a bare control plane: no controller manager, scheduler or kubelet. Nothing
// garbage-collects, namespaces are never finalized once deleted (so tests never delete
// them), and Services get cluster IPs from Options.ServiceCIDRs (dual-stack by default).
//
// # Concurrency
//
// An Env is safe for concurrent use by parallel tests: its Client and Config are.
package kubeapi
