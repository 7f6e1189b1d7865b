// Package source yields the objects Sluice reads — Services, EndpointSlices, Nodes,
// Namespaces, Secrets and the sluice.dev kinds — as a stream of events, from one of two
// places: the Kubernetes API (informers) or standalone YAML files (File).
//
// Contract of Source.Run: it sends an Upsert for every object present at start, then one
// Synced event, then an Upsert or Delete for each change, until its context ends. Problems
// events carry the complete current list of input problems (unparseable documents, unknown
// kinds), replacing any earlier list. Run owns its goroutines and returns once they have
// stopped. A Store applies the events and hands out the current set of objects.
package source
