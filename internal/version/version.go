// Package version tells which build of Sluice this is. Version is set at link time:
// go build -ldflags "-X github.com/sluice-lb/sluice/internal/version.Version=v0.1.0".
package version

import "runtime"

// Version is the release or git description of this build.
var Version = "dev"

// String describes the build for humans: version, Go version, platform.
func String() string {
	return Version + " (" + runtime.Version() + ", " + runtime.GOOS + "/" + runtime.GOARCH + ")"
}
