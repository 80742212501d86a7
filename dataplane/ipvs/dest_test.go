package ipvs

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"syscall"
	"testing"

	"github.com/mdlayher/netlink"

	"github.com/raftlb/raftlb/dataplane"
)

// attrs decodes one level of netlink attributes into type -> value, and
// the nested ones through nested.
func attrs(t *testing.T, b []byte) map[uint16][]byte {
	t.Helper()
	ad, err := netlink.NewAttributeDecoder(b)
	if err != nil {
		t.Fatal(err)
	}
	out := map[uint16][]byte{}
	for ad.Next() {
		if _, dup := out[ad.Type()]; dup {
			t.Fatalf("attribute %d twice", ad.Type())
		}
		out[ad.Type()] = ad.Bytes()
	}
	if err := ad.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func u16(v uint16) []byte { return binary.NativeEndian.AppendUint16(nil, v) }
func u32(v uint32) []byte { return binary.NativeEndian.AppendUint32(nil, v) }

// TestDestWire pins what the kernel parses for a destination command: the
// service's identity, and the destination with its own address family,
// so that a tun destination of the other family is not read as one of
// the service's.
func TestDestWire(t *testing.T) {
	v4svc := dataplane.Service{Protocol: "tcp", Address: netip.MustParseAddr("192.0.2.1"), Port: 80, Family: "inet", Scheduler: "rr"}
	fw6 := dataplane.Service{Fwmark: 7, Family: "inet6", Scheduler: "rr"}
	tun6 := dataplane.Destination{Address: netip.MustParseAddr("2001:db8::5"), Port: 80, Weight: 3, Forward: "tun", UpperThreshold: 9, LowerThreshold: 2}
	nat4 := dataplane.Destination{Address: netip.MustParseAddr("10.0.0.1"), Port: 8080, Weight: 65535, Forward: "nat"}
	tun4 := dataplane.Destination{Address: netip.MustParseAddr("10.0.0.2"), Weight: 1, Forward: "tun"}
	for _, tc := range []struct {
		name string
		s    dataplane.Service
		d    dataplane.Destination
		full bool
		svc  map[uint16][]byte
		dest map[uint16][]byte
	}{
		{"v6 tun in a v4 service", v4svc, tun6, true,
			map[uint16][]byte{svcAttrAF: u16(syscall.AF_INET), svcAttrProtocol: u16(6), svcAttrAddr: {192, 0, 2, 1}, svcAttrPort: {0, 80}},
			map[uint16][]byte{destAttrAddrFamily: u16(syscall.AF_INET6), destAttrAddr: tun6.Address.AsSlice(), destAttrPort: {0, 80},
				destAttrFwdMethod: u32(2), destAttrWeight: u32(3), destAttrUThresh: u32(9), destAttrLThresh: u32(2)}},
		{"nat, same family", v4svc, nat4, true,
			map[uint16][]byte{svcAttrAF: u16(syscall.AF_INET), svcAttrProtocol: u16(6), svcAttrAddr: {192, 0, 2, 1}, svcAttrPort: {0, 80}},
			map[uint16][]byte{destAttrAddrFamily: u16(syscall.AF_INET), destAttrAddr: {10, 0, 0, 1}, destAttrPort: {0x1f, 0x90},
				destAttrFwdMethod: u32(0), destAttrWeight: u32(65535), destAttrUThresh: u32(0), destAttrLThresh: u32(0)}},
		{"deletion from a v6 fwmark service", fw6, tun4, false,
			map[uint16][]byte{svcAttrAF: u16(syscall.AF_INET6), svcAttrFwmark: u32(7)},
			map[uint16][]byte{destAttrAddrFamily: u16(syscall.AF_INET), destAttrAddr: {10, 0, 0, 2}, destAttrPort: {0, 0}}},
	} {
		ks, err := toKernelServiceKey(tc.s)
		if err != nil {
			t.Fatal(err)
		}
		kd, err := toKernelDest(ks.AddressFamily, tc.d)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		b, err := encodeDestCmd(ks, kd, tc.full)
		if err != nil {
			t.Fatal(err)
		}
		top := attrs(t, b)
		if len(top) != 2 {
			t.Fatalf("%s: top-level attributes %v", tc.name, top)
		}
		for what, c := range map[string]struct {
			got, want map[uint16][]byte
		}{"service": {attrs(t, top[cmdAttrService]), tc.svc}, "destination": {attrs(t, top[cmdAttrDest]), tc.dest}} {
			if len(c.got) != len(c.want) {
				t.Errorf("%s: %s attributes %v, want %v", tc.name, what, c.got, c.want)
			}
			for typ, w := range c.want {
				if !bytes.Equal(c.got[typ], w) {
					t.Errorf("%s: %s attribute %d = %x, want %x", tc.name, what, typ, c.got[typ], w)
				}
			}
		}
	}
}

// TestCrossFamilyDest: only tun crosses address families, and then the
// destination keeps its own family.
func TestCrossFamilyDest(t *testing.T) {
	v6 := netip.MustParseAddr("2001:db8::1")
	for fwd, ok := range map[string]bool{"tun": true, "nat": false, "dr": false} {
		kd, err := toKernelDest(syscall.AF_INET, dataplane.Destination{Address: v6, Port: 80, Weight: 1, Forward: fwd})
		if (err == nil) != ok {
			t.Errorf("%s: err %v", fwd, err)
			continue
		}
		if ok && kd.AddressFamily != syscall.AF_INET6 {
			t.Errorf("%s: family %d, want AF_INET6", fwd, kd.AddressFamily)
		}
		if ok {
			back, err := fromKernelDest(kd)
			if err != nil || back.Address != v6 || back.Forward != "tun" {
				t.Errorf("back: %+v %v", back, err)
			}
		}
	}
}
