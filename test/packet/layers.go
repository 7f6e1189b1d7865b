package packet

import (
	"net"
	"net/netip"
)

// EtherTypes and IP protocol numbers the builder fills in.
const (
	EtherTypeIPv4  = 0x0800
	EtherTypeARP   = 0x0806
	EtherTypeVLAN  = 0x8100 // 802.1Q tag
	EtherTypeQinQ  = 0x88a8 // 802.1ad service tag
	EtherTypeIPv6  = 0x86dd
	ProtoHopByHop  = 0
	ProtoICMPv4    = 1
	ProtoIPIP      = 4
	ProtoTCP       = 6
	ProtoUDP       = 17
	ProtoIPv6      = 41
	ProtoFragment  = 44
	ProtoICMPv6    = 58
	EthernetLen    = 14
	VLANLen        = 4
	ARPLen         = 28
	IPv4MinLen     = 20
	IPv6Len        = 40
	TCPMinLen      = 20
	UDPLen         = 8
	ICMPHeaderLen  = 8
	defaultTTL     = 64
	maxIPv4Options = 40
)

// TCP flags.
const (
	FIN = 1 << iota
	SYN
	RST
	PSH
	ACK
	URG
	ECE
	CWR
)

// IPv4 flags (the top three bits of the fragment field).
const (
	IPv4MoreFragments = 1 << 0
	IPv4DontFragment  = 1 << 1
)

// ARP operations.
const (
	ARPRequest = 1
	ARPReply   = 2
)

// A Layer is one header (or the payload) of a frame; pass layers to [Build]
// outermost first. All layer types work as values or pointers.
type Layer interface {
	// encode returns the layer's bytes followed by payload. next is the layer
	// after it (nil for the last) and ip the nearest IP layer before it
	// (nil if none), for protocol numbers and pseudo-headers.
	encode(payload []byte, next, ip Layer) ([]byte, error)
}

// etherTyper is a layer that can follow Ethernet or a VLAN tag.
type etherTyper interface{ etherType() uint16 }

// ipProtocoler is a layer that can follow an IP header.
type ipProtocoler interface{ ipProtocol() uint8 }

// Ethernet is an Ethernet II header. Nil addresses are all zeros; Type 0 is
// taken from the next layer.
type Ethernet struct {
	Dst, Src net.HardwareAddr
	Type     uint16
}

// VLAN is one 802.1Q / 802.1ad tag. TPID 0 means 802.1Q (0x8100); Type 0 is
// taken from the next layer.
type VLAN struct {
	TPID     uint16
	Priority uint8 // 3 bits
	DropOK   bool  // DEI
	ID       uint16
	Type     uint16
}

// ARP is an Ethernet/IPv4 ARP packet.
type ARP struct {
	Op                   uint16
	SenderMAC, TargetMAC net.HardwareAddr
	SenderIP, TargetIP   netip.Addr
}

// IPv4 is an IPv4 header; IHL, total length and checksum are computed.
// Protocol 0 is taken from the next layer and TTL 0 means 64.
type IPv4 struct {
	Src, Dst       netip.Addr
	TOS            uint8
	ID             uint16
	Flags          uint8  // IPv4DontFragment, IPv4MoreFragments
	FragmentOffset uint16 // in 8-byte units
	TTL            uint8
	Protocol       uint8
	Options        []byte // length a multiple of 4, at most 40
}

// IPv6 is an IPv6 header; the payload length is computed. NextHeader 0 is
// taken from the next layer when that is a known protocol (so a Payload
// after NextHeader 0 is a hop-by-hop header) and HopLimit 0 means 64.
type IPv6 struct {
	Src, Dst     netip.Addr
	TrafficClass uint8
	FlowLabel    uint32 // 20 bits
	NextHeader   uint8
	HopLimit     uint8
}

// TCP is a TCP header; data offset and checksum are computed.
type TCP struct {
	SrcPort, DstPort uint16
	Seq, Ack         uint32
	Flags            uint8 // FIN, SYN, ...
	Window           uint16
	Urgent           uint16
	Options          []byte // length a multiple of 4, at most 40
}

// UDP is a UDP header; length and checksum are computed. ZeroChecksum sends
// checksum 0 ("none", IPv4 only).
type UDP struct {
	SrcPort, DstPort uint16
	ZeroChecksum     bool
}

// ICMPv4 is an ICMP header; the checksum is computed. ID and Seq are the four
// bytes after the checksum: identifier and sequence number for echo, or
// whatever the type carries there (e.g. Seq = next-hop MTU for "fragmentation
// needed").
type ICMPv4 struct {
	Type, Code uint8
	ID, Seq    uint16
}

// ICMPv6 is an ICMPv6 header; the checksum (with pseudo-header) is computed.
// ID and Seq are as for [ICMPv4] (for "packet too big", ID<<16|Seq is the MTU).
type ICMPv6 struct {
	Type, Code uint8
	ID, Seq    uint16
}

// Payload is raw bytes: application data, or any header the package does not
// model (e.g. IPv6 extension headers).
type Payload []byte

func (v VLAN) etherType() uint16 {
	if v.TPID != 0 {
		return v.TPID
	}
	return EtherTypeVLAN
}
func (ARP) etherType() uint16  { return EtherTypeARP }
func (IPv4) etherType() uint16 { return EtherTypeIPv4 }
func (IPv6) etherType() uint16 { return EtherTypeIPv6 }

func (IPv4) ipProtocol() uint8   { return ProtoIPIP }
func (IPv6) ipProtocol() uint8   { return ProtoIPv6 }
func (TCP) ipProtocol() uint8    { return ProtoTCP }
func (UDP) ipProtocol() uint8    { return ProtoUDP }
func (ICMPv4) ipProtocol() uint8 { return ProtoICMPv4 }
func (ICMPv6) ipProtocol() uint8 { return ProtoICMPv6 }
