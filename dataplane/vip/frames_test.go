package vip

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/ndp"
	"golang.org/x/net/ipv6"
)

var testMAC = mustMAC("02:99:00:00:00:11")

func mustMAC(s string) net.HardwareAddr {
	m, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
}

func mustHex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

// Golden frames. The ARP request is byte for byte the GARP keepalived
// 2.2.7 sent for VIP 10.99.0.100 from 02:99:00:00:00:11 (frame_hex in
// shared/lab/keepalived/vectors/vectors.hex.txt). The others were decoded
// by tshark 4.0.17: "[Is gratuitous: True]" for both ARP frames, "Checksum:
// 0xf683 [correct]" / "0x9999 [correct]" and the flags shown for the NAs.
var goldenFrames = []struct {
	name  string
	frame func() ([]byte, error)
	hex   string
}{
	{"keepalived GARP request, tha ff", func() ([]byte, error) {
		return GARPRequest(testMAC, netip.MustParseAddr("10.99.0.100"), broadcastMAC)
	}, "ffffffffffff029900000011080600010800060400010299000000110a630064ffffffffffff0a630064"},
	{"GARP request, tha zero (RFC 5227)", func() ([]byte, error) {
		return GARPRequest(testMAC, netip.MustParseAddr("10.99.0.100"), zeroMAC)
	}, "ffffffffffff029900000011080600010800060400010299000000110a6300640000000000000a630064"},
	{"GARP reply", func() ([]byte, error) {
		return GARPReply(testMAC, netip.MustParseAddr("10.99.0.100"))
	}, "ffffffffffff029900000011080600010800060400020299000000110a6300640299000000110a630064"},
	{"unsolicited NA, O", func() ([]byte, error) {
		return UnsolicitedNA(testMAC, netip.MustParseAddr("2001:db8::100"), false)
	}, "33330000000102990000001186dd6000000000203aff20010db8000000000000000000000100ff020000000000000000000000000001" +
		"8800f683200000002001" + "0db8000000000000000000000100" + "0201029900000011"},
	{"unsolicited NA, R O, link-local", func() ([]byte, error) {
		return UnsolicitedNA(testMAC, netip.MustParseAddr("fe80::1ead"), true)
	}, "33330000000102990000001186dd6000000000203afffe800000000000000000000000001eadff020000000000000000000000000001" +
		"88009999a0000000fe800000000000000000000000001ead" + "0201029900000011"},
}

func TestGoldenFrames(t *testing.T) {
	for _, g := range goldenFrames {
		t.Run(g.name, func(t *testing.T) {
			got, err := g.frame()
			if err != nil {
				t.Fatal(err)
			}
			if want := mustHex(g.hex); !bytes.Equal(got, want) {
				t.Fatalf("frame\n got %x\nwant %x", got, want)
			}
		})
	}
}

// TestFramesDecode has the libraries' own parsers (ethernet.Frame,
// arp.Packet, ipv6.ParseHeader, ndp.ParseMessage) decode the encoders'
// frames and checks every field.
func TestFramesDecode(t *testing.T) {
	macs := []net.HardwareAddr{testMAC, mustMAC("fe:ff:ff:ff:ff:fe")}
	for _, mac := range macs {
		for _, s := range []string{"10.99.0.100", "0.0.0.1", "255.255.255.254"} {
			v := netip.MustParseAddr(s)
			for _, tha := range []net.HardwareAddr{broadcastMAC, zeroMAC} {
				f, err := GARPRequest(mac, v, tha)
				if err != nil {
					t.Fatal(err)
				}
				checkARP(t, f, arp.OperationRequest, mac, v, tha)
			}
			f, err := GARPReply(mac, v)
			if err != nil {
				t.Fatal(err)
			}
			checkARP(t, f, arp.OperationReply, mac, v, mac)
		}
		for _, s := range []string{"2001:db8::100", "fe80::1ead", "fd00::ffff:ffff:ffff:ffff", "2001:db8:ffff:ffff:ffff:ffff:ffff:fffe"} {
			for _, router := range []bool{false, true} {
				v := netip.MustParseAddr(s)
				f, err := UnsolicitedNA(mac, v, router)
				if err != nil {
					t.Fatal(err)
				}
				checkNA(t, f, mac, v, router)
			}
		}
	}
	// A zone is not part of the frame.
	f, err := UnsolicitedNA(testMAC, netip.MustParseAddr("fe80::1ead%eth0"), false)
	if err != nil {
		t.Fatal(err)
	}
	checkNA(t, f, testMAC, netip.MustParseAddr("fe80::1ead"), false)
}

// checkARP decodes f with mdlayher/ethernet and mdlayher/arp and checks
// it is the 42-byte broadcast ARP frame of operation op announcing that
// vip is at mac, with target hardware address tha.
func checkARP(t *testing.T, f []byte, op arp.Operation, mac net.HardwareAddr, vip netip.Addr, tha net.HardwareAddr) {
	t.Helper()
	eth := decodeEther(t, f, ethernet.Broadcast, mac, ethernet.EtherTypeARP, ARPFrameLen)
	var p arp.Packet
	if err := p.UnmarshalBinary(eth.Payload); err != nil {
		t.Fatalf("arp: %v (%x)", err, f)
	}
	want := arp.Packet{HardwareType: 1, ProtocolType: uint16(ethernet.EtherTypeIPv4), HardwareAddrLength: 6, IPLength: 4,
		Operation: op, SenderHardwareAddr: mac, SenderIP: vip, TargetHardwareAddr: tha, TargetIP: vip}
	if got, want := fmt.Sprintf("%+v", p), fmt.Sprintf("%+v", want); got != want {
		t.Errorf("ARP packet\n got %s\nwant %s", got, want)
	}
}

// checkNA decodes f with mdlayher/ethernet, x/net/ipv6 and mdlayher/ndp
// and checks it is the unsolicited Neighbour Advertisement from vip to
// ff02::1 announcing that vip is at mac, with the R flag as router, and
// that its ICMPv6 checksum verifies.
func checkNA(t *testing.T, f []byte, mac net.HardwareAddr, vip netip.Addr, router bool) {
	t.Helper()
	eth := decodeEther(t, f, allNodesMAC, mac, ethernet.EtherTypeIPv6, NAFrameLen)
	h, err := ipv6.ParseHeader(eth.Payload)
	if err != nil {
		t.Fatalf("ipv6: %v (%x)", err, f)
	}
	wantH := ipv6.Header{Version: 6, PayloadLen: naLen + tllaOptLen, NextHeader: 58, HopLimit: 255,
		Src: vip.AsSlice(), Dst: net.ParseIP("ff02::1")}
	if h.String() != wantH.String() {
		t.Errorf("IPv6 header\n got %v\nwant %v", h, &wantH)
	}
	icmp := eth.Payload[ipv6.HeaderLen:]
	if len(icmp) < naLen {
		t.Fatalf("ICMPv6 message of %d bytes (%x)", len(icmp), f)
	}
	if icmp[1] != 0 || icmp[4]&0x1f != 0 || icmp[5] != 0 || icmp[6] != 0 || icmp[7] != 0 {
		t.Errorf("ICMPv6 code %d, reserved bits %x: want zeros", icmp[1], icmp[4:8])
	}
	m, err := ndp.ParseMessage(icmp)
	if err != nil {
		t.Fatalf("ndp: %v (%x)", err, f)
	}
	na, ok := m.(*ndp.NeighborAdvertisement)
	if !ok {
		t.Fatalf("ndp: a %T, want a Neighbour Advertisement", m)
	}
	if na.Router != router || na.Solicited || !na.Override || na.TargetAddress != vip {
		t.Errorf("NA router %v solicited %v override %v target %v; want %v false true %v",
			na.Router, na.Solicited, na.Override, na.TargetAddress, router, vip)
	}
	if len(na.Options) != 1 {
		t.Fatalf("NA options %v, want one target link-layer address", na.Options)
	}
	if o, ok := na.Options[0].(*ndp.LinkLayerAddress); !ok || o.Direction != ndp.Target || !bytes.Equal(o.Addr, mac) {
		t.Errorf("NA option %+v, want the target link-layer address %v", na.Options[0], mac)
	}
	// The checksum, verified the way a receiver does (ndp.ParseMessage
	// does not): the sum over pseudo-header and message, checksum
	// included, is 0xffff.
	var sum uint32
	words := func(b []byte) {
		for i := 0; i < len(b); i += 2 {
			sum += uint32(binary.BigEndian.Uint16(b[i:]))
		}
	}
	words(eth.Payload[8:40]) // source and destination
	words([]byte{0, 0, 0, byte(len(icmp)), 0, 0, 0, 58})
	words(icmp)
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	if sum != 0xffff {
		t.Errorf("ICMPv6 checksum does not verify (sum %#x)", sum)
	}
}

// decodeEther decodes f with mdlayher/ethernet and checks it is a frame
// of size bytes (no padding) from src to dst of type typ, without VLAN
// tags.
func decodeEther(t *testing.T, f []byte, dst, src net.HardwareAddr, typ ethernet.EtherType, size int) *ethernet.Frame {
	t.Helper()
	if len(f) != size {
		t.Errorf("%v frame of %d bytes, want %d", typ, len(f), size)
	}
	var eth ethernet.Frame
	if err := eth.UnmarshalBinary(f); err != nil {
		t.Fatalf("ethernet: %v (%x)", err, f)
	}
	if !bytes.Equal(eth.Destination, dst) || !bytes.Equal(eth.Source, src) || eth.EtherType != typ ||
		eth.VLAN != nil || eth.ServiceVLAN != nil {
		t.Errorf("ethernet %v -> %v type %v VLAN %v/%v; want %v -> %v type %v, no VLAN",
			eth.Source, eth.Destination, eth.EtherType, eth.ServiceVLAN, eth.VLAN, src, dst, typ)
	}
	return &eth
}

// keepalivedVectors is the decoded capture of keepalived 2.2.7's own
// packets (the keepalived lab's vectors, beside the repository on the
// development machine; RAFTLB_KEEPALIVED_VECTORS names another copy).
func keepalivedVectors(t *testing.T) []byte {
	path := os.Getenv("RAFTLB_KEEPALIVED_VECTORS")
	if path == "" {
		path = filepath.Join("..", "..", "..", "shared", "lab", "keepalived", "vectors", "vectors.json")
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		t.Skipf("no keepalived vectors at %s", path)
	}
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestKeepalivedGARPs: every gratuitous ARP keepalived 2.2.7 sent in the
// keepalived lab is, byte for byte, GARPRequest of its sender, address
// and target MAC.
func TestKeepalivedGARPs(t *testing.T) {
	var vectors []struct {
		Kind     string `json:"kind"`
		Op       int    `json:"op"`
		SHA      string `json:"sha"`
		SPA      string `json:"spa"`
		THA      string `json:"tha"`
		TPA      string `json:"tpa"`
		FrameHex string `json:"frame_hex"`
	}
	if err := json.Unmarshal(keepalivedVectors(t), &vectors); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, v := range vectors {
		if v.Kind != "arp" {
			continue
		}
		n++
		if v.Op != 1 || v.SPA != v.TPA {
			t.Errorf("keepalived sent an ARP frame that is not a gratuitous request: %+v", v)
			continue
		}
		got, err := GARPRequest(mustMAC(v.SHA), netip.MustParseAddr(v.SPA), mustMAC(v.THA))
		if err != nil {
			t.Fatal(err)
		}
		if want := mustHex(v.FrameHex); !bytes.Equal(got, want) {
			t.Errorf("GARP for %s at %s\n got %x\nwant %x (keepalived)", v.SPA, v.SHA, got, want)
		}
	}
	if n == 0 {
		t.Fatal("no ARP frame among the keepalived vectors")
	}
	t.Logf("%d keepalived GARPs match", n)
}

func TestFrameErrors(t *testing.T) {
	v4, v6 := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("2001:db8::1")
	cases := []struct {
		name string
		err  func() error
	}{
		{"ARP with IPv6", func() error { _, err := GARPReply(testMAC, v6); return err }},
		{"ARP with short MAC", func() error { _, err := GARPReply(net.HardwareAddr{1, 2, 3}, v4); return err }},
		{"ARP with 8-byte tha", func() error { _, err := GARPRequest(testMAC, v4, make(net.HardwareAddr, 8)); return err }},
		{"NA with IPv4", func() error { _, err := UnsolicitedNA(testMAC, v4, false); return err }},
		{"NA with 4in6", func() error {
			_, err := UnsolicitedNA(testMAC, netip.MustParseAddr("::ffff:192.0.2.1"), false)
			return err
		}},
		{"NA with multicast", func() error { _, err := UnsolicitedNA(testMAC, netip.MustParseAddr("ff02::1"), false); return err }},
		{"NA with no MAC", func() error { _, err := UnsolicitedNA(nil, v6, false); return err }},
	}
	for _, c := range cases {
		if err := c.err(); !errors.Is(err, ErrFrame) {
			t.Errorf("%s: err = %v, want ErrFrame", c.name, err)
		}
	}
}

// TestFramesTshark has Wireshark decode the frames independently, when
// tshark is installed.
func TestFramesTshark(t *testing.T) {
	tshark, err := exec.LookPath("tshark")
	if err != nil {
		t.Skip("tshark not installed")
	}
	var frames [][]byte
	for _, g := range goldenFrames {
		f, err := g.frame()
		if err != nil {
			t.Fatal(err)
		}
		frames = append(frames, f)
	}
	path := filepath.Join(t.TempDir(), "frames.pcap")
	if err := os.WriteFile(path, pcap(frames), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(tshark, "-r", path, "-V")
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir()) // no user profile
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("tshark: %v\n%s", err, out)
	}
	s := string(out)
	for _, want := range []struct {
		text string
		n    int
	}{
		{"[Is gratuitous: True]", 3},
		{"[Checksum Status: Good]", 2},
		{"..1. .... .... .... .... .... .... .... = Override: Set", 2},
		{"1... .... .... .... .... .... .... .... = Router: Set", 1},
		{"Hop Limit: 255", 2},
		{"Link-layer address: 02:99:00:00:00:11", 2},
	} {
		if got := strings.Count(s, want.text); got != want.n {
			t.Errorf("tshark: %q appears %d times, want %d\n%s", want.text, got, want.n, s)
		}
	}
	if strings.Contains(s, "Malformed") || strings.Contains(s, "[incorrect") {
		t.Errorf("tshark found a problem:\n%s", s)
	}
}

// pcap returns a classic pcap file (Ethernet) of frames.
func pcap(frames [][]byte) []byte {
	b := binary.LittleEndian.AppendUint32(nil, 0xa1b2c3d4)
	b = binary.LittleEndian.AppendUint16(b, 2)
	b = binary.LittleEndian.AppendUint16(b, 4)
	b = binary.LittleEndian.AppendUint32(b, 0) // thiszone
	b = binary.LittleEndian.AppendUint32(b, 0) // sigfigs
	b = binary.LittleEndian.AppendUint32(b, 65535)
	b = binary.LittleEndian.AppendUint32(b, 1) // LINKTYPE_ETHERNET
	for i, f := range frames {
		b = binary.LittleEndian.AppendUint32(b, uint32(i))
		b = binary.LittleEndian.AppendUint32(b, 0)
		b = binary.LittleEndian.AppendUint32(b, uint32(len(f)))
		b = binary.LittleEndian.AppendUint32(b, uint32(len(f)))
		b = append(b, f...)
	}
	return b
}
