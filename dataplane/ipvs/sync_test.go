package ipvs

import (
	"errors"
	"net/netip"
	"os"
	"testing"

	"github.com/mdlayher/genetlink"
	"github.com/mdlayher/netlink"

	"github.com/raftlb/raftlb/dataplane"
)

func TestDaemonRoundTrip(t *testing.T) {
	for _, d := range []dataplane.SyncDaemon{
		{Role: "master", SyncID: 7, Interface: "s0"},
		{Role: "backup", SyncID: 255, Interface: "eth1", McastGroup: netip.MustParseAddr("239.1.2.3"), McastPort: 8850, McastTTL: 3, MaxLen: 1400},
		{Role: "master", SyncID: 0, Interface: "bond0.100", McastGroup: netip.MustParseAddr("ff02::1:3")},
	} {
		data, err := encodeDaemon(d)
		if err != nil {
			t.Fatalf("%+v: %v", d, err)
		}
		got, err := decodeDaemons([]genetlink.Message{{Data: data}})
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 1 || got[0] != d {
			t.Errorf("round trip: %+v, want %+v", got, d)
		}
	}
}

// TestDaemonWire pins the attribute layout the kernel parses.
func TestDaemonWire(t *testing.T) {
	data, err := encodeDaemon(dataplane.SyncDaemon{Role: "backup", SyncID: 9, Interface: "s0",
		McastGroup: netip.MustParseAddr("224.0.0.81"), McastPort: 8848, McastTTL: 1})
	if err != nil {
		t.Fatal(err)
	}
	outer, err := netlink.UnmarshalAttributes(data)
	if err != nil || len(outer) != 1 || outer[0].Type&^netlink.Nested != cmdAttrDaemon {
		t.Fatalf("outer %+v %v", outer, err)
	}
	inner, err := netlink.UnmarshalAttributes(outer[0].Data)
	if err != nil {
		t.Fatal(err)
	}
	want := map[uint16][]byte{
		daemonAttrState:      {2, 0, 0, 0},
		daemonAttrMcastIfn:   {'s', '0', 0},
		daemonAttrSyncID:     {9, 0, 0, 0},
		daemonAttrMcastGroup: {224, 0, 0, 81},
		daemonAttrMcastPort:  {0x90, 0x22}, // 8848, host (little-endian) order
		daemonAttrMcastTTL:   {1},
	}
	if len(inner) != len(want) {
		t.Fatalf("attributes %+v", inner)
	}
	for _, a := range inner {
		if w, ok := want[a.Type]; !ok || string(a.Data) != string(w) {
			t.Errorf("attribute %d = %v, want %v", a.Type, a.Data, w)
		}
	}
}

func TestDaemonErrors(t *testing.T) {
	for name, d := range map[string]dataplane.SyncDaemon{
		"role":          {Role: "primary", Interface: "s0"},
		"no interface":  {Role: "master"},
		"long iface":    {Role: "master", Interface: "abcdefghijklmnop"},
		"syncid":        {Role: "master", Interface: "s0", SyncID: 256},
		"port":          {Role: "master", Interface: "s0", McastPort: 70000},
		"ttl":           {Role: "master", Interface: "s0", McastTTL: 256},
		"not multicast": {Role: "master", Interface: "s0", McastGroup: netip.MustParseAddr("10.0.0.1")},
	} {
		if _, err := encodeDaemon(d); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := encodeDaemonState("both"); err == nil {
		t.Error("role both accepted")
	}
}

// TestNoIPVS: on a kernel without IPVS, New fails plainly and the error
// wraps dataplane.ErrUnsupported (moby/ipvs alone would "succeed").
func TestNoIPVS(t *testing.T) {
	if _, err := os.Stat("/proc/net/ip_vs"); err == nil {
		t.Skip("this kernel has IPVS; the VM tests (integration/vm) cover it")
	}
	b, err := New()
	if err == nil {
		b.Close()
		t.Fatal("New succeeded on a kernel without IPVS")
	}
	if !errors.Is(err, dataplane.ErrUnsupported) {
		t.Errorf("error does not wrap ErrUnsupported: %v", err)
	}
	const want = `the kernel has no IPVS (generic netlink family "IPVS" not found): load the ip_vs module or run with -dataplane nft`
	if err.Error() != want {
		t.Errorf("error\n %q\nwant\n %q", err, want)
	}
	if err := Detect(); !errors.Is(err, dataplane.ErrUnsupported) {
		t.Errorf("Detect: %v", err)
	}
	if _, err := NewInNamespace("/nonexistent/netns"); err == nil || errors.Is(err, dataplane.ErrUnsupported) {
		t.Errorf("bad namespace path: %v", err)
	}
}

func TestDaemonMatches(t *testing.T) {
	running := dataplane.SyncDaemon{Role: "master", SyncID: 7, Interface: "s0",
		McastGroup: netip.MustParseAddr("224.0.0.81"), McastPort: 8848, McastTTL: 1, MaxLen: 1472}
	for _, tc := range []struct {
		want dataplane.SyncDaemon
		ok   bool
	}{
		{dataplane.SyncDaemon{Role: "master", SyncID: 7, Interface: "s0"}, true},
		{running, true},
		{dataplane.SyncDaemon{Role: "master", SyncID: 7, Interface: "s0", McastPort: 8848, McastGroup: netip.MustParseAddr("224.0.0.81")}, true},
		{dataplane.SyncDaemon{Role: "backup", SyncID: 7, Interface: "s0"}, false},
		{dataplane.SyncDaemon{Role: "master", SyncID: 8, Interface: "s0"}, false},
		{dataplane.SyncDaemon{Role: "master", SyncID: 7, Interface: "s1"}, false},
		{dataplane.SyncDaemon{Role: "master", SyncID: 7, Interface: "s0", McastPort: 9000}, false},
		{dataplane.SyncDaemon{Role: "master", SyncID: 7, Interface: "s0", McastGroup: netip.MustParseAddr("239.0.0.1")}, false},
	} {
		if got := daemonMatches(running, tc.want); got != tc.ok {
			t.Errorf("%+v: %v, want %v", tc.want, got, tc.ok)
		}
	}
}
