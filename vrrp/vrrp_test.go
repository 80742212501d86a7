package vrrp

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net"
	"net/netip"
	"os"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
)

// vector is one entry of testdata/vectors.json (keepalived 2.2.7's frames,
// decoded by the lab's pcaptool.py).
type vector struct {
	Kind      string `json:"kind"` // vrrp4 or arp
	Pcap      string `json:"pcap"`
	FrameNo   int    `json:"frame_no"`
	Seen      int    `json:"seen"`
	FrameHex  string `json:"frame_hex"`
	EthDst    string `json:"eth_dst"`
	EthSrc    string `json:"eth_src"`
	EtherType int    `json:"ethertype"`

	// IPv4 (vrrp4)
	IPHdrHex     string `json:"ip_hdr_hex"`
	IPPayloadHex string `json:"ip_payload_hex"`
	TOS          int    `json:"tos"`
	IPID         int    `json:"ip_id"`
	TTL          int    `json:"ttl"`
	Proto        int    `json:"proto"`
	Src          string `json:"src"`
	Dst          string `json:"dst"`
	IPHdrCsumOK  bool   `json:"ip_hdr_csum_ok"`
	VRRP         *struct {
		Version      int      `json:"version"`
		Type         int      `json:"type"`
		VRID         int      `json:"vrid"`
		Priority     int      `json:"priority"`
		CountIP      int      `json:"count_ip"`
		AuthType     int      `json:"auth_type"`
		AdverIntS    int      `json:"adver_int_s"`      // v2
		MaxAdverIntC int      `json:"max_adver_int_cs"` // v3
		Checksum     int      `json:"checksum"`
		AuthData     string   `json:"auth_data"`
		ChecksumOK   bool     `json:"checksum_ok"`
		OKWithoutPH  *bool    `json:"checksum_ok_without_pseudo_hdr"`
		Addrs        []string `json:"addrs"`
		Trailing     int      `json:"trailing_bytes"`
	} `json:"vrrp"`

	// ARP
	Op  int    `json:"op"`
	SHA string `json:"sha"`
	SPA string `json:"spa"`
	THA string `json:"tha"`
	TPA string `json:"tpa"`
}

func loadVectors(t testing.TB) []vector {
	t.Helper()
	b, err := os.ReadFile("testdata/vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	var vs []vector
	if err := json.Unmarshal(b, &vs); err != nil {
		t.Fatal(err)
	}
	return vs
}

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestVectors decodes every frame keepalived 2.2.7 sent in the lab to the
// fields recorded with it and re-encodes it byte for byte: the VRRP
// message (Marshal), the IP header and the whole Ethernet frame
// (Frame.Marshal). The gratuitous ARPs of the captures are not VRRP
// (ErrNotVRRP); they are checked with mdlayher/arp, which raftlb sends
// them with.
func TestVectors(t *testing.T) {
	vs := loadVectors(t)
	var nVRRP, nARP int
	for _, v := range vs {
		name := v.Pcap + "#" + strconv.Itoa(v.FrameNo)
		frame := unhex(t, v.FrameHex)
		switch v.Kind {
		case "vrrp4":
			nVRRP++
			t.Run(name, func(t *testing.T) { checkVRRPVector(t, v, frame) })
		case "arp":
			nARP++
			t.Run(name, func(t *testing.T) { checkARPVector(t, v, frame) })
		default:
			t.Errorf("%s: unexpected kind %q", name, v.Kind)
		}
	}
	if len(vs) != 42 || nVRRP != 30 || nARP != 12 {
		t.Errorf("%d vectors (%d VRRP, %d ARP), want 42 (30 VRRP, 12 ARP)", len(vs), nVRRP, nARP)
	}
}

func checkVRRPVector(t *testing.T, v vector, frame []byte) {
	src, dst := netip.MustParseAddr(v.Src), netip.MustParseAddr(v.Dst)
	msg := unhex(t, v.IPPayloadHex)
	want := v.VRRP
	if !want.ChecksumOK || want.Trailing != 0 || want.Type != 1 || !v.IPHdrCsumOK {
		t.Fatalf("vector is not a valid advert: %+v", want)
	}

	f, err := DecodeEthernet(frame)
	if err != nil {
		t.Fatalf("DecodeEthernet: %v", err)
	}
	if f.Ethernet.Source.String() != v.EthSrc || f.Ethernet.Destination.String() != v.EthDst ||
		int(f.Ethernet.EtherType) != v.EtherType || f.Ethernet.VLAN != nil {
		t.Errorf("Ethernet %s -> %s type %#x, want %s -> %s type %#x", f.Ethernet.Source, f.Ethernet.Destination,
			f.Ethernet.EtherType, v.EthSrc, v.EthDst, v.EtherType)
	}
	wantIP := IPHeader{Src: src, Dst: dst, TTL: uint8(v.TTL), TOS: uint8(v.TOS), ID: uint16(v.IPID),
		Protocol: uint8(v.Proto), ChecksumOK: true}
	if !reflect.DeepEqual(f.IP, wantIP) {
		t.Errorf("IP header %+v, want %+v", f.IP, wantIP)
	}

	p, err := Unmarshal(msg, src, dst, v.TTL)
	if err != nil {
		t.Fatalf("Unmarshal: %v", err)
	}
	if !reflect.DeepEqual(p, f.VRRP) || !bytes.Equal(f.Message, msg) || !ChecksumOK(msg, src, dst) {
		t.Errorf("Unmarshal %+v, DecodeEthernet %+v, message %x", p, f.VRRP, f.Message)
	}
	wantP := &Packet{Version: want.Version, VRID: uint8(want.VRID), Priority: uint8(want.Priority),
		AuthType: AuthType(want.AuthType), Checksum: uint16(want.Checksum)}
	if want.Version == 2 {
		wantP.Interval = Interval(want.AdverIntS) * Second
		wantP.AuthPass = strings.TrimRight(string(unhex(t, want.AuthData)), "\x00")
	} else {
		wantP.Interval = Interval(want.MaxAdverIntC)
	}
	for _, a := range want.Addrs {
		wantP.Addrs = append(wantP.Addrs, netip.MustParseAddr(a))
	}
	if len(wantP.Addrs) != want.CountIP {
		t.Fatalf("vector: %d addrs, count %d", len(wantP.Addrs), want.CountIP)
	}
	if !reflect.DeepEqual(p, wantP) {
		t.Errorf("decoded %+v, want %+v", p, wantP)
	}
	if want.AuthType == 1 && p.AuthPass != "1111" {
		t.Errorf("auth pass %q, want keepalived.conf's 1111", p.AuthPass)
	}

	// The checksum rule: v2 over the message only, v3 with the pseudo-header
	// of the real (also unicast) destination.
	if got := Checksum(msg, src, dst); got != uint16(want.Checksum) {
		t.Errorf("Checksum = %#04x, want %#04x", got, want.Checksum)
	}
	if want.Version == 3 {
		var c csum
		c.add(msg)
		if c.final() == 0 || (want.OKWithoutPH != nil && *want.OKWithoutPH) {
			t.Errorf("v3 checksum also valid without the pseudo-header")
		}
		if dst != GroupIPv4 && Checksum(msg, src, GroupIPv4) == p.Checksum {
			t.Errorf("unicast v3 checksum matches the multicast pseudo-header")
		}
	}

	b, err := p.Marshal(src, dst)
	if err != nil {
		t.Fatalf("Marshal: %v", err)
	}
	if !bytes.Equal(b, msg) {
		t.Errorf("Marshal:\n got %x\nwant %x", b, msg)
	}
	fb, err := f.Marshal()
	if err != nil {
		t.Fatalf("Frame.Marshal: %v", err)
	}
	if !bytes.Equal(fb, frame) {
		t.Errorf("Frame.Marshal:\n got %x\nwant %x", fb, frame)
	}
	if hdr := unhex(t, v.IPHdrHex); !bytes.HasPrefix(fb[14:], hdr) {
		t.Errorf("IP header %x, want %x", fb[14:14+len(hdr)], hdr)
	}
	ipOnly, err := DecodeIP(frame[14:])
	if err != nil || !reflect.DeepEqual(ipOnly.VRRP, p) || ipOnly.Ethernet != nil {
		t.Errorf("DecodeIP: %+v, %v", ipOnly, err)
	}
}

func checkARPVector(t *testing.T, v vector, frame []byte) {
	if _, err := DecodeEthernet(frame); !errors.Is(err, ErrNotVRRP) {
		t.Errorf("DecodeEthernet of an ARP frame: %v, want ErrNotVRRP", err)
	}
	var eth ethernet.Frame
	if err := eth.UnmarshalBinary(frame); err != nil {
		t.Fatal(err)
	}
	var a arp.Packet
	if err := a.UnmarshalBinary(eth.Payload); err != nil {
		t.Fatal(err)
	}
	if int(a.Operation) != v.Op || a.SenderHardwareAddr.String() != v.SHA || a.SenderIP.String() != v.SPA ||
		a.TargetHardwareAddr.String() != v.THA || a.TargetIP.String() != v.TPA ||
		eth.Source.String() != v.EthSrc || eth.Destination.String() != v.EthDst {
		t.Errorf("ARP %+v in %s -> %s, want %+v", a, eth.Source, eth.Destination, v)
	}
	body, err := a.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	eth.Payload = body
	fb, err := eth.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if fb = fb[:14+len(body)]; !bytes.Equal(fb, frame) {
		t.Errorf("ARP frame re-encoded:\n got %x\nwant %x", fb, frame)
	}
}

// The lab has no IPv6 capture. This VRRPv3-over-IPv6 advert (d1 of the
// lab with a link-local and a global VIP) was built for the test; its
// checksum 0x0d25 was computed by the lab's pcaptool.py, not by this
// package.
const (
	v6Msg   = "3133960200640d25fe80000000000000000000000000006420010db8000000000000000000000064"
	v6Frame = "33330000001202990000001186dd6c012345002870fffe800000000000000000000000000011ff020000000000000000000000000012" + v6Msg
)

var (
	v6Src = netip.MustParseAddr("fe80::11")
	v6Dst = GroupIPv6
)

func TestIPv6(t *testing.T) {
	want := &Packet{Version: 3, VRID: 51, Priority: 150, Interval: Second, Checksum: 0x0d25,
		Addrs: []netip.Addr{netip.MustParseAddr("fe80::64"), netip.MustParseAddr("2001:db8::64")}}
	msg := unhex(t, v6Msg)
	p, err := Unmarshal(msg, v6Src, v6Dst, 255)
	if err != nil || !reflect.DeepEqual(p, want) {
		t.Fatalf("Unmarshal = %+v, %v; want %+v", p, err, want)
	}
	if b, err := p.Marshal(v6Src, v6Dst); err != nil || !bytes.Equal(b, msg) {
		t.Errorf("Marshal = %x, %v; want %s", b, err, v6Msg)
	}
	frame := unhex(t, v6Frame)
	f, err := DecodeEthernet(frame)
	if err != nil {
		t.Fatal(err)
	}
	wantIP := IPHeader{Src: v6Src, Dst: v6Dst, TTL: 255, TOS: 0xc0, FlowLabel: 0x12345, Protocol: Protocol, ChecksumOK: true}
	if !reflect.DeepEqual(f.IP, wantIP) || !reflect.DeepEqual(f.VRRP, want) ||
		f.Ethernet.Destination.String() != "33:33:00:00:00:12" {
		t.Errorf("DecodeEthernet = %+v %+v, want %+v %+v", f.IP, f.VRRP, wantIP, want)
	}
	if b, err := f.Marshal(); err != nil || !bytes.Equal(b, frame) {
		t.Errorf("Frame.Marshal = %x, %v", b, err)
	}
	// The hop limit is checked like the TTL.
	frame[21] = 64
	if _, err := DecodeEthernet(frame); !errors.Is(err, ErrTTL) {
		t.Errorf("hop limit 64: %v, want ErrTTL", err)
	}
}

// mutate returns the message of vector i of vectors.json after f changed
// it, with its checksum recomputed when fix is true.
func mutate(t *testing.T, msg string, src, dst netip.Addr, fix bool, f func(b []byte) []byte) []byte {
	b := f(unhex(t, msg))
	if fix && len(b) >= 8 {
		b[6], b[7] = 0, 0
		c := Checksum(b, src, dst)
		b[6], b[7] = byte(c>>8), byte(c)
	}
	return b
}

// keepalived's d1 adverts: v2 with auth_pass 1111, v2 without auth, v3.
const (
	v2Pass   = "213396010101daa00a6300643131313100000000"
	v2NoAuth = "213396010001" + "3e03" + "0a630064" + "0000000000000000"
	v3Msg    = "31339601006442a30a630064"
)

var (
	d1    = netip.MustParseAddr("10.99.0.11")
	group = GroupIPv4
)

func TestUnmarshalErrors(t *testing.T) {
	set := func(i int, v byte) func([]byte) []byte {
		return func(b []byte) []byte { b[i] = v; return b }
	}
	same := func(b []byte) []byte { return b }
	for _, c := range []struct {
		name     string
		msg      string
		src, dst netip.Addr
		ttl      int
		fix      bool
		f        func([]byte) []byte
		want     error
		reason   string
		decoded  bool // the packet comes back with the error
		contains string
	}{
		{name: "ttl", msg: v2Pass, ttl: 64, f: same, want: ErrTTL, reason: "ttl", decoded: true, contains: "64, want 255"},
		{name: "ttl v3", msg: v3Msg, ttl: 254, f: same, want: ErrTTL, reason: "ttl", decoded: true},
		{name: "checksum", msg: v2Pass, f: set(2, 151), want: ErrChecksum, reason: "checksum", decoded: true,
			contains: "0xdaa0, want 0xd9a0 (RFC 3768: over the VRRP message)"},
		{name: "checksum v3 pseudo-header", msg: v3Msg, dst: netip.MustParseAddr("10.99.0.12"), f: same,
			want: ErrChecksum, decoded: true, contains: "pseudo-header"},
		{name: "password is covered", msg: v2Pass, f: set(16, '2'), want: ErrChecksum, decoded: true},
		{name: "version 1", msg: v2Pass, fix: true, f: set(0, 0x11), want: ErrVersion, reason: "version"},
		{name: "version 4", msg: v3Msg, fix: true, f: set(0, 0x41), want: ErrVersion},
		{name: "v2 over IPv6", msg: v2Pass, src: v6Src, dst: v6Dst, f: same, want: ErrVersion, contains: "IPv4 only"},
		{name: "type 2", msg: v2Pass, fix: true, f: set(0, 0x22), want: ErrType, reason: "type"},
		{name: "count too high", msg: v2Pass, fix: true, f: set(3, 2), want: ErrLength, reason: "length",
			contains: "20 bytes for 2 IPv4 addresses, want 24"},
		{name: "count zero v3", msg: v3Msg, fix: true, f: func(b []byte) []byte { b[3] = 0; return b[:8] },
			want: ErrAddress, reason: "address"},
		{name: "trailing byte", msg: v3Msg, f: func(b []byte) []byte { return append(b, 0) }, want: ErrLength},
		{name: "v3 as IPv6 length", msg: v3Msg, src: v6Src, dst: v6Dst, f: same, want: ErrLength},
		{name: "short", msg: v3Msg, f: func(b []byte) []byte { return b[:7] }, want: ErrLength, contains: "shorter than the 8-byte header"},
		{name: "empty", msg: "", f: same, want: ErrLength},
		{name: "vrid 0", msg: v2Pass, fix: true, f: set(1, 0), want: ErrVRID, reason: "vrid", decoded: true},
		{name: "interval 0 v2", msg: v2Pass, fix: true, f: set(5, 0), want: ErrInterval, reason: "interval", decoded: true},
		{name: "interval 0 v3", msg: v3Msg, fix: true, f: func(b []byte) []byte { b[4], b[5] = 0xf0, 0; return b },
			want: ErrInterval, decoded: true},
		{name: "AH", msg: v2Pass, fix: true, f: set(4, 2), want: ErrAuth, reason: "auth", decoded: true,
			contains: "IP Authentication Header"},
		{name: "auth type 3", msg: v2Pass, fix: true, f: set(4, 3), want: ErrAuth, decoded: true},
		{name: "families", msg: v2Pass, dst: v6Dst, f: same, want: ErrAddress},
		{name: "no source", msg: v2Pass, src: netip.Addr{}, dst: group, f: same, want: ErrAddress},
	} {
		t.Run(c.name, func(t *testing.T) {
			src, dst := c.src, c.dst
			if !src.IsValid() && c.name != "no source" {
				src = d1
			}
			if !dst.IsValid() {
				dst = group
			}
			ttl := c.ttl
			if ttl == 0 {
				ttl = 255
			}
			b := mutate(t, c.msg, src, dst, c.fix, c.f)
			p, err := Unmarshal(b, src, dst, ttl)
			if !errors.Is(err, c.want) {
				t.Fatalf("Unmarshal(%x) = %+v, %v; want %v", b, p, err, c.want)
			}
			if c.reason != "" && Reason(err) != c.reason {
				t.Errorf("Reason = %q, want %q", Reason(err), c.reason)
			}
			if (p != nil) != c.decoded {
				t.Errorf("packet returned: %v, want %v", p != nil, c.decoded)
			}
			if !strings.Contains(err.Error(), c.contains) || !strings.HasPrefix(err.Error(), "vrrp: ") {
				t.Errorf("error %q, want it to contain %q", err, c.contains)
			}
		})
	}
}

func TestMarshalErrors(t *testing.T) {
	vip := netip.MustParseAddr("10.99.0.100")
	ok := func() Packet {
		return Packet{Version: 2, VRID: 51, Priority: 100, Interval: Second, Addrs: []netip.Addr{vip}}
	}
	for _, c := range []struct {
		name string
		edit func(p *Packet)
		dst  netip.Addr
		want error
	}{
		{"v2 half second", func(p *Packet) { p.Interval = 150 }, group, ErrInterval},
		{"v2 256 s", func(p *Packet) { p.Interval = 256 * Second }, group, ErrInterval},
		{"v2 zero", func(p *Packet) { p.Interval = 0 }, group, ErrInterval},
		{"v3 4096 cs", func(p *Packet) { p.Version, p.Interval = 3, MaxV3+1 }, group, ErrInterval},
		{"v3 zero", func(p *Packet) { p.Version, p.Interval = 3, 0 }, group, ErrInterval},
		{"version 4", func(p *Packet) { p.Version = 4 }, group, ErrVersion},
		{"vrid 0", func(p *Packet) { p.VRID = 0 }, group, ErrVRID},
		{"AH", func(p *Packet) { p.AuthType = AuthAH }, group, ErrAuth},
		{"auth 9", func(p *Packet) { p.AuthType = 9 }, group, ErrAuth},
		{"password of 9", func(p *Packet) { p.AuthType, p.AuthPass = AuthSimple, "123456789" }, group, ErrAuth},
		{"password ends in zero", func(p *Packet) { p.AuthType, p.AuthPass = AuthSimple, "ab\x00" }, group, ErrAuth},
		{"password without auth", func(p *Packet) { p.AuthPass = "x" }, group, ErrAuth},
		{"v3 with auth", func(p *Packet) { p.Version, p.AuthType, p.AuthPass = 3, AuthSimple, "1111" }, group, ErrAuth},
		{"v3 without addrs", func(p *Packet) { p.Version, p.Addrs = 3, nil }, group, ErrAddress},
		{"IPv6 VIP in IPv4", func(p *Packet) { p.Addrs = append(p.Addrs, v6Src) }, group, ErrAddress},
		{"invalid VIP", func(p *Packet) { p.Addrs = append(p.Addrs, netip.Addr{}) }, group, ErrAddress},
		{"256 VIPs", func(p *Packet) { p.Addrs = make([]netip.Addr, 256) }, group, ErrAddress},
		{"dst family", func(p *Packet) {}, v6Dst, ErrAddress},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := ok()
			c.edit(&p)
			if b, err := p.Marshal(d1, c.dst); !errors.Is(err, c.want) {
				t.Errorf("Marshal = %x, %v; want %v", b, err, c.want)
			}
		})
	}
	p := ok()
	p.Version = 2
	if _, err := p.Marshal(v6Src, v6Dst); !errors.Is(err, ErrVersion) {
		t.Errorf("v2 over IPv6: %v, want ErrVersion", err)
	}
}

// TestMarshal covers what the vectors do not: several addresses, a
// password shorter than 8 bytes, priorities 0 and 255, the extreme
// intervals, a 4-in-6 mapped address (sent as IPv4).
func TestMarshal(t *testing.T) {
	vips := []netip.Addr{netip.MustParseAddr("10.99.0.100"), netip.MustParseAddr("::ffff:10.99.0.101")}
	for _, p := range []Packet{
		{Version: 2, VRID: 1, Priority: 255, Interval: MaxV2, AuthType: AuthSimple, AuthPass: "ab", Addrs: vips},
		{Version: 2, VRID: 255, Priority: 0, Interval: Second, Addrs: vips[:1]},
		{Version: 2, VRID: 7, Priority: 1, Interval: Second},
		{Version: 3, VRID: 255, Priority: 255, Interval: MaxV3, Addrs: vips},
		{Version: 3, VRID: 1, Priority: 0, Interval: Centisecond, Addrs: vips[1:]},
	} {
		b, err := p.Marshal(d1, group)
		if err != nil {
			t.Fatalf("Marshal(%+v): %v", p, err)
		}
		got, err := Unmarshal(b, d1, group, TTL)
		if err != nil {
			t.Fatalf("Unmarshal(Marshal(%+v)) = %v", p, err)
		}
		want := p
		want.Checksum = got.Checksum
		want.Addrs = make([]netip.Addr, len(p.Addrs))
		for i, a := range p.Addrs {
			want.Addrs[i] = a.Unmap()
		}
		if !reflect.DeepEqual(*got, want) {
			t.Errorf("round trip: %+v, want %+v", *got, want)
		}
	}
	// The v2 password is zero-padded to 8 bytes and covered by the checksum.
	p := Packet{Version: 2, VRID: 51, Priority: 150, Interval: Second, AuthType: AuthSimple, AuthPass: "1111",
		Addrs: vips[:1]}
	if b, _ := p.Marshal(d1, group); hex.EncodeToString(b) != v2Pass {
		t.Errorf("Marshal = %x, want keepalived's %s", b, v2Pass)
	}
}

func TestCheckAuth(t *testing.T) {
	p, err := Unmarshal(unhex(t, v2Pass), d1, group, TTL)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.CheckAuth(AuthSimple, "1111"); err != nil {
		t.Errorf("right password: %v", err)
	}
	for _, c := range []struct {
		typ  AuthType
		pass string
	}{{AuthSimple, "1112"}, {AuthSimple, ""}, {AuthNone, ""}} {
		if err := p.CheckAuth(c.typ, c.pass); !errors.Is(err, ErrAuth) || Reason(err) != "auth" {
			t.Errorf("CheckAuth(%s, %q) = %v, want ErrAuth", c.typ, c.pass, err)
		}
	}
	v3, _ := Unmarshal(unhex(t, v3Msg), d1, group, TTL)
	if err := v3.CheckAuth(AuthNone, ""); err != nil {
		t.Errorf("v3: %v", err)
	}
	// Auth none ignores the auth data on receive (RFC 3768 section 5.3.10).
	b := mutate(t, v2NoAuth, d1, group, true, func(b []byte) []byte { copy(b[12:], "junk"); return b })
	if p, err := Unmarshal(b, d1, group, TTL); err != nil || p.AuthPass != "" {
		t.Errorf("auth none with data: %+v, %v", p, err)
	}
}

func TestStrings(t *testing.T) {
	for in, want := range map[string]string{
		AuthNone.String(): "none", AuthSimple.String(): "pass", AuthAH.String(): "ah", AuthType(7).String(): "auth-type-7",
		Second.String(): "1s", Interval(10).String(): "100ms", Centisecond.String(): "10ms", MaxV2.String(): "4m15s",
		Reason(nil): "", Reason(errors.New("x")): "other", Reason(net.ErrClosed): "other",
	} {
		if in != want {
			t.Errorf("%q, want %q", in, want)
		}
	}
	if d := Interval(4095).Duration().Seconds(); d != 40.95 {
		t.Errorf("4095 cs = %v s", d)
	}
}

// TestChecksumZero: a message whose ones' complement sum is all ones
// carries checksum 0x0000, and 0xffff, the other form of zero, is accepted
// too (RFC 1071).
func TestChecksumZero(t *testing.T) {
	// Search VRIDs and priorities for a v2 message whose checksum is 0.
	for vrid := 1; vrid < 256; vrid++ {
		for prio := 0; prio < 256; prio++ {
			p := Packet{Version: 2, VRID: uint8(vrid), Priority: uint8(prio), Interval: Second,
				Addrs: []netip.Addr{netip.MustParseAddr("10.99.0.100")}}
			b, err := p.Marshal(d1, group)
			if err != nil {
				t.Fatal(err)
			}
			if b[6] != 0 || b[7] != 0 {
				continue
			}
			if _, err := Unmarshal(b, d1, group, TTL); err != nil {
				t.Fatalf("checksum 0x0000: %v", err)
			}
			b[6], b[7] = 0xff, 0xff
			if _, err := Unmarshal(b, d1, group, TTL); err != nil {
				t.Fatalf("checksum 0xffff: %v", err)
			}
			return
		}
	}
	t.Fatal("no message with checksum 0 found")
}

// keepalived d1's first v2 advert (auth PASS), a whole Ethernet frame.
const v2Frame = "01005e000012029900000011080045c0002800010000ff70d0240a63000be0000012" + v2Pass

func TestDecodeFrameErrors(t *testing.T) {
	edit := func(f func(b []byte) []byte) []byte { return f(unhex(t, v2Frame)) }
	fixIP := func(b []byte) []byte { // recompute the IPv4 header checksum
		b[24], b[25] = 0, 0
		var c csum
		c.add(b[14:34])
		b[24], b[25] = byte(c.final()>>8), byte(c.final())
		return b
	}
	for _, c := range []struct {
		name    string
		frame   []byte
		want    error
		ip      bool // the frame comes back with its IP header
		vrrp    bool // ... and its VRRP packet
		contain string
	}{
		{"ARP", edit(func(b []byte) []byte { b[12], b[13] = 0x08, 0x06; return b }), ErrNotVRRP, false, false, "EtherType 0x0806"},
		{"short Ethernet", unhex(t, "01005e000012"), ErrNotVRRP, false, false, "Ethernet header"},
		{"UDP", edit(func(b []byte) []byte { b[23] = 17; return fixIP(b) }), ErrNotVRRP, true, false, "IP protocol 17"},
		{"UDP truncated", edit(func(b []byte) []byte { b[23] = 17; return b[:40] }), ErrNotVRRP, true, false, "IP protocol 17"},
		{"IP header cut", edit(func(b []byte) []byte { return b[:30] }), ErrIPHeader, false, false, "IPv4 header truncated: 16 bytes"},
		{"IP packet cut", edit(func(b []byte) []byte { return b[:50] }), ErrIPHeader, true, false, "truncated: 36 of 40 bytes"},
		{"IHL 4", edit(func(b []byte) []byte { b[14] = 0x44; return b }), ErrIPHeader, true, false, "header length 16"},
		{"total < IHL", edit(func(b []byte) []byte { b[16], b[17] = 0, 10; return b }), ErrIPHeader, true, false, "shorter than its header"},
		{"fragment", edit(func(b []byte) []byte { b[20] = 0x20; return fixIP(b) }), ErrIPHeader, true, false, "fragment"},
		{"offset", edit(func(b []byte) []byte { b[21] = 1; return fixIP(b) }), ErrIPHeader, true, false, "fragment"},
		{"IP version 5", edit(func(b []byte) []byte { b[14] = 0x55; return b }), ErrIPHeader, false, false, "IP version 5"},
		{"no IP", edit(func(b []byte) []byte { return b[:14] }), ErrIPHeader, false, false, "empty"},
		{"IP checksum", edit(func(b []byte) []byte { b[25]++; return b }), ErrIPCheck, true, true, "IPv4 header checksum 0xd025"},
		{"IP checksum beats TTL", edit(func(b []byte) []byte { b[22] = 1; return b }), ErrIPCheck, true, true, ""},
		{"TTL", edit(func(b []byte) []byte { b[22] = 1; return fixIP(b) }), ErrTTL, true, true, "1, want 255"},
		{"IPv6 cut", unhex(t, v6Frame)[:50], ErrIPHeader, false, false, "IPv6 header truncated"},
		{"IPv6 payload cut", unhex(t, v6Frame)[:90], ErrIPHeader, true, false, "IPv6 packet truncated: 76 of 80 bytes"},
	} {
		t.Run(c.name, func(t *testing.T) {
			f, err := DecodeEthernet(c.frame)
			if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.contain) {
				t.Fatalf("DecodeEthernet(%x) = %v, want %v containing %q", c.frame, err, c.want, c.contain)
			}
			if (f != nil) != c.ip || (f != nil && (f.VRRP != nil) != c.vrrp) {
				t.Errorf("frame %+v, want IP header %v, VRRP %v", f, c.ip, c.vrrp)
			}
		})
	}
}

// TestFrameRoundTrip: IPv4 options, the DF bit, 802.1Q tags and Ethernet
// padding, none of which keepalived's frames have.
func TestFrameRoundTrip(t *testing.T) {
	p, err := Unmarshal(unhex(t, v2Pass), d1, group, TTL)
	if err != nil {
		t.Fatal(err)
	}
	f := &Frame{
		Ethernet: &ethernet.Frame{Destination: net.HardwareAddr{1, 0, 0x5e, 0, 0, 0x12}, Source: net.HardwareAddr{2, 0x99, 0, 0, 0, 0x11},
			VLAN: &ethernet.VLAN{ID: 42, Priority: 6}, EtherType: ethernet.EtherTypeIPv4},
		IP: IPHeader{Src: d1, Dst: group, TTL: TTL, TOS: 0xc0, ID: 7, DF: true, Options: []byte{0x94, 4, 0, 0},
			Protocol: Protocol, ChecksumOK: true},
		VRRP: p,
	}
	b, err := f.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != 18+24+20 || b[12] != 0x81 || b[18] != 0x46 || b[24]&0x40 == 0 {
		t.Fatalf("frame %x: want a VLAN tag, IHL 6, DF", b)
	}
	padded := append(bytes.Clone(b), make([]byte, 10)...)
	g, err := DecodeEthernet(padded)
	if err != nil {
		t.Fatal(err)
	}
	if g.Message = nil; !reflect.DeepEqual(f, g) {
		t.Errorf("round trip\n got %+v %+v\nwant %+v %+v", g.Ethernet, g.IP, f.Ethernet, f.IP)
	}
	// Without Ethernet: the IP packet; protocol 0 means VRRP's.
	f.Ethernet, f.IP.Options, f.IP.Protocol = nil, nil, 0
	b, err = f.Marshal()
	if err != nil || len(b) != 40 || b[9] != Protocol {
		t.Errorf("IP packet %x, %v", b, err)
	}
	if _, err := (&Frame{}).Marshal(); !errors.Is(err, ErrNotVRRP) {
		t.Errorf("empty frame: %v", err)
	}
	f.IP.Options = []byte{1, 2, 3}
	if _, err := f.Marshal(); !errors.Is(err, ErrIPHeader) {
		t.Errorf("3 bytes of options: %v", err)
	}
}
