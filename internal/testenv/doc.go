// Package testenv gates tests on what the machine provides: root, commands on PATH, built
// binaries. A test calls Require* at its start. When the prerequisite is missing the test is
// skipped with the reason on a developer's laptop, but fails under CI=true: a skip in CI would
// hide a broken install step.
//
// Tiers: privileged tests (BPF, netns) run only with PRIVILEGED_TESTS=1 or CI=true; interop
// tests additionally need their peer daemons; api tests need KUBEBUILDER_ASSETS.
package testenv
