// Package bgp announces Service addresses over BGP with embedded GoBGP servers (advertise
// only; routes from peers are not installed). [DesiredFor] turns the model's peers and
// advertisements into the sessions and paths of one node, purely; a [Speaker] applies them to
// GoBGP by difference, one GoBGP server per peer so that each peer gets exactly its own paths
// with their own attributes, and reports the state of each session.
package bgp
