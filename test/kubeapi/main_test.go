package kubeapi_test

import (
	"os"
	"testing"

	"github.com/sluice-lb/sluice/test/kubeapi"
)

func TestMain(m *testing.M) { os.Exit(kubeapi.Main(m)) }
