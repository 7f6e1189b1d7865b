package packet

// first returns the first layer of type T in p, or the zero T.
func first[T Layer](p *Packet) T {
	for _, l := range p.Layers {
		if t, ok := l.(T); ok {
			return t
		}
	}
	var zero T
	return zero
}

// Ethernet returns the Ethernet header.
func (p *Packet) Ethernet() *Ethernet { return first[*Ethernet](p) }

// VLAN returns the outermost VLAN tag, or nil.
func (p *Packet) VLAN() *VLAN { return first[*VLAN](p) }

// ARP returns the ARP message, or nil.
func (p *Packet) ARP() *ARP { return first[*ARP](p) }

// IPv4 returns the outermost IPv4 header, or nil.
func (p *Packet) IPv4() *IPv4 { return first[*IPv4](p) }

// IPv6 returns the outermost IPv6 header, or nil.
func (p *Packet) IPv6() *IPv6 { return first[*IPv6](p) }

// TCP returns the TCP header, or nil.
func (p *Packet) TCP() *TCP { return first[*TCP](p) }

// UDP returns the UDP header, or nil.
func (p *Packet) UDP() *UDP { return first[*UDP](p) }

// ICMPv4 returns the ICMPv4 header, or nil.
func (p *Packet) ICMPv4() *ICMPv4 { return first[*ICMPv4](p) }

// ICMPv6 returns the ICMPv6 header, or nil.
func (p *Packet) ICMPv6() *ICMPv6 { return first[*ICMPv6](p) }

// Payload returns the undecoded bytes after the last header, or nil.
func (p *Packet) Payload() []byte { return first[Payload](p) }
