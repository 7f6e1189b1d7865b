package kubeapi

import (
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/go-logr/logr"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/sluice-lb/sluice/internal/testenv"
)

// shared is the API server of a test binary, started by the first Shared call and stopped
// by Main.
var shared struct {
	inMain atomic.Bool // Main runs the tests
	once   sync.Once
	env    *Env
	err    error
}

// Main runs the tests of a package that uses Shared, then stops the shared API server if a
// test started one. Call it from TestMain: os.Exit(kubeapi.Main(m)). It also gives
// controller-runtime's global logger a sink that discards (envtest logs through it, and
// warns on stderr when none is set; every error reaches the caller anyway). A test may set
// another one with ctrllog.SetLogger.
func Main(m *testing.M) int {
	ctrllog.SetLogger(logr.Discard())
	shared.inMain.Store(true)
	code := m.Run()
	if shared.env != nil {
		if err := shared.env.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "kubeapi: %v\n", err)
			if code == 0 {
				code = 1
			}
		}
	}
	return code
}

// Shared returns the API server shared by the tests of this test binary (default Options),
// starting it on the first call. Without KUBEBUILDER_ASSETS the test is skipped (or fails
// under CI=true). If the start fails, every test that asks for the server fails with the
// same error. The package's TestMain must call Main, which stops the server.
func Shared(t testing.TB) *Env {
	t.Helper()
	if !shared.inMain.Load() {
		t.Fatal("kubeapi.Shared needs the package's TestMain to run kubeapi.Main(m)")
	}
	assets := testenv.RequireAssets(t)
	shared.once.Do(func() {
		shared.env, shared.err = New(assets, Options{})
	})
	if shared.err != nil {
		t.Fatalf("kubeapi: shared API server: %v", shared.err)
	}
	return shared.env
}
