package pcap

import (
	"encoding/binary"
	"net"
)

// Cooked is the Linux cooked-capture header (SLL or SLL2) that stands for
// the link-layer header in a capture on several interfaces (`tcpdump -i
// any`).
type Cooked struct {
	Protocol     uint16 // an EtherType for Ethernet-like devices (0x0800 IPv4, 0x86dd IPv6)
	PacketType   uint16 // 0 to us, 1 broadcast, 2 multicast, 3 to another host, 4 sent by us
	HardwareType uint16 // ARPHRD_* (1: Ethernet)
	Addr         net.HardwareAddr
	IfIndex      int // SLL2 only
}

// Network returns the network-layer packet of data captured with link
// type lt, with its protocol as an EtherType, for the link types without
// an Ethernet header: Linux cooked (SLL, SLL2) and raw IP (the protocol is
// then read from the IP version). ok is false for another link type or a
// packet too short for its header.
func Network(lt LinkType, data []byte) (proto uint16, packet []byte, ok bool) {
	switch lt {
	case LinkLinuxSLL, LinkLinuxSLL2:
		c, packet, ok := DecodeCooked(lt, data)
		return c.Protocol, packet, ok
	case LinkRaw, LinkIPv4, LinkIPv6:
		if len(data) == 0 {
			return 0, nil, false
		}
		switch data[0] >> 4 {
		case 4:
			return 0x0800, data, true
		case 6:
			return 0x86dd, data, true
		}
		return 0, data, true
	}
	return 0, nil, false
}

// DecodeCooked decodes the SLL (16 bytes) or SLL2 (20 bytes) header of
// data and returns what follows it.
func DecodeCooked(lt LinkType, b []byte) (Cooked, []byte, bool) {
	be := binary.BigEndian
	var c Cooked
	var addrOff, addrLen, hdrLen int
	switch lt {
	case LinkLinuxSLL:
		if len(b) < 16 {
			return c, nil, false
		}
		c = Cooked{PacketType: be.Uint16(b[0:2]), HardwareType: be.Uint16(b[2:4]), Protocol: be.Uint16(b[14:16])}
		addrOff, addrLen, hdrLen = 6, int(be.Uint16(b[4:6])), 16
	case LinkLinuxSLL2:
		if len(b) < 20 {
			return c, nil, false
		}
		c = Cooked{Protocol: be.Uint16(b[0:2]), IfIndex: int(int32(be.Uint32(b[4:8]))), HardwareType: be.Uint16(b[8:10]),
			PacketType: uint16(b[10])}
		addrOff, addrLen, hdrLen = 12, int(b[11]), 20
	default:
		return c, nil, false
	}
	c.Addr = net.HardwareAddr(append([]byte(nil), b[addrOff:addrOff+min(addrLen, 8)]...)) // the field has room for 8
	return c, b[hdrLen:], true
}
