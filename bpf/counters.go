package bpf

import (
	"fmt"
	"strings"
)

// Counter is one packet outcome the datapath counts. There are two groups:
// the classes (CounterNonIP to CounterMalformedL4), of which the XDP program
// counts every packet it sees under exactly one; and the load-balancer
// outcomes (CounterFwdNew and after), counted in addition for the packets
// the load balancer acted on, by XDP and by the TC programs (which count
// only outcomes). Traffic not for a frontend has a class and no outcome. The
// values are the C enum counter_id (lib/structs.h); they only ever grow,
// because the pinned counters map outlives the agent.
type Counter uint32

// The counters, as generated from enum counter_id.
const (
	CounterNonIP       = Counter(datapathCounterIdCOUNTER_NON_IP)       // neither IPv4 nor IPv6 (ARP, LLDP, QinQ, ...)
	CounterIPv4TCP     = Counter(datapathCounterIdCOUNTER_IPV4TCP)      // IPv4 with a complete TCP header
	CounterIPv4UDP     = Counter(datapathCounterIdCOUNTER_IPV4UDP)      // IPv4 with a complete UDP header
	CounterIPv4Other   = Counter(datapathCounterIdCOUNTER_IPV4OTHER)    // other IPv4 protocols, non-first fragments
	CounterIPv6TCP     = Counter(datapathCounterIdCOUNTER_IPV6TCP)      // IPv6 with a complete TCP header
	CounterIPv6UDP     = Counter(datapathCounterIdCOUNTER_IPV6UDP)      // IPv6 with a complete UDP header
	CounterIPv6Other   = Counter(datapathCounterIdCOUNTER_IPV6OTHER)    // other next headers, extension headers
	CounterMalformedL2 = Counter(datapathCounterIdCOUNTER_MALFORMED_L2) // Ethernet or VLAN header cut short
	CounterMalformedL3 = Counter(datapathCounterIdCOUNTER_MALFORMED_L3) // bad IP header, IP length past the frame
	CounterMalformedL4 = Counter(datapathCounterIdCOUNTER_MALFORMED_L4) // TCP/UDP header not within the IP payload

	CounterFwdNew         = Counter(datapathCounterIdCOUNTER_FWD_NEW)         // new flow: backend selected, destination rewritten
	CounterFwdEstablished = Counter(datapathCounterIdCOUNTER_FWD_ESTABLISHED) // conntrack hit: destination rewritten
	CounterRevNAT         = Counter(datapathCounterIdCOUNTER_REV_NAT)         // reply: source rewritten to the frontend (TC egress)
	CounterNoBackendRST   = Counter(datapathCounterIdCOUNTER_NO_BACKEND_RST)  // no usable backend: answered with a TCP RST
	CounterNoBackendICMP  = Counter(datapathCounterIdCOUNTER_NO_BACKEND_ICMP) // no usable backend: answered ICMP(v6) port unreachable
	CounterNoBackendDrop  = Counter(datapathCounterIdCOUNTER_NO_BACKEND_DROP) // no usable backend, not answerable (RST, TC): dropped
	CounterICMPErrorIn    = Counter(datapathCounterIdCOUNTER_ICMP_ERR_IN)     // ICMP error about a reply translated to the backend
	CounterICMPErrorOut   = Counter(datapathCounterIdCOUNTER_ICMP_ERR_OUT)    // ICMP error about a forwarded packet translated to the frontend
	CounterCTExpired      = Counter(datapathCounterIdCOUNTER_CT_EXPIRED)      // conntrack entry expired or stale: selected again
	CounterCTClash        = Counter(datapathCounterIdCOUNTER_CT_CLASH)        // new flow dropped: a live flow to another frontend holds its reply tuple
	CounterSourceDenied   = Counter(datapathCounterIdCOUNTER_SOURCE_DENIED)   // new flow dropped: its client is outside the frontend's source ranges
	CounterSockXlate      = Counter(datapathCounterIdCOUNTER_SOCK_XLATE)      // connect()/sendmsg() to a frontend pointed at a backend (0 bytes)
	CounterSockNoBackend  = Counter(datapathCounterIdCOUNTER_SOCK_NO_BACKEND) // connect()/sendmsg() to a frontend without a usable backend: refused
	CounterSNATForward    = Counter(datapathCounterIdCOUNTER_SNAT_FWD)        // client -> remote backend: SNATed and redirected (TC)
	CounterSNATReverse    = Counter(datapathCounterIdCOUNTER_SNAT_REV)        // remote backend -> client: translated back
	CounterSNATNoPort     = Counter(datapathCounterIdCOUNTER_SNAT_NO_PORT)    // new flow to a remote backend without a free SNAT port: dropped
	CounterNoRoute        = Counter(datapathCounterIdCOUNTER_NO_ROUTE)        // SNATed or DSR packet without a route to its destination: dropped
	CounterDSREncap       = Counter(datapathCounterIdCOUNTER_DSR_ENCAP)       // client -> remote backend: DNATed and tunnelled to its node (TC)
	CounterDSRDecap       = Counter(datapathCounterIdCOUNTER_DSR_DECAP)       // DSR tunnel from another node: decapsulated, the flow recorded

	// NumCounters is the number of counters (and of counters map entries).
	NumCounters = int(datapathCounterIdCOUNTER_MAX)
)

var counterNames = [NumCounters]string{
	CounterNonIP:       "non_ip",
	CounterIPv4TCP:     "ipv4_tcp",
	CounterIPv4UDP:     "ipv4_udp",
	CounterIPv4Other:   "ipv4_other",
	CounterIPv6TCP:     "ipv6_tcp",
	CounterIPv6UDP:     "ipv6_udp",
	CounterIPv6Other:   "ipv6_other",
	CounterMalformedL2: "malformed_l2",
	CounterMalformedL3: "malformed_l3",
	CounterMalformedL4: "malformed_l4",

	CounterFwdNew:         "fwd_new",
	CounterFwdEstablished: "fwd_established",
	CounterRevNAT:         "rev_nat",
	CounterNoBackendRST:   "no_backend_rst",
	CounterNoBackendICMP:  "no_backend_icmp",
	CounterNoBackendDrop:  "no_backend_drop",
	CounterICMPErrorIn:    "icmp_error_in",
	CounterICMPErrorOut:   "icmp_error_out",
	CounterCTExpired:      "ct_expired",
	CounterCTClash:        "ct_clash",
	CounterSourceDenied:   "source_denied",
	CounterSockXlate:      "sock_xlate",
	CounterSockNoBackend:  "sock_no_backend",
	CounterSNATForward:    "snat_forward",
	CounterSNATReverse:    "snat_reverse",
	CounterSNATNoPort:     "snat_no_port",
	CounterNoRoute:        "no_route",
	CounterDSREncap:       "dsr_encap",
	CounterDSRDecap:       "dsr_decap",
}

// String returns the counter's name in snake_case, suitable as a metric label.
func (c Counter) String() string {
	if int(c) < len(counterNames) {
		return counterNames[c]
	}
	return fmt.Sprintf("counter_%d", uint32(c))
}

// CounterValue is one counter summed over all CPUs.
type CounterValue struct {
	Packets uint64
	Bytes   uint64 // whole frames, as the program saw them
}

// Counters holds every counter, indexed by Counter.
type Counters [NumCounters]CounterValue

// Sub returns c - prev per counter: the traffic counted between two reads.
func (c Counters) Sub(prev Counters) Counters {
	var d Counters
	for i := range c {
		d[i] = CounterValue{
			Packets: c[i].Packets - prev[i].Packets,
			Bytes:   c[i].Bytes - prev[i].Bytes,
		}
	}
	return d
}

// Total returns the sum of all counters.
func (c Counters) Total() CounterValue {
	var t CounterValue
	for _, v := range c {
		t.Packets += v.Packets
		t.Bytes += v.Bytes
	}
	return t
}

// String lists the counters that are not zero, as name=packets/bytes.
func (c Counters) String() string {
	var b strings.Builder
	for i, v := range c {
		if v == (CounterValue{}) {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%s=%d/%dB", Counter(i), v.Packets, v.Bytes)
	}
	if b.Len() == 0 {
		return "none"
	}
	return b.String()
}
