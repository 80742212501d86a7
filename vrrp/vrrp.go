// Package vrrp encodes and decodes VRRP advertisements: version 2
// (RFC 3768: IPv4, no authentication or a simple password; the IP
// Authentication Header is refused) and version 3 (RFC 5798: IPv4 and IPv6,
// intervals in centiseconds). It is a pure codec: no sockets, no clock.
//
// Unmarshal takes the VRRP message (the IP payload) with the addresses and
// TTL (hop limit) of the IP header it came in, because VRRP's checks need
// them: the TTL must be 255, and the version 3 checksum covers the IPv4 or
// IPv6 pseudo-header. Its errors wrap one of the Err* sentinels, so a
// receiver can count what it drops per reason (Reason). Marshal builds the
// message a raw IP socket sends; the frame helpers (DecodeEthernet,
// DecodeIP, Frame.Marshal) add the IP and Ethernet headers for captures and
// packet sockets.
//
// The byte layout, what keepalived 2.2.7 puts on the wire, is pinned by the
// captured frames in testdata/vectors.json (testdata/README.md).
package vrrp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Protocol is VRRP's IP protocol number.
const Protocol = 112

// TTL is the only IP TTL (IPv6 hop limit) a VRRP packet may carry: a
// router never forwards one, so anything lower came from off the link.
const TTL = 255

// The multicast groups advertisements are sent to (RFC 5798 section 5.1).
var (
	GroupIPv4 = netip.AddrFrom4([4]byte{224, 0, 0, 18})
	GroupIPv6 = netip.AddrFrom16([16]byte{0: 0xff, 1: 0x02, 15: 0x12})
)

// Sentinel errors: every error of Unmarshal, Marshal and the frame helpers
// wraps exactly one of them (errors.Is), with the detail in its message.
var (
	ErrLength   = errors.New("bad length")             // shorter than a header, or the address count does not match the length
	ErrVersion  = errors.New("bad version")            // not 2 or 3, or version 2 over IPv6
	ErrType     = errors.New("bad type")               // not 1 (advertisement)
	ErrAddress  = errors.New("bad address")            // src/dst not one family, a virtual address of the other family, none where one is required
	ErrAuth     = errors.New("authentication")         // IP Authentication Header, unknown type, password too long or not the expected one
	ErrTTL      = errors.New("bad TTL")                // IP TTL or IPv6 hop limit
	ErrChecksum = errors.New("bad checksum")           // VRRP checksum
	ErrVRID     = errors.New("bad VRID")               // 0 (the range is 1-255)
	ErrInterval = errors.New("bad advert interval")    // 0, or out of the version's range
	ErrNotVRRP  = errors.New("not a VRRP packet")      // frame helpers: another EtherType or IP protocol
	ErrIPHeader = errors.New("bad IP header")          // frame helpers: truncated, fragmented, bad lengths
	ErrIPCheck  = errors.New("bad IP header checksum") // frame helpers: the IPv4 header checksum
)

var reasons = []struct {
	err   error
	label string
}{
	{ErrLength, "length"}, {ErrVersion, "version"}, {ErrType, "type"}, {ErrAddress, "address"},
	{ErrAuth, "auth"}, {ErrTTL, "ttl"}, {ErrChecksum, "checksum"}, {ErrVRID, "vrid"},
	{ErrInterval, "interval"}, {ErrNotVRRP, "not_vrrp"}, {ErrIPHeader, "ip_header"},
	{ErrIPCheck, "ip_checksum"},
}

// Reason returns a short label for the sentinel err wraps ("ttl",
// "checksum", ...; "" for nil, "other" for an error of another package),
// fit for a metric label that counts dropped packets.
func Reason(err error) string {
	if err == nil {
		return ""
	}
	for _, r := range reasons {
		if errors.Is(err, r.err) {
			return r.label
		}
	}
	return "other"
}

// errorf returns an error wrapping sentinel with a detail: "vrrp: bad
// checksum: 0x1234, want 0xdaa0".
func errorf(sentinel error, format string, args ...any) error {
	return fmt.Errorf("vrrp: %w: %s", sentinel, fmt.Sprintf(format, args...))
}

// AuthType is a VRRPv2 authentication type (RFC 3768 section 5.3.6).
type AuthType uint8

const (
	AuthNone   AuthType = 0 // no authentication: 8 zero bytes of auth data
	AuthSimple AuthType = 1 // simple text password (keepalived's auth_type PASS), up to 8 bytes
	AuthAH     AuthType = 2 // IP Authentication Header: not supported
)

// String returns "none", "pass", "ah", or "auth-type-N".
func (a AuthType) String() string {
	switch a {
	case AuthNone:
		return "none"
	case AuthSimple:
		return "pass"
	case AuthAH:
		return "ah"
	}
	return "auth-type-" + strconv.Itoa(int(a))
}

// Interval is an advertisement interval in centiseconds, VRRPv3's unit
// (1-4095). VRRPv2 carries whole seconds (1-255), so a version 2 packet's
// Interval is a multiple of Second.
type Interval uint16

const (
	Centisecond Interval = 1
	Second      Interval = 100
	MaxV2       Interval = 255 * Second // the largest VRRPv2 interval
	MaxV3       Interval = 4095         // the largest VRRPv3 interval (12 bits)
)

// Duration returns i as a time.Duration.
func (i Interval) Duration() time.Duration { return time.Duration(i) * 10 * time.Millisecond }

// String returns i as a duration ("1s", "100ms").
func (i Interval) String() string { return i.Duration().String() }

// Packet is one VRRP advertisement.
type Packet struct {
	Version  int      // 2 (RFC 3768) or 3 (RFC 5798)
	VRID     uint8    // virtual router id, 1-255
	Priority uint8    // 0: the master stops; 255: the address owner
	Interval Interval // advertisement interval (v3: Max Adver Int)
	AuthType AuthType // v2 only; 0 in v3
	AuthPass string   // v2 with AuthSimple only: up to 8 bytes (zero-padded on the wire; trailing zeros dropped on decode)
	Addrs    []netip.Addr
	// Checksum is the checksum as received (Unmarshal). Marshal ignores it
	// and computes the right one.
	Checksum uint16
}

const (
	headerLen   = 8
	authDataLen = 8 // VRRPv2's trailing authentication data
)

// family returns 4 or 6 for the common family of src and dst, or an error.
func family(src, dst netip.Addr) (int, error) {
	src, dst = src.Unmap(), dst.Unmap()
	switch {
	case !src.IsValid() || !dst.IsValid():
		return 0, errorf(ErrAddress, "no source or destination address")
	case src.Is4() != dst.Is4():
		return 0, errorf(ErrAddress, "source %s and destination %s are of different families", src, dst)
	case src.Is4():
		return 4, nil
	}
	return 6, nil
}

func addrLen(fam int) int {
	if fam == 4 {
		return 4
	}
	return 16
}

// Unmarshal decodes and checks the VRRP message b that came from src to
// dst with IP TTL (IPv6 hop limit) ttl.
//
// It checks, in this order, the structure (length, version, type, the
// address count against the length) and, once the message is decoded, the
// authentication type, the TTL, the checksum (v3: with the pseudo-header of
// src and dst), the VRID and the interval. When a check of the second group
// fails, Unmarshal returns the decoded packet together with the error, so a
// tool can show what was refused; a receiver drops it all the same. Extra
// bytes after the message are an error (ErrLength): count and length must
// agree. The v3 reserved bits and the v2 auth data of AuthNone are ignored,
// as the RFCs require.
func Unmarshal(b []byte, src, dst netip.Addr, ttl int) (*Packet, error) {
	fam, err := family(src, dst)
	if err != nil {
		return nil, err
	}
	if len(b) < headerLen {
		return nil, errorf(ErrLength, "%d bytes, shorter than the %d-byte header", len(b), headerLen)
	}
	p := &Packet{Version: int(b[0] >> 4), VRID: b[1], Priority: b[2], Checksum: binary.BigEndian.Uint16(b[6:8])}
	switch {
	case p.Version != 2 && p.Version != 3:
		return nil, errorf(ErrVersion, "version %d", p.Version)
	case p.Version == 2 && fam == 6:
		return nil, errorf(ErrVersion, "version 2 over IPv6 (VRRPv2 is IPv4 only)")
	case b[0]&0x0f != 1:
		return nil, errorf(ErrType, "type %d, want 1 (advertisement)", b[0]&0x0f)
	}
	count, alen := int(b[3]), addrLen(fam)
	want := headerLen + count*alen
	if p.Version == 2 {
		want += authDataLen
	}
	if len(b) != want {
		return nil, errorf(ErrLength, "%d bytes for %d IPv%d addresses, want %d", len(b), count, fam, want)
	}
	if p.Version == 3 && count == 0 {
		return nil, errorf(ErrAddress, "no addresses (RFC 5798: at least one)")
	}
	p.Addrs = make([]netip.Addr, count)
	for i := range p.Addrs {
		a, _ := netip.AddrFromSlice(b[headerLen+i*alen : headerLen+(i+1)*alen])
		p.Addrs[i] = a
	}
	if p.Version == 2 {
		p.AuthType = AuthType(b[4])
		p.Interval = Interval(b[5]) * Second
		if p.AuthType == AuthSimple {
			p.AuthPass = strings.TrimRight(string(b[want-authDataLen:]), "\x00")
		}
	} else {
		p.Interval = Interval(binary.BigEndian.Uint16(b[4:6]) & 0x0fff)
	}
	switch {
	case p.AuthType == AuthAH:
		return p, errorf(ErrAuth, "auth type 2 (IP Authentication Header) is not supported")
	case p.AuthType > AuthAH:
		return p, errorf(ErrAuth, "unknown auth type %d", p.AuthType)
	case ttl != TTL:
		return p, errorf(ErrTTL, "%d, want 255 (sent from off the link?)", ttl)
	}
	if !ChecksumOK(b, src, dst) {
		return p, errorf(ErrChecksum, "0x%04x, want 0x%04x (%s)", p.Checksum, Checksum(b, src, dst), checksumRule(p.Version, fam))
	}
	switch {
	case p.VRID == 0:
		return p, errorf(ErrVRID, "VRID 0 (the range is 1-255)")
	case p.Interval == 0:
		return p, errorf(ErrInterval, "interval 0")
	}
	return p, nil
}

func checksumRule(version, fam int) string {
	if version == 2 {
		return "RFC 3768: over the VRRP message"
	}
	return fmt.Sprintf("RFC 5798: over the IPv%d pseudo-header and the VRRP message", fam)
}

// Marshal returns the VRRP message of p sent from src to dst, with its
// checksum (v3: over the pseudo-header of src and dst).
func (p *Packet) Marshal(src, dst netip.Addr) ([]byte, error) {
	fam, err := family(src, dst)
	if err != nil {
		return nil, err
	}
	if err := p.check(fam); err != nil {
		return nil, err
	}
	alen := addrLen(fam)
	n := headerLen + len(p.Addrs)*alen
	if p.Version == 2 {
		n += authDataLen
	}
	b := make([]byte, n)
	b[0] = byte(p.Version<<4) | 1
	b[1], b[2], b[3] = p.VRID, p.Priority, byte(len(p.Addrs))
	if p.Version == 2 {
		b[4], b[5] = byte(p.AuthType), byte(p.Interval/Second)
		copy(b[n-authDataLen:], p.AuthPass)
	} else {
		binary.BigEndian.PutUint16(b[4:6], uint16(p.Interval))
	}
	for i, a := range p.Addrs {
		if fam == 4 {
			a4 := a.Unmap().As4()
			copy(b[headerLen+i*alen:], a4[:])
		} else {
			a16 := a.As16()
			copy(b[headerLen+i*alen:], a16[:])
		}
	}
	binary.BigEndian.PutUint16(b[6:8], Checksum(b, src, dst))
	return b, nil
}

// check validates p for sending over IP family fam.
func (p *Packet) check(fam int) error {
	switch {
	case p.Version != 2 && p.Version != 3:
		return errorf(ErrVersion, "version %d", p.Version)
	case p.Version == 2 && fam == 6:
		return errorf(ErrVersion, "version 2 over IPv6 (VRRPv2 is IPv4 only)")
	case p.VRID == 0:
		return errorf(ErrVRID, "VRID 0 (the range is 1-255)")
	case len(p.Addrs) > 255:
		return errorf(ErrAddress, "%d addresses, at most 255", len(p.Addrs))
	case p.Version == 3 && len(p.Addrs) == 0:
		return errorf(ErrAddress, "no addresses (RFC 5798: at least one)")
	}
	for _, a := range p.Addrs {
		if !a.IsValid() || a.Unmap().Is4() != (fam == 4) {
			return errorf(ErrAddress, "virtual address %s in an IPv%d packet", a, fam)
		}
	}
	if p.Version == 2 {
		switch {
		case p.Interval == 0 || p.Interval > MaxV2 || p.Interval%Second != 0:
			return errorf(ErrInterval, "%s: VRRPv2 carries whole seconds, 1-255", p.Interval)
		case p.AuthType == AuthAH:
			return errorf(ErrAuth, "auth type 2 (IP Authentication Header) is not supported")
		case p.AuthType > AuthAH:
			return errorf(ErrAuth, "unknown auth type %d", p.AuthType)
		case p.AuthType == AuthNone && p.AuthPass != "":
			return errorf(ErrAuth, "a password with auth type none")
		case len(p.AuthPass) > authDataLen:
			return errorf(ErrAuth, "password of %d bytes, at most %d", len(p.AuthPass), authDataLen)
		case strings.HasSuffix(p.AuthPass, "\x00"):
			return errorf(ErrAuth, "password ends in a zero byte (it would not survive the zero padding)")
		}
		return nil
	}
	switch {
	case p.Interval == 0 || p.Interval > MaxV3:
		return errorf(ErrInterval, "%d centiseconds: VRRPv3 carries 1-4095", p.Interval)
	case p.AuthType != AuthNone || p.AuthPass != "":
		return errorf(ErrAuth, "VRRPv3 has no authentication")
	}
	return nil
}

// CheckAuth reports whether p carries the authentication a receiver is
// configured with (RFC 3768 section 7.1: a mismatch is dropped); the error
// wraps ErrAuth. Version 3 packets have none: want AuthNone.
func (p *Packet) CheckAuth(typ AuthType, pass string) error {
	switch {
	case p.AuthType != typ:
		return errorf(ErrAuth, "auth type %s, want %s", p.AuthType, typ)
	case typ == AuthSimple && p.AuthPass != pass:
		return errorf(ErrAuth, "wrong password")
	}
	return nil
}

// Checksum returns the checksum the VRRP message msg (its own checksum
// field read as zero) must carry when sent from src to dst: for version 2
// over the message only (RFC 3768), for version 3 over the IPv4 or IPv6
// pseudo-header too (RFC 5798 section 5.2.8), also for unicast, with the
// real destination. The version is read from msg.
func Checksum(msg []byte, src, dst netip.Addr) uint16 {
	var c csum
	if len(msg) > 0 && msg[0]>>4 == 3 {
		c.pseudo(src, dst, len(msg))
	}
	if len(msg) < headerLen {
		c.add(msg)
	} else {
		c.add(msg[:6])
		c.add(msg[8:])
	}
	return c.final()
}

// ChecksumOK reports whether the VRRP message msg from src to dst carries
// the right checksum, by the rule of the version in its first byte (see
// Checksum). It verifies the RFC 1071 way (the sum over everything,
// checksum included, is all ones), which accepts both forms of a zero
// checksum, 0x0000 and 0xffff. A message shorter than the header has none.
func ChecksumOK(msg []byte, src, dst netip.Addr) bool {
	if len(msg) < headerLen {
		return false
	}
	var c csum
	if msg[0]>>4 == 3 {
		c.pseudo(src, dst, len(msg))
	}
	c.add(msg)
	return c.final() == 0
}

// csum is an Internet checksum (RFC 1071) being summed.
type csum struct{ sum uint64 }

// add adds b as 16-bit big-endian words (an odd last byte padded with
// zero). Every call but the last must pass an even number of bytes.
func (c *csum) add(b []byte) {
	for len(b) >= 2 {
		c.sum += uint64(b[0])<<8 | uint64(b[1])
		b = b[2:]
	}
	if len(b) == 1 {
		c.sum += uint64(b[0]) << 8
	}
}

// pseudo adds the IPv4 (RFC 791/768 style) or IPv6 (RFC 8200 section 8.1)
// pseudo-header of a VRRP message of length n.
func (c *csum) pseudo(src, dst netip.Addr, n int) {
	src, dst = src.Unmap(), dst.Unmap()
	c.add(src.AsSlice())
	c.add(dst.AsSlice())
	if src.Is4() {
		c.sum += Protocol + uint64(n&0xffff) // zero, protocol; 16-bit length
	} else {
		c.sum += uint64(n>>16) + uint64(n&0xffff) + Protocol // 32-bit length; 3 zero bytes, next header
	}
}

func (c *csum) final() uint16 {
	s := c.sum
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return ^uint16(s)
}
