package vrrp

import (
	"encoding/binary"
	"net/netip"

	"github.com/mdlayher/ethernet"
)

// The frame helpers: a VRRP packet with the IP (and Ethernet) header it
// came in, for captures (raftlb vrrp decode) and for a sender on a packet
// socket. The Ethernet header, with any 802.1Q tags, is mdlayher/ethernet's.
// The IPv4 and IPv6 headers are parsed and written here: they are all a
// VRRP packet needs (IPv6 extension headers are not walked: a VRRP packet
// carries none, one behind them is reported as ErrNotVRRP).

// IPHeader is the IPv4 or IPv6 header of a VRRP packet.
type IPHeader struct {
	Src, Dst  netip.Addr
	TTL       uint8  // IPv4 TTL or IPv6 hop limit
	TOS       uint8  // IPv4 type of service or IPv6 traffic class (keepalived: 0xc0)
	ID        uint16 // IPv4 identification
	DF        bool   // IPv4 don't fragment (keepalived leaves it clear)
	FlowLabel uint32 // IPv6 flow label
	Options   []byte // IPv4 options, as received
	Protocol  uint8  // IPv4 protocol or IPv6 next header (Protocol for VRRP)
	// ChecksumOK reports whether the IPv4 header checksum was right
	// (always true for IPv6, which has none). Marshal computes it.
	ChecksumOK bool
}

const (
	ipv4HeaderLen = 20
	ipv6HeaderLen = 40
	ipv4FlagDF    = 0x4000
	ipv4FlagMF    = 0x2000
)

// Frame is a VRRP packet with its headers.
type Frame struct {
	// Ethernet is the link-layer header (its Payload is not kept), nil
	// for a packet decoded from its IP header on (DecodeIP).
	Ethernet *ethernet.Frame
	IP       IPHeader
	// VRRP is the decoded message; set also when it failed a check after
	// it was decoded (see Unmarshal).
	VRRP *Packet
	// Message is the VRRP message as received (the IP payload), for a tool
	// that shows more than the verdict (ChecksumOK). Marshal ignores it.
	Message []byte
}

// DecodeEthernet decodes an Ethernet frame carrying a VRRP packet over IPv4
// or IPv6. A frame of another EtherType or IP protocol is ErrNotVRRP.
// Padding after the IP packet is ignored. The errors and the partial
// result are those of DecodeIP.
func DecodeEthernet(b []byte) (*Frame, error) {
	var eth ethernet.Frame
	if err := eth.UnmarshalBinary(b); err != nil {
		return nil, errorf(ErrNotVRRP, "Ethernet header: %v", err)
	}
	if eth.EtherType != ethernet.EtherTypeIPv4 && eth.EtherType != ethernet.EtherTypeIPv6 {
		return nil, errorf(ErrNotVRRP, "EtherType 0x%04x", uint16(eth.EtherType))
	}
	payload := eth.Payload
	eth.Payload = nil
	f, err := DecodeIP(payload)
	if f != nil {
		f.Ethernet = &eth
	}
	return f, err
}

// DecodeIP decodes an IPv4 or IPv6 packet (from its IP header on) carrying
// VRRP, and checks the VRRP message with Unmarshal. Another IP protocol is
// ErrNotVRRP; a truncated or fragmented IP packet ErrIPHeader; a wrong IPv4
// header checksum ErrIPCheck (reported before any error of the VRRP message,
// whose fields are then suspect). Bytes after the IP packet's length are
// ignored. The frame is returned with the error whenever its IP header was
// decoded (its VRRP field when the message was, see Unmarshal).
func DecodeIP(b []byte) (*Frame, error) {
	if len(b) == 0 {
		return nil, errorf(ErrIPHeader, "empty packet")
	}
	var (
		f       Frame
		payload []byte
		err     error
	)
	version, hdrLen := int(b[0]>>4), ipv4HeaderLen
	switch version {
	case 4:
	case 6:
		hdrLen = ipv6HeaderLen
	default:
		return nil, errorf(ErrIPHeader, "IP version %d", version)
	}
	if len(b) < hdrLen {
		return nil, errorf(ErrIPHeader, "IPv%d header truncated: %d bytes", version, len(b))
	}
	if version == 4 {
		payload, err = f.IP.decode4(b)
	} else {
		payload, err = f.IP.decode6(b)
	}
	if !f.IP.Src.IsValid() {
		return nil, err // not even a whole IP header
	}
	if f.IP.Protocol != Protocol {
		return &f, errorf(ErrNotVRRP, "IP protocol %d", f.IP.Protocol)
	}
	if err != nil {
		return &f, err
	}
	f.Message = payload
	f.VRRP, err = Unmarshal(payload, f.IP.Src, f.IP.Dst, int(f.IP.TTL))
	if !f.IP.ChecksumOK {
		err = errorf(ErrIPCheck, "IPv4 header checksum 0x%04x is wrong", binary.BigEndian.Uint16(b[10:12]))
	}
	return &f, err
}

// decode4 parses the IPv4 header of b (at least 20 bytes) into h and
// returns the payload. The
// fields are filled in before the lengths are checked, so that a caller
// can tell a truncated VRRP packet from another protocol.
func (h *IPHeader) decode4(b []byte) ([]byte, error) {
	flags := binary.BigEndian.Uint16(b[6:8])
	*h = IPHeader{
		Src:      netip.AddrFrom4([4]byte(b[12:16])),
		Dst:      netip.AddrFrom4([4]byte(b[16:20])),
		TTL:      b[8],
		TOS:      b[1],
		ID:       binary.BigEndian.Uint16(b[4:6]),
		DF:       flags&ipv4FlagDF != 0,
		Protocol: b[9],
	}
	ihl, total := int(b[0]&0x0f)*4, int(binary.BigEndian.Uint16(b[2:4]))
	switch {
	case ihl < ipv4HeaderLen:
		return nil, errorf(ErrIPHeader, "IPv4 header length %d", ihl)
	case total < ihl:
		return nil, errorf(ErrIPHeader, "IPv4 total length %d shorter than its header (%d)", total, ihl)
	case total > len(b):
		return nil, errorf(ErrIPHeader, "IPv4 packet truncated: %d of %d bytes", len(b), total)
	case flags&ipv4FlagMF != 0 || flags&0x1fff != 0:
		return nil, errorf(ErrIPHeader, "IPv4 fragment (flags/offset 0x%04x)", flags)
	}
	var c csum
	c.add(b[:ihl])
	h.ChecksumOK = c.final() == 0
	if ihl > ipv4HeaderLen {
		h.Options = append([]byte(nil), b[ipv4HeaderLen:ihl]...)
	}
	return b[ihl:total], nil
}

// decode6 parses the IPv6 header of b (at least 40 bytes) into h and
// returns the payload.
func (h *IPHeader) decode6(b []byte) ([]byte, error) {
	w := binary.BigEndian.Uint32(b[0:4])
	*h = IPHeader{
		Src:        netip.AddrFrom16([16]byte(b[8:24])),
		Dst:        netip.AddrFrom16([16]byte(b[24:40])),
		TTL:        b[7],
		TOS:        uint8(w >> 20),
		FlowLabel:  w & 0xfffff,
		Protocol:   b[6],
		ChecksumOK: true,
	}
	n := ipv6HeaderLen + int(binary.BigEndian.Uint16(b[4:6]))
	if n > len(b) {
		return nil, errorf(ErrIPHeader, "IPv6 packet truncated: %d of %d bytes", len(b), n)
	}
	return b[ipv6HeaderLen:n], nil
}

// Marshal returns the frame: the Ethernet header if f has one, the IP
// header (IPv4 with its checksum computed) and the VRRP message of f.VRRP
// from f.IP.Src to f.IP.Dst. The frame is not padded to Ethernet's 60-byte
// minimum (keepalived's frames are not; a NIC pads them).
func (f *Frame) Marshal() ([]byte, error) {
	if f.VRRP == nil {
		return nil, errorf(ErrNotVRRP, "frame without a VRRP packet")
	}
	msg, err := f.VRRP.Marshal(f.IP.Src, f.IP.Dst)
	if err != nil {
		return nil, err
	}
	pkt, err := f.IP.marshal(msg)
	if err != nil || f.Ethernet == nil {
		return pkt, err
	}
	eth := *f.Ethernet
	eth.Payload = pkt
	b, err := eth.MarshalBinary()
	if err != nil {
		return nil, errorf(ErrNotVRRP, "Ethernet header: %v", err)
	}
	return b[:len(b)-max(len(pkt), 46)+len(pkt)], nil // mdlayher/ethernet pads short payloads to 46 bytes
}

// marshal returns the IP header h followed by payload. Protocol 0 means
// VRRP's.
func (h *IPHeader) marshal(payload []byte) ([]byte, error) {
	proto := h.Protocol
	if proto == 0 {
		proto = Protocol
	}
	if h.Src.Unmap().Is4() {
		ihl := ipv4HeaderLen + len(h.Options)
		if len(h.Options)%4 != 0 || ihl > 60 || ihl+len(payload) > 0xffff {
			return nil, errorf(ErrIPHeader, "IPv4: %d bytes of options and %d of payload", len(h.Options), len(payload))
		}
		b := make([]byte, ihl+len(payload))
		b[0], b[1] = 0x40|byte(ihl/4), h.TOS
		binary.BigEndian.PutUint16(b[2:4], uint16(len(b)))
		binary.BigEndian.PutUint16(b[4:6], h.ID)
		if h.DF {
			binary.BigEndian.PutUint16(b[6:8], ipv4FlagDF)
		}
		b[8], b[9] = h.TTL, proto
		src, dst := h.Src.Unmap().As4(), h.Dst.Unmap().As4()
		copy(b[12:16], src[:])
		copy(b[16:20], dst[:])
		copy(b[20:], h.Options)
		var c csum
		c.add(b[:ihl])
		binary.BigEndian.PutUint16(b[10:12], c.final())
		copy(b[ihl:], payload)
		return b, nil
	}
	if len(payload) > 0xffff || h.FlowLabel > 0xfffff {
		return nil, errorf(ErrIPHeader, "IPv6: flow label 0x%x, %d bytes of payload", h.FlowLabel, len(payload))
	}
	b := make([]byte, ipv6HeaderLen+len(payload))
	binary.BigEndian.PutUint32(b[0:4], 6<<28|uint32(h.TOS)<<20|h.FlowLabel)
	binary.BigEndian.PutUint16(b[4:6], uint16(len(payload)))
	b[6], b[7] = proto, h.TTL
	src, dst := h.Src.As16(), h.Dst.As16()
	copy(b[8:24], src[:])
	copy(b[24:40], dst[:])
	copy(b[40:], payload)
	return b, nil
}
