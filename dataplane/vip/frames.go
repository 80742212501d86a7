package vip

// The frames PacketAnnouncer sends. The ARP and Neighbour Advertisement
// messages and the Ethernet header are marshalled by mdlayher/arp,
// mdlayher/ndp (with the ICMPv6 checksum) and mdlayher/ethernet. What is
// still written here, and why:
//
//   - The 40-byte IPv6 header of the NA. mdlayher/ndp sends its messages
//     through an ICMPv6 socket (ndp.Conn) and leaves that header to the
//     kernel, and golang.org/x/net/ipv6 only parses headers. ndp.Conn
//     itself is not used because the NA must leave by a packet socket, as
//     the ARP frames do. Sent by ndp.Conn (tried on Linux 6.18, with a
//     chain like the fence's), the NA carries the kernel's automatic flow
//     label (ndp.Conn gives no access to IPV6_AUTOFLOWLABEL), so it is no
//     longer the frame below; and it passes the inet output hook, where
//     the fence's output chain drops an NA for an unleased VIP with EPERM
//     before the egress chain sees it, so such a drop would neither
//     surface as the egress chain's ENOBUFS ("dropped by the kernel ...
//     VIP fence", announce_linux.go) nor be counted in egress_IFNAME
//     (docs/fencing.md; dataplane/fence's TestFenceEgressPacketSocket).
//   - The trimming of padding (etherFrame): ethernet.Frame pads a payload
//     shorter than 46 bytes, so its ARP frame is 60 bytes. raftlb sends
//     the 42-byte frame, as keepalived 2.2.7 does (its captured GARP has
//     no trailer); a real NIC pads it on the wire, a veth or a bridge
//     carries it as it is. For the same reason the ARP frames are not sent
//     with arp.Client, whose WriteTo sends the padded frame.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/ndp"
	"golang.org/x/net/ipv6"
)

// Frame layout constants.
const (
	etherHeaderLen = 14
	arpBodyLen     = 28 // Ethernet/IPv4 ARP
	naLen          = 24 // ICMPv6 Neighbour Advertisement without options
	tllaOptLen     = 8  // target link-layer address option for a 6-byte MAC

	// ARPFrameLen is the length of a gratuitous ARP frame (no padding: the
	// NIC pads it to 60 bytes on the wire).
	ARPFrameLen = etherHeaderLen + arpBodyLen
	// NAFrameLen is the length of an unsolicited Neighbour Advertisement
	// frame.
	NAFrameLen = etherHeaderLen + ipv6.HeaderLen + naLen + tllaOptLen

	protoICMPv6 = 58 // IPv6 next header: ICMPv6
)

var (
	broadcastMAC = ethernet.Broadcast
	zeroMAC      = net.HardwareAddr{0, 0, 0, 0, 0, 0}
	// allNodesMAC is the Ethernet multicast address of ff02::1.
	allNodesMAC = net.HardwareAddr{0x33, 0x33, 0, 0, 0, 1}
	allNodes    = netip.IPv6LinkLocalAllNodes()
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
	return arpFrame(arp.OperationRequest, mac, vip, tha)
}

// GARPReply returns a gratuitous ARP reply announcing that vip is at mac:
// Ethernet broadcast, ARP op 2 (reply), sender = target = vip, and sender
// MAC = target MAC = mac. The target MAC must equal the sender's: that is
// the gratuitous reply of RFC 5944 §4.6, and Linux treats a reply as
// gratuitous (overriding the locktime) only then (arp_is_garp).
func GARPReply(mac net.HardwareAddr, vip netip.Addr) ([]byte, error) {
	return arpFrame(arp.OperationReply, mac, vip, mac)
}

func arpFrame(op arp.Operation, mac net.HardwareAddr, vip netip.Addr, tha net.HardwareAddr) ([]byte, error) {
	if err := checkMAC(mac); err != nil {
		return nil, err
	}
	if !vip.Is4() {
		return nil, fmt.Errorf("%w: ARP needs an IPv4 address, not %v", ErrFrame, vip)
	}
	p, err := arp.NewPacket(op, mac, vip, tha, vip)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrFrame, err)
	}
	body, err := p.MarshalBinary()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrFrame, err)
	}
	return etherFrame(broadcastMAC, mac, ethernet.EtherTypeARP, body)
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
	na := &ndp.NeighborAdvertisement{
		Router:        router,
		Override:      true,
		TargetAddress: vip,
		Options:       []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Target, Addr: mac}},
	}
	icmp, err := ndp.MarshalMessageChecksum(na, vip, allNodes)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrFrame, err)
	}
	// The IPv6 header (no library here marshals one: see the top of the
	// file).
	ip6 := make([]byte, ipv6.HeaderLen, ipv6.HeaderLen+len(icmp))
	ip6[0] = 0x60 // version 6, traffic class 0, flow label 0
	binary.BigEndian.PutUint16(ip6[4:6], uint16(len(icmp)))
	ip6[6] = protoICMPv6
	ip6[7] = ndp.HopLimit // receivers drop ND messages with any other value
	src, dst := vip.As16(), allNodes.As16()
	copy(ip6[8:24], src[:])
	copy(ip6[24:40], dst[:])
	return etherFrame(allNodesMAC, mac, ethernet.EtherTypeIPv6, append(ip6, icmp...))
}

// etherFrame is payload in an Ethernet II frame from src to dst, without
// the padding ethernet.Frame adds to a payload shorter than 46 bytes (see
// the top of the file).
func etherFrame(dst, src net.HardwareAddr, t ethernet.EtherType, payload []byte) ([]byte, error) {
	f := ethernet.Frame{Destination: dst, Source: src, EtherType: t, Payload: payload}
	b, err := f.MarshalBinary()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrFrame, err)
	}
	return b[:etherHeaderLen+len(payload)], nil
}
