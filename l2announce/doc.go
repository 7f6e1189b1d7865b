// Package l2announce answers ARP (IPv4) and NDP neighbor solicitations (IPv6) for Service
// addresses on the node that owns each address, picks that owner per address so failover
// takes well under a second, and sends gratuitous ARP / unsolicited neighbor advertisements
// when ownership moves.
//
// Three parts, each usable alone:
//
//   - Assign (pure) spreads addresses over the nodes that may answer for them: rendezvous
//     hashing with shares, so every agent computes the same owners from the same inputs, the
//     spread is even (100 addresses over 3 nodes: 34/33/33) and a node leaving moves little
//     besides its own addresses.
//   - Members tells which agents are alive from UDP heartbeats between them (every 100 ms, a
//     node dead after 350 ms of silence by default): no API server involved, so its load
//     does not grow with Services and standalone mode works alike. An agent that was itself
//     stopped longer than the timeout doubts everything for a timeout (Fresh is false, no node
//     is alive to it) instead of answering from an ownership that has moved meanwhile.
//   - Responder answers, on one interface, for exactly the addresses it is given (raw ARP
//     socket, ICMPv6 socket joined to each address's solicited-node group, advertisements
//     sent from the address itself), announces each newly given address in a burst, and skips
//     malformed frames.
//
// Not wired into the agent yet: the eligibility of nodes (L2Advertisement selectors, the
// exclusion label, interfaces, externalTrafficPolicy Local), the agent's loop that feeds
// Members' live nodes through Assign into the responders, status and metrics come next.
package l2announce
