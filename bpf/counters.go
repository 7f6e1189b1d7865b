package bpf

import (
	"fmt"
	"strings"
)

// Counter is one packet outcome the datapath counts: every packet an attached
// program sees is counted under exactly one Counter. The values are the C
// enum counter_id (lib/structs.h); they only ever grow, because the pinned
// counters map outlives the agent.
type Counter uint32

// The counters, as generated from enum counter_id.
const (
	CounterNonIP       = Counter(xdpCounterIdCOUNTER_NON_IP)       // neither IPv4 nor IPv6 (ARP, LLDP, QinQ, ...)
	CounterIPv4TCP     = Counter(xdpCounterIdCOUNTER_IPV4TCP)      // IPv4 with a complete TCP header
	CounterIPv4UDP     = Counter(xdpCounterIdCOUNTER_IPV4UDP)      // IPv4 with a complete UDP header
	CounterIPv4Other   = Counter(xdpCounterIdCOUNTER_IPV4OTHER)    // other IPv4 protocols, non-first fragments
	CounterIPv6TCP     = Counter(xdpCounterIdCOUNTER_IPV6TCP)      // IPv6 with a complete TCP header
	CounterIPv6UDP     = Counter(xdpCounterIdCOUNTER_IPV6UDP)      // IPv6 with a complete UDP header
	CounterIPv6Other   = Counter(xdpCounterIdCOUNTER_IPV6OTHER)    // other next headers, extension headers
	CounterMalformedL2 = Counter(xdpCounterIdCOUNTER_MALFORMED_L2) // Ethernet or VLAN header cut short
	CounterMalformedL3 = Counter(xdpCounterIdCOUNTER_MALFORMED_L3) // bad IP header, IP length past the frame
	CounterMalformedL4 = Counter(xdpCounterIdCOUNTER_MALFORMED_L4) // TCP/UDP header not within the IP payload

	// NumCounters is the number of counters (and of counters map entries).
	NumCounters = int(xdpCounterIdCOUNTER_MAX)
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
