// Package l2announce answers ARP (IPv4) and NDP neighbor solicitations (IPv6) for Service
// addresses on the node that owns each address, elects that owner per address so failover
// takes well under a second, and sends gratuitous ARP / unsolicited neighbor advertisements
// when ownership moves.
//
// Not implemented yet: this package states the contract the next change builds to.
package l2announce
