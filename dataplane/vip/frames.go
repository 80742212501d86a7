package vip

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
)

// Frame layout constants.
const (
	etherHeaderLen = 14
	arpBodyLen     = 28 // Ethernet/IPv4 ARP
	ipv6HeaderLen  = 40
	naLen          = 24 // ICMPv6 Neighbour Advertisement without options
	tllaOptLen     = 8  // target link-layer address option for a 6-byte MAC

	// ARPFrameLen is the length of a gratuitous ARP frame (no padding: the
	// NIC pads it to 60 bytes on the wire).
	ARPFrameLen = etherHeaderLen + arpBodyLen
	// NAFrameLen is the length of an unsolicited Neighbour Advertisement
	// frame.
	NAFrameLen = etherHeaderLen + ipv6HeaderLen + naLen + tllaOptLen

	etherTypeARP  = 0x0806
	etherTypeIPv4 = 0x0800
	etherTypeIPv6 = 0x86dd

	// ARP operations.
	arpOpRequest = 1
	arpOpReply   = 2

	protoICMPv6     = 58
	icmpv6NA        = 136
	naFlagRouter    = 0x80000000
	naFlagSolicited = 0x40000000
	naFlagOverride  = 0x20000000
	ndOptTargetLL   = 2
)

var (
	broadcastMAC = net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	zeroMAC      = net.HardwareAddr{0, 0, 0, 0, 0, 0}
	// allNodesMAC is the Ethernet multicast address of ff02::1.
	allNodesMAC = net.HardwareAddr{0x33, 0x33, 0, 0, 0, 1}
	allNodes    = netip.MustParseAddr("ff02::1")
)

// ErrFrame is returned (wrapped) by the encoders for an unusable hardware
// address or an IP address of the wrong family.
var ErrFrame = errors.New("vip: cannot encode frame")

func checkMAC(mac net.HardwareAddr) error {
	if len(mac) != 6 {
		return fmt.Errorf("%w: hardware address %q is not a 6-byte Ethernet address", ErrFrame, mac)
	}
	return nil
}

// GARPRequest returns a gratuitous ARP request announcing that vip is at
// mac: Ethernet broadcast, ARP op 1 (request), sender = target = vip,
// sender MAC = mac, target MAC = tha (keepalived sends ff:ff:ff:ff:ff:ff;
// RFC 5227's ARP Announcement uses zeros; receivers ignore it). It is the
// form keepalived sends.
func GARPRequest(mac net.HardwareAddr, vip netip.Addr, tha net.HardwareAddr) ([]byte, error) {
	if err := checkMAC(tha); err != nil {
		return nil, fmt.Errorf("target %w", err)
	}
	return arpFrame(arpOpRequest, mac, vip, tha)
}

// GARPReply returns a gratuitous ARP reply announcing that vip is at mac:
// Ethernet broadcast, ARP op 2 (reply), sender = target = vip, and sender
// MAC = target MAC = mac. The target MAC must equal the sender's: that is
// the gratuitous reply of RFC 5944 §4.6, and Linux treats a reply as
// gratuitous (overriding the locktime) only then (arp_is_garp).
func GARPReply(mac net.HardwareAddr, vip netip.Addr) ([]byte, error) {
	return arpFrame(arpOpReply, mac, vip, mac)
}

func arpFrame(op uint16, mac net.HardwareAddr, vip netip.Addr, tha net.HardwareAddr) ([]byte, error) {
	if err := checkMAC(mac); err != nil {
		return nil, err
	}
	if !vip.Is4() {
		return nil, fmt.Errorf("%w: ARP needs an IPv4 address, not %v", ErrFrame, vip)
	}
	b := make([]byte, ARPFrameLen)
	copy(b[0:6], broadcastMAC)
	copy(b[6:12], mac)
	binary.BigEndian.PutUint16(b[12:14], etherTypeARP)
	a := b[etherHeaderLen:]
	binary.BigEndian.PutUint16(a[0:2], 1) // hardware type: Ethernet
	binary.BigEndian.PutUint16(a[2:4], etherTypeIPv4)
	a[4] = 6 // hardware address length
	a[5] = 4 // protocol address length
	binary.BigEndian.PutUint16(a[6:8], op)
	ip := vip.As4()
	copy(a[8:14], mac)
	copy(a[14:18], ip[:])
	copy(a[18:24], tha)
	copy(a[24:28], ip[:])
	return b, nil
}

// UnsolicitedNA returns an unsolicited IPv6 Neighbour Advertisement
// (RFC 4861 §7.2.6) announcing that vip is at mac: Ethernet 33:33:00:00:00:01,
// IPv6 from vip to ff02::1 with hop limit 255, ICMPv6 type 136 with the
// Override flag set, Solicited clear, Router as given, target vip, and a
// target link-layer address option carrying mac. The ICMPv6 checksum covers
// the IPv6 pseudo-header.
//
// router must reflect whether the sender forwards IPv6 on that interface:
// a receiver that sees R=0 for an address it uses as a router drops it from
// its default router list (keepalived PR #200, radvd #82).
func UnsolicitedNA(mac net.HardwareAddr, vip netip.Addr, router bool) ([]byte, error) {
	if err := checkMAC(mac); err != nil {
		return nil, err
	}
	if !vip.Is6() || vip.Is4In6() || vip.IsMulticast() || vip.IsUnspecified() {
		return nil, fmt.Errorf("%w: a Neighbour Advertisement needs a unicast IPv6 address, not %v", ErrFrame, vip)
	}
	vip = vip.WithZone("")
	b := make([]byte, NAFrameLen)
	copy(b[0:6], allNodesMAC)
	copy(b[6:12], mac)
	binary.BigEndian.PutUint16(b[12:14], etherTypeIPv6)

	ip6 := b[etherHeaderLen : etherHeaderLen+ipv6HeaderLen]
	ip6[0] = 0x60 // version 6, traffic class 0, flow label 0
	binary.BigEndian.PutUint16(ip6[4:6], naLen+tllaOptLen)
	ip6[6] = protoICMPv6
	ip6[7] = 255 // hop limit: receivers drop ND messages with any other value
	src, dst := vip.As16(), allNodes.As16()
	copy(ip6[8:24], src[:])
	copy(ip6[24:40], dst[:])

	icmp := b[etherHeaderLen+ipv6HeaderLen:]
	icmp[0] = icmpv6NA
	icmp[1] = 0 // code
	flags := uint32(naFlagOverride)
	if router {
		flags |= naFlagRouter
	}
	binary.BigEndian.PutUint32(icmp[4:8], flags)
	copy(icmp[8:24], src[:])
	icmp[24] = ndOptTargetLL
	icmp[25] = 1 // option length in units of 8 bytes
	copy(icmp[26:32], mac)
	binary.BigEndian.PutUint16(icmp[2:4], icmpv6Checksum(src, dst, icmp))
	return b, nil
}

// icmpv6Checksum is the Internet checksum of the IPv6 pseudo-header (RFC 8200
// §8.1: source, destination, upper-layer length, next header 58) followed by
// msg, whose checksum field must be zero.
func icmpv6Checksum(src, dst [16]byte, msg []byte) uint16 {
	var sum uint32
	add := func(b []byte) {
		for i := 0; i+1 < len(b); i += 2 {
			sum += uint32(b[i])<<8 | uint32(b[i+1])
		}
		if len(b)%2 == 1 {
			sum += uint32(b[len(b)-1]) << 8
		}
	}
	add(src[:])
	add(dst[:])
	var tail [8]byte
	binary.BigEndian.PutUint32(tail[0:4], uint32(len(msg)))
	tail[7] = protoICMPv6
	add(tail[:])
	add(msg)
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}
