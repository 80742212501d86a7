package ipvs

import (
	"encoding/binary"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"strings"
	"syscall"
	"testing"

	moby "github.com/moby/ipvs"

	"github.com/raftlb/raftlb/dataplane"
)

// kernelEcho returns what the kernel reports for a service it was given:
// the same fields, plus the HASHED flag it sets on every listed service; a
// fwmark service comes back without protocol, address or port.
func kernelEcho(s *moby.Service) *moby.Service {
	out := *s
	out.Flags |= flagHashed
	if out.FWMark != 0 {
		out.Protocol, out.Address, out.Port = 0, nil, 0
	}
	if out.AddressFamily == syscall.AF_INET && out.Address != nil {
		out.Address = out.Address.To4()
	}
	return &out
}

// randService returns a random service that validation would accept.
func randService(r *rand.Rand) dataplane.Service {
	s := dataplane.Service{Family: "inet"}
	if r.IntN(2) == 0 {
		s.Family = "inet6"
	}
	if r.IntN(4) == 0 {
		s.Fwmark = 1 + r.Uint32N(1<<31)
	} else {
		s.Protocol = []string{"tcp", "udp", "sctp"}[r.IntN(3)]
		s.Address = randAddr(r, s.Family)
		s.Port = uint16(1 + r.IntN(65535))
	}
	s.Scheduler = Schedulers[r.IntN(len(Schedulers))]
	if r.IntN(2) == 0 {
		s.Timeout = 1 + r.Uint32N(31*24*3600)
		if r.IntN(2) == 0 {
			if s.Family == "inet" {
				s.Netmask = 1 + r.IntN(31)
			} else {
				s.Netmask = 1 + r.IntN(127)
			}
		}
		if s.Fwmark == 0 && r.IntN(4) == 0 {
			s.Port = 0 // all ports: persistent services only
		}
	}
	if r.IntN(3) == 0 && (s.Protocol == "udp" || s.Fwmark != 0) {
		s.Flags = append(s.Flags, "ops")
	}
	if s.Scheduler == "sh" || s.Scheduler == "mh" {
		for _, f := range []string{"-fallback", "-port"} {
			if r.IntN(2) == 0 {
				s.Flags = append(s.Flags, s.Scheduler+f)
			}
		}
	}
	slices.Sort(s.Flags)
	return s
}

func randAddr(r *rand.Rand, family string) netip.Addr {
	if family == "inet" {
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], r.Uint32()|1)
		return netip.AddrFrom4(b)
	}
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], 0x20010db8<<32|r.Uint64()>>32)
	binary.BigEndian.PutUint64(b[8:], r.Uint64()|1)
	return netip.AddrFrom16(b)
}

func randDest(r *rand.Rand, family string) dataplane.Destination {
	d := dataplane.Destination{
		Address: randAddr(r, family),
		Port:    uint16(r.IntN(65536)),
		Weight:  r.IntN(65536),
		Forward: []string{"nat", "dr", "tun"}[r.IntN(3)],
	}
	if r.IntN(2) == 0 {
		d.UpperThreshold = r.Uint32()
		d.LowerThreshold = r.Uint32N(d.UpperThreshold + 1)
	}
	return d
}

// TestServiceRoundTrip: random services -> moby/ipvs form -> what the
// kernel reports -> back: equal.
func TestServiceRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 20000; i++ {
		want := randService(r)
		ks, err := toKernelService(want)
		if err != nil {
			t.Fatalf("%+v: %v", want, err)
		}
		got, err := fromKernelService(kernelEcho(ks))
		if err != nil {
			t.Fatalf("%+v: back: %v", want, err)
		}
		if !got.Equal(want) || got.Key() != want.Key() {
			t.Fatalf("round trip changed the service:\n want %+v\n  got %+v\n via %+v", want, got, ks)
		}
	}
}

// TestDestRoundTrip: random destinations -> moby/ipvs form -> back: equal.
func TestDestRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for i := 0; i < 20000; i++ {
		family := []string{"inet", "inet6"}[r.IntN(2)]
		want := randDest(r, family)
		kd, err := toKernelDest(familyNumbers[family], want)
		if err != nil {
			t.Fatalf("%+v: %v", want, err)
		}
		got, err := fromKernelDest(kd)
		if err != nil {
			t.Fatalf("%+v: back: %v", want, err)
		}
		if got != want || got.Key() != want.Key() {
			t.Fatalf("round trip changed the destination:\n want %+v\n  got %+v", want, got)
		}
	}
}

// TestKernelEncoding pins the values the kernel sees for each field.
func TestKernelEncoding(t *testing.T) {
	v4 := netip.MustParseAddr("192.0.2.1")
	v6 := netip.MustParseAddr("2001:db8::1")
	mask24 := binary.NativeEndian.Uint32([]byte{255, 255, 255, 0})
	all4 := uint32(0xffffffff)
	for _, tc := range []struct {
		in   dataplane.Service
		want moby.Service
	}{
		{dataplane.Service{Protocol: "tcp", Address: v4, Port: 80, Family: "inet", Scheduler: "rr"},
			moby.Service{AddressFamily: syscall.AF_INET, Protocol: 6, Address: net.IP{192, 0, 2, 1}, Port: 80, SchedName: "rr", Netmask: all4}},
		{dataplane.Service{Protocol: "udp", Address: v6, Port: 53, Family: "inet6", Scheduler: "mh", Flags: []string{"mh-fallback", "mh-port", "ops"}},
			moby.Service{AddressFamily: syscall.AF_INET6, Protocol: 17, Address: net.IP(v6.AsSlice()), Port: 53, SchedName: "mh", Flags: 0x4 | 0x8 | 0x10, Netmask: 128}},
		{dataplane.Service{Protocol: "sctp", Address: v4, Port: 0, Family: "inet", Scheduler: "sh", Flags: []string{"sh-port"}, Timeout: 300, Netmask: 24},
			moby.Service{AddressFamily: syscall.AF_INET, Protocol: 132, Address: net.IP{192, 0, 2, 1}, SchedName: "sh", Flags: 0x1 | 0x10, Timeout: 300, Netmask: mask24}},
		{dataplane.Service{Fwmark: 7, Family: "inet6", Scheduler: "wlc", Timeout: 60, Netmask: 64},
			moby.Service{AddressFamily: syscall.AF_INET6, FWMark: 7, SchedName: "wlc", Flags: 0x1, Timeout: 60, Netmask: 64}},
	} {
		got, err := toKernelService(tc.in)
		if err != nil {
			t.Fatalf("%s: %v", tc.in.Key(), err)
		}
		if got.AddressFamily != tc.want.AddressFamily || got.Protocol != tc.want.Protocol || !got.Address.Equal(tc.want.Address) ||
			got.Port != tc.want.Port || got.FWMark != tc.want.FWMark || got.SchedName != tc.want.SchedName ||
			got.Flags != tc.want.Flags || got.Timeout != tc.want.Timeout || got.Netmask != tc.want.Netmask {
			t.Errorf("%s:\n got %+v\nwant %+v", tc.in.Key(), *got, tc.want)
		}
	}
	for fwd, flag := range map[string]uint32{"nat": 0, "tun": 2, "dr": 3} {
		d, err := toKernelDest(syscall.AF_INET, dataplane.Destination{Address: v4, Port: 80, Weight: 5, Forward: fwd, UpperThreshold: 9, LowerThreshold: 3})
		if err != nil {
			t.Fatal(err)
		}
		if d.ConnectionFlags != flag || d.Weight != 5 || d.UpperThreshold != 9 || d.LowerThreshold != 3 || len(d.Address) != 4 {
			t.Errorf("%s: %+v", fwd, *d)
		}
	}
}

func TestNetmask(t *testing.T) {
	for prefix := 0; prefix <= 32; prefix++ {
		v, err := encodeNetmask(syscall.AF_INET, prefix)
		if err != nil {
			t.Fatal(err)
		}
		var b [4]byte
		binary.NativeEndian.PutUint32(b[:], v)
		want := prefix
		if want == 0 {
			want = 32
		}
		if ones, _ := net.IPMask(b[:]).Size(); ones != want {
			t.Errorf("/%d encodes as mask %v", prefix, net.IP(b[:]))
		}
		if back := decodeNetmask(syscall.AF_INET, v); back != prefix%32 {
			t.Errorf("/%d decodes as /%d", prefix, back)
		}
	}
	for _, p := range []int{0, 1, 64, 127, 128} {
		v, _ := encodeNetmask(syscall.AF_INET6, p)
		if (p == 0 && v != 128) || (p != 0 && v != uint32(p)) {
			t.Errorf("v6 /%d encodes as %d", p, v)
		}
		if back := decodeNetmask(syscall.AF_INET6, v); back != p%128 {
			t.Errorf("v6 /%d decodes as %d", p, back)
		}
	}
	if _, err := encodeNetmask(syscall.AF_INET, 33); err == nil {
		t.Error("/33 accepted for IPv4")
	}
	if _, err := encodeNetmask(syscall.AF_INET6, 129); err == nil {
		t.Error("/129 accepted for IPv6")
	}
}

// TestFlagsFromForeignServices: bits another tool set come back with names.
func TestFlagsFromForeignServices(t *testing.T) {
	for _, tc := range []struct {
		sched string
		bits  uint32
		want  string
	}{
		{"sh", 0x8 | 0x10, "sh-fallback,sh-port"},
		{"mh", 0x8, "mh-fallback"},
		{"rr", 0x8 | 0x10 | 0x20, "flag-1,flag-2,flag-3"},
		{"wlc", 0x4 | 0x2 | 0x1, "ops"},
	} {
		if got := strings.Join(schedFlagNames(tc.sched, tc.bits), ","); got != tc.want {
			t.Errorf("%s %#x: %q, want %q", tc.sched, tc.bits, got, tc.want)
		}
	}
}

func TestConversionErrors(t *testing.T) {
	v4 := netip.MustParseAddr("192.0.2.1")
	v6 := netip.MustParseAddr("2001:db8::1")
	for name, s := range map[string]dataplane.Service{
		"sh flag on mh":       {Protocol: "tcp", Address: v4, Port: 1, Family: "inet", Scheduler: "mh", Flags: []string{"sh-port"}},
		"unknown flag":        {Protocol: "tcp", Address: v4, Port: 1, Family: "inet", Scheduler: "rr", Flags: []string{"fast"}},
		"no scheduler":        {Protocol: "tcp", Address: v4, Port: 1, Family: "inet"},
		"bad protocol":        {Protocol: "icmp", Address: v4, Port: 1, Family: "inet", Scheduler: "rr"},
		"family mismatch":     {Protocol: "tcp", Address: v4, Port: 1, Family: "inet6", Scheduler: "rr"},
		"no address":          {Protocol: "tcp", Port: 1, Family: "inet", Scheduler: "rr"},
		"fwmark with address": {Fwmark: 1, Address: v4, Family: "inet", Scheduler: "rr"},
		"netmask without p":   {Protocol: "tcp", Address: v4, Port: 1, Family: "inet", Scheduler: "rr", Netmask: 24},
		"v6 netmask too long": {Protocol: "tcp", Address: v6, Port: 1, Family: "inet6", Scheduler: "rr", Timeout: 1, Netmask: 129},
	} {
		if _, err := toKernelService(s); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	for name, d := range map[string]dataplane.Destination{
		"family mismatch": {Address: v6, Port: 1, Weight: 1, Forward: "nat"},
		"bad forward":     {Address: v4, Port: 1, Weight: 1, Forward: "local"},
		"weight":          {Address: v4, Port: 1, Weight: 65536, Forward: "nat"},
		"no address":      {Port: 1, Weight: 1, Forward: "nat"},
	} {
		if _, err := toKernelDest(syscall.AF_INET, d); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestServiceKeyOnly(t *testing.T) {
	// Deleting needs only the identity: a cached service without a
	// scheduler still converts.
	s := dataplane.Service{Protocol: "udp", Address: netip.MustParseAddr("2001:db8::5"), Port: 53}
	ks, err := toKernelServiceKey(s)
	if err != nil {
		t.Fatal(err)
	}
	if ks.AddressFamily != syscall.AF_INET6 || ks.Protocol != 17 || ks.Port != 53 || ks.Netmask != 128 {
		t.Errorf("%+v", *ks)
	}
}

func TestCapabilities(t *testing.T) {
	c := Capabilities()
	if len(c.Schedulers) != 14 || !slices.Contains(c.Schedulers, "twos") || len(c.Forwards) != 3 || len(c.Flags) != 5 ||
		!c.Persistence || !c.Fwmark || !c.Thresholds {
		t.Errorf("%+v", c)
	}
}
