package packet

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
)

// Build serializes layers, outermost first, into one frame, computing every
// length, type and checksum field the layers leave to it.
func Build(layers ...Layer) ([]byte, error) {
	var b []byte
	for i := len(layers) - 1; i >= 0; i-- {
		var next, ip Layer
		if i+1 < len(layers) {
			next = layers[i+1]
		}
		for j := i - 1; j >= 0; j-- {
			if isIP(layers[j]) {
				ip = layers[j]
				break
			}
		}
		var err error
		if b, err = layers[i].encode(b, next, ip); err != nil {
			return nil, fmt.Errorf("packet: layer %d (%T): %w", i, layers[i], err)
		}
	}
	return b, nil
}

// MustBuild is [Build] for tests: it panics on an invalid layer stack.
func MustBuild(layers ...Layer) []byte {
	b, err := Build(layers...)
	if err != nil {
		panic(err)
	}
	return b
}

func isIP(l Layer) bool {
	switch l.(type) {
	case IPv4, *IPv4, IPv6, *IPv6:
		return true
	}
	return false
}

// ipAddrs returns the addresses of the IP layer ip (IPv4 or IPv6, value or
// pointer) for a pseudo-header.
func ipAddrs(ip Layer) (src, dst netip.Addr, err error) {
	switch h := ip.(type) {
	case IPv4:
		return h.Src, h.Dst, nil
	case *IPv4:
		return h.Src, h.Dst, nil
	case IPv6:
		return h.Src, h.Dst, nil
	case *IPv6:
		return h.Src, h.Dst, nil
	}
	return netip.Addr{}, netip.Addr{}, fmt.Errorf("needs an IPv4 or IPv6 layer before it")
}

// nextEtherType is t, or the EtherType of next when t is 0.
func nextEtherType(t uint16, next Layer) (uint16, error) {
	if t != 0 {
		return t, nil
	}
	if n, ok := next.(etherTyper); ok {
		return n.etherType(), nil
	}
	return 0, fmt.Errorf("the type is 0 and the next layer (%T) has no EtherType", next)
}

// nextProtocol is p, or the IP protocol of next when p is 0 and next has one.
func nextProtocol(p uint8, next Layer) uint8 {
	if p != 0 {
		return p
	}
	if n, ok := next.(ipProtocoler); ok {
		return n.ipProtocol()
	}
	return 0
}

func mac(a net.HardwareAddr) ([]byte, error) {
	switch len(a) {
	case 0:
		return make([]byte, 6), nil
	case 6:
		return a, nil
	}
	return nil, fmt.Errorf("MAC address %v is not 6 bytes", a)
}

func (e Ethernet) encode(payload []byte, next, _ Layer) ([]byte, error) {
	dst, err := mac(e.Dst)
	if err != nil {
		return nil, err
	}
	src, err := mac(e.Src)
	if err != nil {
		return nil, err
	}
	t, err := nextEtherType(e.Type, next)
	if err != nil {
		return nil, err
	}
	b := make([]byte, 0, EthernetLen+len(payload))
	b = append(b, dst...)
	b = append(b, src...)
	b = binary.BigEndian.AppendUint16(b, t)
	return append(b, payload...), nil
}

func (v VLAN) encode(payload []byte, next, _ Layer) ([]byte, error) {
	if v.ID > 0xfff || v.Priority > 7 {
		return nil, fmt.Errorf("VLAN ID %d or priority %d out of range", v.ID, v.Priority)
	}
	t, err := nextEtherType(v.Type, next)
	if err != nil {
		return nil, err
	}
	tci := uint16(v.Priority)<<13 | v.ID
	if v.DropOK {
		tci |= 1 << 12
	}
	b := make([]byte, 0, VLANLen+len(payload))
	b = binary.BigEndian.AppendUint16(b, tci)
	b = binary.BigEndian.AppendUint16(b, t)
	return append(b, payload...), nil
}

func (a ARP) encode(payload []byte, _, _ Layer) ([]byte, error) {
	if !a.SenderIP.Is4() || !a.TargetIP.Is4() {
		return nil, fmt.Errorf("sender %v and target %v must be IPv4", a.SenderIP, a.TargetIP)
	}
	sha, err := mac(a.SenderMAC)
	if err != nil {
		return nil, err
	}
	tha, err := mac(a.TargetMAC)
	if err != nil {
		return nil, err
	}
	b := make([]byte, 0, ARPLen+len(payload))
	b = binary.BigEndian.AppendUint16(b, 1) // hardware: Ethernet
	b = binary.BigEndian.AppendUint16(b, EtherTypeIPv4)
	b = append(b, 6, 4)
	b = binary.BigEndian.AppendUint16(b, a.Op)
	b = append(b, sha...)
	b = append(b, a.SenderIP.AsSlice()...)
	b = append(b, tha...)
	b = append(b, a.TargetIP.AsSlice()...)
	return append(b, payload...), nil
}

func (h IPv4) encode(payload []byte, next, _ Layer) ([]byte, error) {
	if !h.Src.Is4() || !h.Dst.Is4() {
		return nil, fmt.Errorf("addresses %v and %v must be IPv4", h.Src, h.Dst)
	}
	if len(h.Options)%4 != 0 || len(h.Options) > maxIPv4Options {
		return nil, fmt.Errorf("options length %d is not a multiple of 4 up to %d", len(h.Options), maxIPv4Options)
	}
	if h.Flags > 7 || h.FragmentOffset > 0x1fff {
		return nil, fmt.Errorf("flags %#x or fragment offset %d out of range", h.Flags, h.FragmentOffset)
	}
	hlen := IPv4MinLen + len(h.Options)
	total := hlen + len(payload)
	if total > 0xffff {
		return nil, fmt.Errorf("total length %d over 65535", total)
	}
	ttl := h.TTL
	if ttl == 0 {
		ttl = defaultTTL
	}
	b := make([]byte, 0, total)
	b = append(b, 4<<4|uint8(hlen/4), h.TOS)
	b = binary.BigEndian.AppendUint16(b, uint16(total))
	b = binary.BigEndian.AppendUint16(b, h.ID)
	b = binary.BigEndian.AppendUint16(b, uint16(h.Flags)<<13|h.FragmentOffset)
	b = append(b, ttl, nextProtocol(h.Protocol, next), 0, 0)
	b = append(b, h.Src.AsSlice()...)
	b = append(b, h.Dst.AsSlice()...)
	b = append(b, h.Options...)
	binary.BigEndian.PutUint16(b[10:], Checksum(b[:hlen]))
	return append(b, payload...), nil
}

func (h IPv6) encode(payload []byte, next, _ Layer) ([]byte, error) {
	if !h.Src.Is6() || !h.Dst.Is6() {
		return nil, fmt.Errorf("addresses %v and %v must be IPv6", h.Src, h.Dst)
	}
	if h.FlowLabel > 0xfffff {
		return nil, fmt.Errorf("flow label %#x over 20 bits", h.FlowLabel)
	}
	if len(payload) > 0xffff {
		return nil, fmt.Errorf("payload length %d over 65535 (jumbograms are not built)", len(payload))
	}
	hops := h.HopLimit
	if hops == 0 {
		hops = defaultTTL
	}
	b := make([]byte, 0, IPv6Len+len(payload))
	b = binary.BigEndian.AppendUint32(b, 6<<28|uint32(h.TrafficClass)<<20|h.FlowLabel)
	b = binary.BigEndian.AppendUint16(b, uint16(len(payload)))
	b = append(b, nextProtocol(h.NextHeader, next), hops)
	b = append(b, h.Src.AsSlice()...)
	b = append(b, h.Dst.AsSlice()...)
	return append(b, payload...), nil
}

// withChecksum writes the transport checksum of segment (header+payload)
// into segment[at:at+2], pseudo-header from the IP layer ip.
func withChecksum(segment []byte, at int, proto uint8, ip Layer) ([]byte, error) {
	src, dst, err := ipAddrs(ip)
	if err != nil {
		return nil, err
	}
	if src.Is4() != dst.Is4() {
		return nil, fmt.Errorf("IP layer mixes families: %v -> %v", src, dst)
	}
	binary.BigEndian.PutUint16(segment[at:], TransportChecksum(src, dst, proto, segment))
	return segment, nil
}

func (t TCP) encode(payload []byte, _, ip Layer) ([]byte, error) {
	if len(t.Options)%4 != 0 || len(t.Options) > 40 {
		return nil, fmt.Errorf("options length %d is not a multiple of 4 up to 40", len(t.Options))
	}
	hlen := TCPMinLen + len(t.Options)
	b := make([]byte, 0, hlen+len(payload))
	b = binary.BigEndian.AppendUint16(b, t.SrcPort)
	b = binary.BigEndian.AppendUint16(b, t.DstPort)
	b = binary.BigEndian.AppendUint32(b, t.Seq)
	b = binary.BigEndian.AppendUint32(b, t.Ack)
	b = append(b, uint8(hlen/4)<<4, t.Flags)
	b = binary.BigEndian.AppendUint16(b, t.Window)
	b = append(b, 0, 0) // checksum
	b = binary.BigEndian.AppendUint16(b, t.Urgent)
	b = append(b, t.Options...)
	b = append(b, payload...)
	return withChecksum(b, 16, ProtoTCP, ip)
}

func (u UDP) encode(payload []byte, _, ip Layer) ([]byte, error) {
	n := UDPLen + len(payload)
	if n > 0xffff {
		return nil, fmt.Errorf("length %d over 65535", n)
	}
	b := make([]byte, 0, n)
	b = binary.BigEndian.AppendUint16(b, u.SrcPort)
	b = binary.BigEndian.AppendUint16(b, u.DstPort)
	b = binary.BigEndian.AppendUint16(b, uint16(n))
	b = append(b, 0, 0) // checksum
	b = append(b, payload...)
	src, _, err := ipAddrs(ip)
	if err != nil {
		return nil, err
	}
	if u.ZeroChecksum {
		if !src.Is4() {
			return nil, fmt.Errorf("a zero UDP checksum is only allowed over IPv4")
		}
		return b, nil
	}
	if b, err = withChecksum(b, 6, ProtoUDP, ip); err != nil {
		return nil, err
	}
	if binary.BigEndian.Uint16(b[6:]) == 0 { // 0 means "no checksum": send all ones
		binary.BigEndian.PutUint16(b[6:], 0xffff)
	}
	return b, nil
}

func icmpHeader(typ, code uint8, id, seq uint16, payload []byte) []byte {
	b := make([]byte, 0, ICMPHeaderLen+len(payload))
	b = append(b, typ, code, 0, 0)
	b = binary.BigEndian.AppendUint16(b, id)
	b = binary.BigEndian.AppendUint16(b, seq)
	return append(b, payload...)
}

func (c ICMPv4) encode(payload []byte, _, _ Layer) ([]byte, error) {
	b := icmpHeader(c.Type, c.Code, c.ID, c.Seq, payload)
	binary.BigEndian.PutUint16(b[2:], Checksum(b)) // no pseudo-header for ICMPv4
	return b, nil
}

func (c ICMPv6) encode(payload []byte, _, ip Layer) ([]byte, error) {
	return withChecksum(icmpHeader(c.Type, c.Code, c.ID, c.Seq, payload), 2, ProtoICMPv6, ip)
}

func (p Payload) encode(payload []byte, _, _ Layer) ([]byte, error) {
	return append(append([]byte(nil), p...), payload...), nil
}
