package vip

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
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

// TestNAChecksum verifies the checksum the way a receiver does: the sum
// over pseudo-header and message, checksum included, is 0xffff.
func TestNAChecksum(t *testing.T) {
	for _, s := range []string{"2001:db8::100", "fe80::1ead", "fd00::ffff:ffff:ffff:ffff", "2001:db8:ffff:ffff:ffff:ffff:ffff:fffe"} {
		for _, router := range []bool{false, true} {
			f, err := UnsolicitedNA(testMAC, netip.MustParseAddr(s), router)
			if err != nil {
				t.Fatal(err)
			}
			ip6 := f[etherHeaderLen:]
			if ip6[7] != 255 || ip6[6] != protoICMPv6 || int(binary.BigEndian.Uint16(ip6[4:6])) != len(ip6)-ipv6HeaderLen {
				t.Fatalf("%s: bad IPv6 header %x", s, ip6[:ipv6HeaderLen])
			}
			var sum uint32
			words := func(b []byte) {
				for i := 0; i < len(b); i += 2 {
					sum += uint32(binary.BigEndian.Uint16(b[i:]))
				}
			}
			words(ip6[8:40]) // source and destination
			icmp := ip6[ipv6HeaderLen:]
			words([]byte{0, 0, 0, byte(len(icmp)), 0, 0, 0, protoICMPv6})
			words(icmp)
			for sum > 0xffff {
				sum = sum&0xffff + sum>>16
			}
			if sum != 0xffff {
				t.Errorf("%s router=%v: checksum does not verify (sum %#x)", s, router, sum)
			}
			flags := binary.BigEndian.Uint32(icmp[4:8])
			if flags&naFlagOverride == 0 || flags&naFlagSolicited != 0 || (flags&naFlagRouter != 0) != router {
				t.Errorf("%s router=%v: flags %#x", s, router, flags)
			}
		}
	}
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
