// Package e2e runs the real sluice-agent binary in lab namespaces against real traffic. The
// tests need root (PRIVILEGED_TESTS=1); the binary is built once per test run.
package e2e
