// Package agent runs one node's Sluice: it reads objects from a source (standalone files or
// the Kubernetes API), builds the model after every change, logs what it understood and what
// it rejected, and serves health, Prometheus metrics and the local API.
//
// Lifecycle: New checks the configuration and opens the listeners (so a port in use fails at
// once); Run serves until its context ends, then stops every goroutine it started, closes the
// listeners and removes the socket before it returns. The model is rebuilt on a coalescing
// trigger: a burst of events gives one rebuild. Nothing is built before the source is synced,
// so a half-read input never looks like a deletion.
package agent
