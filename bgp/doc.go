// Package bgp announces Service addresses over BGP with an embedded GoBGP server (advertise
// only; routes from peers are not installed). It turns the model's peers and advertisements
// into desired sessions and paths, applies them to GoBGP by difference, and reports the state
// of each session per node.
//
// Not implemented yet: this package states the contract the next change builds to.
package bgp
