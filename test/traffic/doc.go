// Package traffic is the real traffic of the lab tests: servers that answer with their own
// name, so a test can tell which backend served a request, and clients that run in a lab
// namespace — one request, a spread of many, a long-lived connection that must not break,
// and a steady stream of new connections that must not be refused.
//
// Sockets are created inside the namespace (lab.Namespace.Do) and used from ordinary
// goroutines afterwards. Every type stops with Close or Stop, which waits for its goroutines.
package traffic
