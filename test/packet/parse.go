package packet

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
)

// Packet is a parsed frame.
type Packet struct {
	// Layers are the decoded headers, outermost first, as pointers (*Ethernet,
	// *IPv4, ..., Payload). Every field the builder would compute is left for
	// it to compute, and every other field is explicit (Types, Protocols,
	// TTLs), so Build(p.Layers...) re-creates the frame without its Padding,
	// with correct checksums.
	Layers []Layer
	// Padding is what follows the end of the IP packet (or ARP message)
	// inside the frame: Ethernet padding to the 60-byte minimum.
	Padding []byte

	checksums []checksumCheck
}

// checksumCheck is one checksum found while parsing.
type checksumCheck struct {
	what      string
	ok        bool // the data sums to zero, field included
	got, want uint16
}

// Parse decodes frame: Ethernet, up to two VLAN tags, ARP, IPv4 and IPv6
// (also nested, IP-in-IP), TCP, UDP, ICMPv4 and ICMPv6. Whatever it does not
// decode (other EtherTypes or protocols, IPv6 extension headers, IPv4
// fragments) becomes a Payload layer. It fails when a header is cut short or
// a length field disagrees with the bytes present; checksums are only
// checked by [Verify].
func Parse(frame []byte) (*Packet, error) {
	p := &Packet{}
	if len(frame) < EthernetLen {
		return nil, fmt.Errorf("packet: frame of %d bytes is shorter than an Ethernet header", len(frame))
	}
	eth := &Ethernet{
		Dst:  net.HardwareAddr(clone(frame[0:6])),
		Src:  net.HardwareAddr(clone(frame[6:12])),
		Type: binary.BigEndian.Uint16(frame[12:]),
	}
	p.Layers = append(p.Layers, eth)
	b, etype := frame[EthernetLen:], eth.Type

	for tags := 0; etype == EtherTypeVLAN || etype == EtherTypeQinQ; tags++ {
		if tags == 2 || len(b) < VLANLen {
			return nil, fmt.Errorf("packet: VLAN tag %d cut short or more than two tags", tags+1)
		}
		tci := binary.BigEndian.Uint16(b)
		v := &VLAN{
			TPID:     etype,
			Priority: uint8(tci >> 13),
			DropOK:   tci&(1<<12) != 0,
			ID:       tci & 0xfff,
			Type:     binary.BigEndian.Uint16(b[2:]),
		}
		p.Layers = append(p.Layers, v)
		b, etype = b[VLANLen:], v.Type
	}

	var err error
	switch etype {
	case EtherTypeARP:
		err = p.parseARP(b)
	case EtherTypeIPv4, EtherTypeIPv6:
		var rest []byte
		if rest, err = p.parseIP(b, etype == EtherTypeIPv4); err == nil {
			p.Padding = rest
		}
	default:
		p.addPayload(b)
	}
	if err != nil {
		return nil, fmt.Errorf("packet: %w", err)
	}
	return p, nil
}

// Verify parses frame and checks every checksum in it (IPv4 header, TCP,
// UDP, ICMPv4, ICMPv6), so it accepts exactly what Parse accepts with correct
// checksums.
func Verify(frame []byte) error {
	p, err := Parse(frame)
	if err != nil {
		return err
	}
	var errs []error
	for _, c := range p.checksums {
		if !c.ok {
			errs = append(errs, fmt.Errorf("packet: %s checksum is %#04x, want %#04x", c.what, c.got, c.want))
		}
	}
	return errors.Join(errs...)
}

func clone(b []byte) []byte { return append([]byte(nil), b...) }

func (p *Packet) addPayload(b []byte) {
	if len(b) > 0 {
		p.Layers = append(p.Layers, Payload(clone(b)))
	}
}

// addChecksum records the checksum field at b[at:] of data b. Like a
// receiving stack, it accepts the field when the checksum over the data,
// field included, is 0, so both encodings of zero (0x0000 and 0xffff) that
// incremental updates (RFC 1624) may leave pass. want is the value a full
// computation gives, for the error message.
func (p *Packet) addChecksum(what string, b []byte, at int, sum func([]byte) uint16) {
	zeroed := clone(b)
	zeroed[at], zeroed[at+1] = 0, 0
	p.checksums = append(p.checksums, checksumCheck{
		what: what,
		ok:   sum(b) == 0,
		got:  binary.BigEndian.Uint16(b[at:]),
		want: sum(zeroed),
	})
}

func (p *Packet) parseARP(b []byte) error {
	if len(b) < ARPLen {
		return fmt.Errorf("ARP message cut short: %d bytes", len(b))
	}
	if binary.BigEndian.Uint16(b) != 1 || binary.BigEndian.Uint16(b[2:]) != EtherTypeIPv4 || b[4] != 6 || b[5] != 4 {
		p.addPayload(b) // not Ethernet/IPv4 ARP: left undecoded
		return nil
	}
	p.Layers = append(p.Layers, &ARP{
		Op:        binary.BigEndian.Uint16(b[6:]),
		SenderMAC: net.HardwareAddr(clone(b[8:14])),
		SenderIP:  netip.AddrFrom4([4]byte(b[14:18])),
		TargetMAC: net.HardwareAddr(clone(b[18:24])),
		TargetIP:  netip.AddrFrom4([4]byte(b[24:28])),
	})
	p.Padding = clone(b[ARPLen:])
	return nil
}

// parseIP decodes the IP packet at the start of b and everything inside it,
// and returns the bytes after its end.
func (p *Packet) parseIP(b []byte, v4 bool) (rest []byte, err error) {
	var (
		body     []byte
		proto    uint8
		src, dst netip.Addr
		ip       Layer
	)
	if v4 {
		h, hlen, total, err := parseIPv4Header(b)
		if err != nil {
			return nil, err
		}
		p.addChecksum("IPv4 header", b[:hlen], 10, Checksum)
		ip, body, rest, proto, src, dst = h, b[hlen:total], b[total:], h.Protocol, h.Src, h.Dst
		if h.FragmentOffset != 0 || h.Flags&IPv4MoreFragments != 0 {
			p.Layers = append(p.Layers, ip)
			p.addPayload(body) // a fragment: the L4 checksum spans the whole datagram
			return clone(rest), nil
		}
	} else {
		if len(b) < IPv6Len {
			return nil, fmt.Errorf("IPv6 header cut short: %d bytes", len(b))
		}
		vtf := binary.BigEndian.Uint32(b)
		if vtf>>28 != 6 {
			return nil, fmt.Errorf("IPv6 header has version %d", vtf>>28)
		}
		plen := int(binary.BigEndian.Uint16(b[4:]))
		if IPv6Len+plen > len(b) {
			return nil, fmt.Errorf("IPv6 payload length %d past the %d bytes present", plen, len(b)-IPv6Len)
		}
		h := &IPv6{
			TrafficClass: uint8(vtf >> 20),
			FlowLabel:    vtf & 0xfffff,
			NextHeader:   b[6],
			HopLimit:     b[7],
			Src:          netip.AddrFrom16([16]byte(b[8:24])),
			Dst:          netip.AddrFrom16([16]byte(b[24:40])),
		}
		ip, body, rest, proto, src, dst = h, b[IPv6Len:IPv6Len+plen], b[IPv6Len+plen:], h.NextHeader, h.Src, h.Dst
	}
	p.Layers = append(p.Layers, ip)

	switch proto {
	case ProtoIPIP, ProtoIPv6:
		inner, err := p.parseIP(body, proto == ProtoIPIP)
		if err != nil {
			return nil, fmt.Errorf("inner IP: %w", err)
		}
		if len(inner) != 0 {
			return nil, fmt.Errorf("inner IP packet is %d bytes shorter than the outer payload", len(inner))
		}
	case ProtoTCP:
		err = p.parseTCP(body, src, dst)
	case ProtoUDP:
		err = p.parseUDP(body, src, dst)
	case ProtoICMPv4:
		if v4 {
			err = p.parseICMP(body, src, dst, false)
		} else {
			p.addPayload(body)
		}
	case ProtoICMPv6:
		if !v4 {
			err = p.parseICMP(body, src, dst, true)
		} else {
			p.addPayload(body)
		}
	default:
		p.addPayload(body)
	}
	if err != nil {
		return nil, err
	}
	return clone(rest), nil
}

func parseIPv4Header(b []byte) (h *IPv4, hlen, total int, err error) {
	if len(b) < IPv4MinLen {
		return nil, 0, 0, fmt.Errorf("IPv4 header cut short: %d bytes", len(b))
	}
	if b[0]>>4 != 4 {
		return nil, 0, 0, fmt.Errorf("IPv4 header has version %d", b[0]>>4)
	}
	hlen = int(b[0]&0xf) * 4
	total = int(binary.BigEndian.Uint16(b[2:]))
	switch {
	case hlen < IPv4MinLen:
		return nil, 0, 0, fmt.Errorf("IPv4 header length %d under 20", hlen)
	case hlen > len(b):
		return nil, 0, 0, fmt.Errorf("IPv4 header length %d past the %d bytes present", hlen, len(b))
	case total < hlen:
		return nil, 0, 0, fmt.Errorf("IPv4 total length %d under the header length %d", total, hlen)
	case total > len(b):
		return nil, 0, 0, fmt.Errorf("IPv4 total length %d past the %d bytes present", total, len(b))
	}
	frag := binary.BigEndian.Uint16(b[6:])
	h = &IPv4{
		TOS:            b[1],
		ID:             binary.BigEndian.Uint16(b[4:]),
		Flags:          uint8(frag >> 13),
		FragmentOffset: frag & 0x1fff,
		TTL:            b[8],
		Protocol:       b[9],
		Src:            netip.AddrFrom4([4]byte(b[12:16])),
		Dst:            netip.AddrFrom4([4]byte(b[16:20])),
	}
	if hlen > IPv4MinLen {
		h.Options = clone(b[IPv4MinLen:hlen])
	}
	return h, hlen, total, nil
}

func (p *Packet) parseTCP(b []byte, src, dst netip.Addr) error {
	if len(b) < TCPMinLen {
		return fmt.Errorf("TCP header cut short: %d bytes", len(b))
	}
	hlen := int(b[12]>>4) * 4
	if hlen < TCPMinLen || hlen > len(b) {
		return fmt.Errorf("TCP data offset %d bytes outside [20, %d]", hlen, len(b))
	}
	t := &TCP{
		SrcPort: binary.BigEndian.Uint16(b),
		DstPort: binary.BigEndian.Uint16(b[2:]),
		Seq:     binary.BigEndian.Uint32(b[4:]),
		Ack:     binary.BigEndian.Uint32(b[8:]),
		Flags:   b[13],
		Window:  binary.BigEndian.Uint16(b[14:]),
		Urgent:  binary.BigEndian.Uint16(b[18:]),
	}
	if hlen > TCPMinLen {
		t.Options = clone(b[TCPMinLen:hlen])
	}
	p.Layers = append(p.Layers, t)
	p.addChecksum("TCP", b, 16, func(s []byte) uint16 { return TransportChecksum(src, dst, ProtoTCP, s) })
	p.addPayload(b[hlen:])
	return nil
}

func (p *Packet) parseUDP(b []byte, src, dst netip.Addr) error {
	if len(b) < UDPLen {
		return fmt.Errorf("UDP header cut short: %d bytes", len(b))
	}
	if n := int(binary.BigEndian.Uint16(b[4:])); n != len(b) {
		return fmt.Errorf("UDP length %d, but the IP payload is %d bytes", n, len(b))
	}
	u := &UDP{
		SrcPort:      binary.BigEndian.Uint16(b),
		DstPort:      binary.BigEndian.Uint16(b[2:]),
		ZeroChecksum: binary.BigEndian.Uint16(b[6:]) == 0,
	}
	p.Layers = append(p.Layers, u)
	switch {
	case u.ZeroChecksum && src.Is4():
		// "no checksum": allowed over IPv4 only
	case u.ZeroChecksum:
		p.checksums = append(p.checksums, checksumCheck{what: "UDP over IPv6 (0 = none is not allowed)",
			want: TransportChecksum(src, dst, ProtoUDP, b)})
	default:
		p.addChecksum("UDP", b, 6, func(s []byte) uint16 { return TransportChecksum(src, dst, ProtoUDP, s) })
	}
	p.addPayload(b[UDPLen:])
	return nil
}

func (p *Packet) parseICMP(b []byte, src, dst netip.Addr, v6 bool) error {
	if len(b) < ICMPHeaderLen {
		return fmt.Errorf("ICMP header cut short: %d bytes", len(b))
	}
	typ, code := b[0], b[1]
	id, seq := binary.BigEndian.Uint16(b[4:]), binary.BigEndian.Uint16(b[6:])
	if v6 {
		p.Layers = append(p.Layers, &ICMPv6{Type: typ, Code: code, ID: id, Seq: seq})
		p.addChecksum("ICMPv6", b, 2, func(s []byte) uint16 { return TransportChecksum(src, dst, ProtoICMPv6, s) })
	} else {
		p.Layers = append(p.Layers, &ICMPv4{Type: typ, Code: code, ID: id, Seq: seq})
		p.addChecksum("ICMPv4", b, 2, Checksum)
	}
	p.addPayload(b[ICMPHeaderLen:])
	return nil
}
