// Package model turns a set of API objects into a validated, immutable snapshot of what Sluice
// should do: address pools, BGP peers, advertisements and Services with their backends.
//
// Build is a pure function: no I/O, no clock, no globals; the same objects in any order give
// the same Model and the same Problems. Every invalid object, or invalid part of one, yields a
// Problem that names the object and the field. An invalid object never takes a valid one down
// with it: it is left out (Problem.Rejected) or kept without its bad part, and the rest of the
// model is built as if it were not there. Standalone mode has no API server in front of it, so
// Build checks everything the CRDs' CEL rules check, and more (overlaps, references).
//
// A Model is shared between goroutines; nothing in it may be modified after Build returns.
package model
