//go:build linux

package vip

// Tests against the real kernel, each in network namespaces of its own
// (internal/netlab): no address is added to, and no frame sent from, the
// root namespace.

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/packet"
	"golang.org/x/net/ipv6"

	"github.com/raftlb/raftlb/internal/netlab"
	"github.com/raftlb/raftlb/model"
)

func nsPath(ns string) string { return "/run/netns/" + ns }

func newNetlink(t *testing.T, ns string) *Netlink {
	t.Helper()
	n, err := NewNetlink(NetlinkConfig{Netns: nsPath(ns)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

func newAnnouncer(t *testing.T, cfg PacketConfig) *PacketAnnouncer {
	t.Helper()
	a, err := NewPacketAnnouncer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	return a
}

// addrList lists the addresses of ns as "prefix ifname[*]" (* = marked),
// without link-local IPv6 and loopback's own addresses.
func addrList(t *testing.T, n *Netlink) []string {
	t.Helper()
	addrs, err := n.Addrs()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, a := range addrs {
		if a.Prefix.Addr().IsLinkLocalUnicast() || a.Prefix.Addr().IsLoopback() {
			continue
		}
		s := a.Prefix.String() + " " + a.Interface
		if a.Marked {
			s += "*"
		}
		out = append(out, s)
	}
	slices.Sort(out)
	return out
}

// sysctl sets name=value inside ns.
func sysctl(lab *netlab.Lab, ns string, kv ...string) {
	for _, s := range kv {
		lab.MustRun(ns, "sysctl", "-q", "-w", s)
	}
}

func TestNetlinkLinks(t *testing.T) {
	lab := netlab.New(t)
	d, p := lab.Netns("d"), lab.Netns("p")
	lab.Link(d, "eth0", p, "eth0")
	lab.Addr(d, "eth0", "10.66.0.1/24") // not raftlb's
	n := newNetlink(t, d)

	for _, s := range []string{"10.66.0.100/24", "2001:db8:66::100/64", "10.66.0.100/32"} {
		if err := n.AddAddr("eth0", netip.MustParsePrefix(s)); err != nil {
			t.Fatal(err)
		}
	}
	if err := n.AddAddr("eth0", netip.MustParsePrefix("10.66.0.100/24")); err != nil {
		t.Fatalf("adding a present address: %v", err)
	}
	equal(t, "addresses", addrList(t, n), []string{"10.66.0.1/24 eth0", "10.66.0.100/24 eth0*", "10.66.0.100/32 eth0*", "2001:db8:66::100/64 eth0*"})
	// The IPv6 VIP is usable at once: added without DAD, never tentative.
	if out := lab.MustRun(d, "ip", "-6", "addr", "show", "dev", "eth0", "scope", "global"); !strings.Contains(out, "nodad") || strings.Contains(out, "tentative") {
		t.Fatalf("IPv6 VIP flags:\n%s", out)
	}
	if err := n.DelAddr("eth0", netip.MustParsePrefix("10.66.0.100/32")); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"10.66.0.100/32", "2001:db8:66::999/64"} {
		if err := n.DelAddr("eth0", netip.MustParsePrefix(s)); err != nil {
			t.Fatalf("removing absent %s: %v", s, err)
		}
	}
	equal(t, "after removal", addrList(t, n), []string{"10.66.0.1/24 eth0", "10.66.0.100/24 eth0*", "2001:db8:66::100/64 eth0*"})
	if err := n.AddAddr("nosuch0", netip.MustParsePrefix("10.66.0.9/24")); err == nil || !strings.Contains(err.Error(), "nosuch0") {
		t.Fatalf("unknown interface: %v", err)
	}
	if err := n.AddAddr("eth0", netip.Prefix{}); err == nil {
		t.Fatal("invalid prefix accepted")
	}
}

// A restarted director removes the VIPs of the state it still has, and
// raftlb's marked addresses, but not other addresses.
func TestRemoveUnownedKernel(t *testing.T) {
	lab := netlab.New(t)
	d, p := lab.Netns("d"), lab.Netns("p")
	lab.Link(d, "eth0", p, "eth0")
	lab.Addr(d, "eth0", "10.66.0.1/24")        // the host's address
	lab.Addr(d, "eth0", "10.66.0.100/24")      // a VIP left by a crashed raftlb on an old kernel (unmarked)
	lab.Addr(d, "eth0", "2001:db8:66::100/64") // the same for IPv6
	lab.Addr(d, "lo", "10.66.0.100/32")        // the VIP on lo for direct routing: not the VIP's interface
	n := newNetlink(t, d)
	if err := n.AddAddr("eth0", netip.MustParsePrefix("10.66.0.200/24")); err != nil { // marked; VIP deleted while down
		t.Fatal(err)
	}
	m := New(n, newAnnouncer(t, PacketConfig{Netns: nsPath(d)}), Options{})
	defer m.Close()
	state := []model.VIP{vipOf("10.66.0.100/24", "eth0"), vipOf("2001:db8:66::100/64", "eth0"), vipOf("10.66.9.9/24", "eth0")}
	if err := m.RemoveUnowned(state); err != nil {
		t.Fatal(err)
	}
	equal(t, "after RemoveUnowned", addrList(t, n), []string{"10.66.0.1/24 eth0", "10.66.0.100/32 lo"})
	if st := m.Stats(); st.Removed != 3 || st.AddrErrors != 0 || st.Announced != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// capture receives frames on ifname in ns until stop is closed.
type capture struct {
	conn *packet.Conn
	ch   chan []byte
}

func startCapture(t *testing.T, ns, ifname string) *capture {
	t.Helper()
	var c capture
	err := netlab.Do(ns, func() error {
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		c.conn, err = packet.Listen(ifi, packet.Raw, 0x0003 /* ETH_P_ALL */, nil)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	c.ch = make(chan []byte, 64)
	go func() {
		defer close(c.ch)
		for {
			b := make([]byte, 2048)
			n, _, err := c.conn.ReadFrom(b)
			if err != nil {
				return
			}
			c.ch <- b[:n]
		}
	}()
	t.Cleanup(func() { c.conn.Close() })
	return &c
}

// next returns the next frame for which keep is true.
func (c *capture) next(t *testing.T, keep func([]byte) bool) []byte {
	t.Helper()
	timeout := time.After(3 * time.Second)
	for {
		select {
		case f, ok := <-c.ch:
			if !ok {
				t.Fatal("capture ended")
			}
			if keep(f) {
				return f
			}
		case <-timeout:
			t.Fatal("no matching frame within 3 s")
		}
	}
}

func isARP(f []byte) bool {
	return len(f) >= ARPFrameLen && ethernet.EtherType(binary.BigEndian.Uint16(f[12:14])) == ethernet.EtherTypeARP
}
func isNA(f []byte) bool {
	return len(f) >= NAFrameLen && ethernet.EtherType(binary.BigEndian.Uint16(f[12:14])) == ethernet.EtherTypeIPv6 &&
		f[etherHeaderLen+6] == protoICMPv6 && f[etherHeaderLen+ipv6.HeaderLen] == byte(ipv6.ICMPTypeNeighborAdvertisement)
}

// The announcer puts exactly the encoders' frames on the wire, from the
// interface's MAC, in the order request, reply; the NA's R flag follows
// the interface's IPv6 forwarding.
func TestAnnouncerFrames(t *testing.T) {
	lab := netlab.New(t)
	d, p := lab.Netns("d"), lab.Netns("p")
	const macD = "02:66:00:00:00:01"
	lab.Link(d, "eth0", p, "eth0", macD)
	sysctl(lab, d, "net.ipv6.conf.eth0.forwarding=0")
	mac := mustMAC(macD)
	vip4, vip6 := netip.MustParseAddr("10.66.0.100"), netip.MustParseAddr("2001:db8:66::100")
	c := startCapture(t, p, "eth0")

	a := newAnnouncer(t, PacketConfig{Netns: nsPath(d)})
	if err := a.Announce("eth0", vip4); err != nil {
		t.Fatal(err)
	}
	req, _ := GARPRequest(mac, vip4, broadcastMAC)
	rep, _ := GARPReply(mac, vip4)
	for _, want := range [][]byte{req, rep} {
		if got := c.next(t, isARP); !bytes.Equal(got, want) {
			t.Fatalf("on the wire %x\nwant        %x", got, want)
		}
	}
	if err := a.Announce("eth0", vip6); err != nil {
		t.Fatal(err)
	}
	na, _ := UnsolicitedNA(mac, vip6, false)
	if got := c.next(t, isNA); !bytes.Equal(got, na) {
		t.Fatalf("on the wire %x\nwant        %x", got, na)
	}

	sysctl(lab, d, "net.ipv6.conf.eth0.forwarding=1")
	if err := a.Announce("eth0", vip6); err != nil {
		t.Fatal(err)
	}
	na, _ = UnsolicitedNA(mac, vip6, true)
	if got := c.next(t, isNA); !bytes.Equal(got, na) {
		t.Fatalf("with forwarding on: %x\nwant               %x", got, na)
	}

	a2 := newAnnouncer(t, PacketConfig{Netns: nsPath(d), ARP: ARPRequest, ZeroTargetMAC: true, NARouter: RouterClear})
	if err := a2.Announce("eth0", vip4); err != nil {
		t.Fatal(err)
	}
	req, _ = GARPRequest(mac, vip4, zeroMAC)
	if got := c.next(t, isARP); !bytes.Equal(got, req) {
		t.Fatalf("request only: %x\nwant %x", got, req)
	}
	if err := a2.Announce("eth0", vip6); err != nil {
		t.Fatal(err)
	}
	na, _ = UnsolicitedNA(mac, vip6, false)
	if got := c.next(t, isNA); !bytes.Equal(got, na) {
		t.Fatalf("RouterClear: %x\nwant %x", got, na)
	}

	if err := a.Announce("lo", vip4); !errors.Is(err, ErrNotAnnounceable) {
		t.Fatalf("announce on lo: %v", err)
	}
	if err := a.Announce("nosuch0", vip4); err == nil || !strings.Contains(err.Error(), "nosuch0") {
		t.Fatalf("announce on a missing interface: %v", err)
	}
	lab.MustRun(d, "ip", "link", "set", "eth0", "down")
	if err := a.Announce("eth0", vip4); err == nil {
		t.Fatal("announce on a down interface succeeded")
	}
}

// TestAnnouncerFramesDecoded decodes what the announcer puts on the wire
// with the libraries' parsers (checkARP, checkNA) and checks every field
// against its configuration, independently of the encoders.
func TestAnnouncerFramesDecoded(t *testing.T) {
	lab := netlab.New(t)
	d, p := lab.Netns("d"), lab.Netns("p")
	const macD = "02:67:00:00:00:01"
	lab.Link(d, "eth0", p, "eth0", macD)
	mac := mustMAC(macD)
	vip4, vip6 := netip.MustParseAddr("10.67.0.100"), netip.MustParseAddr("2001:db8:67::100")
	c := startCapture(t, p, "eth0")
	for _, tc := range []struct {
		name       string
		cfg        PacketConfig
		forwarding bool
		arp        []arp.Operation
		tha        net.HardwareAddr // of the request
		router     bool
	}{
		{"default", PacketConfig{}, false, []arp.Operation{arp.OperationRequest, arp.OperationReply}, broadcastMAC, false},
		{"default, forwarding", PacketConfig{}, true, []arp.Operation{arp.OperationRequest, arp.OperationReply}, broadcastMAC, true},
		{"request, zero tha, router clear", PacketConfig{ARP: ARPRequest, ZeroTargetMAC: true, NARouter: RouterClear}, true,
			[]arp.Operation{arp.OperationRequest}, zeroMAC, false},
		{"reply, router set", PacketConfig{ARP: ARPReply, NARouter: RouterSet}, false, []arp.Operation{arp.OperationReply}, nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fwd := "0"
			if tc.forwarding {
				fwd = "1"
			}
			sysctl(lab, d, "net.ipv6.conf.eth0.forwarding="+fwd)
			cfg := tc.cfg
			cfg.Netns = nsPath(d)
			a := newAnnouncer(t, cfg)
			// Twice: the second announcement's frames follow the first's
			// directly, so the announcer sent exactly the frames checked.
			for range 2 {
				if err := a.Announce("eth0", vip4); err != nil {
					t.Fatal(err)
				}
				for _, op := range tc.arp {
					tha := tc.tha
					if op == arp.OperationReply {
						tha = mac // the gratuitous reply's target MAC is its sender's
					}
					checkARP(t, c.next(t, isARP), op, mac, vip4, tha)
				}
				if err := a.Announce("eth0", vip6); err != nil {
					t.Fatal(err)
				}
				checkNA(t, c.next(t, isNA), mac, vip6, tc.router)
			}
		})
	}
}
