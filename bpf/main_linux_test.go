package bpf

import (
	"os"
	"testing"

	"github.com/sluice-lb/sluice/test/traffic"
)

func TestMain(m *testing.M) {
	traffic.RunPodClientIfAsked() // the socket tests' client processes
	os.Exit(m.Run())
}
