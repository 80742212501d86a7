//go:build linux

package vip

import (
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/raftlb/raftlb/internal/netlab"
	"github.com/raftlb/raftlb/model"
)

const (
	macA = "02:77:00:00:00:0a"
	macB = "02:77:00:00:00:0b"
)

// silent is an Announcer that sends nothing: the control for the claim
// that the announcements, and nothing else, move the client.
type silent struct{}

func (silent) Announce(string, netip.Addr) error { return nil }

// neigh returns the lladdr and state of ip in ns's neighbour table ("" if
// there is no entry with a link-layer address).
func neigh(t *testing.T, lab *netlab.Lab, ns, ip string) (lladdr, state string) {
	t.Helper()
	out := lab.MustRun(ns, "ip", "neigh", "show", "to", ip, "dev", "eth0")
	f := strings.Fields(out)
	for i := range f {
		if f[i] == "lladdr" && i+1 < len(f) {
			lladdr = f[i+1]
		}
	}
	if len(f) > 0 {
		state = f[len(f)-1]
	}
	return lladdr, state
}

// serveName answers every TCP connection to port 7777 in ns with name.
func serveName(t *testing.T, ns, name string) {
	t.Helper()
	ln, err := netlab.Listen(ns, "tcp", ":7777")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Write([]byte(name))
			c.Close()
		}
	}()
}

// ask connects from ns to ip:7777 and returns what the server said.
func ask(t *testing.T, ns, ip string) string {
	t.Helper()
	var got []byte
	err := netlab.Do(ns, func() error {
		c, err := net.DialTimeout("tcp", net.JoinHostPort(ip, "7777"), 3*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(3 * time.Second))
		got, err = io.ReadAll(c)
		return err
	})
	if err != nil {
		t.Fatalf("connect from %s to %s: %v", ns, ip, err)
	}
	return string(got)
}

// waitNeigh waits until ns resolves ip to mac.
func waitNeigh(t *testing.T, lab *netlab.Lab, ns, ip, mac, why string) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		got, state := neigh(t, lab, ns, ip)
		if got == mac {
			return time.Since(start)
		}
		if time.Since(start) > 3*time.Second {
			t.Fatalf("%s: %s resolves %s to %q (%s), want %s", why, ns, ip, got, state, mac)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestFailoverMovesNeighbours: a client's neighbour entries for an IPv4 and
// an IPv6 VIP follow the VIP from director to director because of the new
// holder's gratuitous ARP / unsolicited NA alone; the client sends nothing
// after its first connection.
//
// Sysctls (set explicitly: a new namespace inherits IPv4 settings from the
// root namespace):
//   - client, a plain host: arp_accept=0, drop_gratuitous_arp=0,
//     drop_unsolicited_na=0, forwarding=0, the defaults. Such a host does
//     not create a neighbour entry from an unsolicited ARP or NA, but it
//     updates an existing one: a gratuitous ARP (sender IP = target IP, and
//     for a reply target MAC = sender MAC) overrides the entry regardless of
//     locktime (arp_process/arp_is_garp), an NA with the Override flag
//     overrides it (ndisc_recv_na). The entry becomes STALE with the new
//     MAC. So the client connects to the VIP once, at the start, to have an entry.
//   - router, a router on the LAN: ip_forward=1 and arp_accept=1, IPv6
//     forwarding=1 and accept_untracked_na=1 (RFC 9131). It creates entries
//     from the announcements without ever sending traffic.
//   - directors: arp_notify=0, ndisc_notify=0, so the kernel announces
//     nothing itself and the control step means something.
func TestFailoverMovesNeighbours(t *testing.T) {
	start := time.Now()
	lab := netlab.New(t)
	br := lab.Netns("br")
	lab.Bridge(br, "br0")
	lab.MustRun(br, "ip", "link", "set", "br0", "type", "bridge", "mcast_snooping", "0")
	a, b, cl, rt := lab.Netns("a"), lab.Netns("b"), lab.Netns("cl"), lab.Netns("rt")
	for _, n := range []struct{ ns, port, mac, v4, v6 string }{
		{a, "pa", macA, "10.77.0.11/24", "fd77::11/64"},
		{b, "pb", macB, "10.77.0.12/24", "fd77::12/64"},
		{cl, "pcl", "02:77:00:00:00:50", "10.77.0.50/24", "fd77::50/64"},
		{rt, "prt", "02:77:00:00:00:01", "10.77.0.1/24", "fd77::1/64"},
	} {
		lab.Attach(n.ns, "eth0", br, "br0", n.port, n.mac)
		lab.Addr(n.ns, "eth0", n.v4)
		lab.Addr(n.ns, "eth0", n.v6)
	}
	for _, d := range []string{a, b} {
		sysctl(lab, d, "net.ipv4.conf.all.arp_notify=0", "net.ipv4.conf.eth0.arp_notify=0",
			"net.ipv6.conf.all.ndisc_notify=0", "net.ipv6.conf.eth0.ndisc_notify=0", "net.ipv6.conf.eth0.forwarding=0")
	}
	sysctl(lab, cl,
		"net.ipv4.conf.all.arp_accept=0", "net.ipv4.conf.eth0.arp_accept=0",
		"net.ipv4.conf.all.drop_gratuitous_arp=0", "net.ipv4.conf.eth0.drop_gratuitous_arp=0",
		"net.ipv6.conf.all.forwarding=0", "net.ipv6.conf.eth0.drop_unsolicited_na=0", "net.ipv6.conf.eth0.accept_untracked_na=0")
	sysctl(lab, rt,
		"net.ipv4.ip_forward=1", "net.ipv4.conf.all.arp_accept=1", "net.ipv4.conf.eth0.arp_accept=1",
		"net.ipv6.conf.all.forwarding=1", "net.ipv6.conf.eth0.accept_untracked_na=1")

	serveName(t, a, "A")
	serveName(t, b, "B")

	const vip4, vip6 = "10.77.0.100", "fd77::100"
	vips := []model.VIP{vipOf(vip4+"/24", "eth0"), vipOf(vip6+"/64", "eth0")}
	links := map[string]*Netlink{a: newNetlink(t, a), b: newNetlink(t, b)}
	names := map[string]string{a: "A", b: "B"}
	// take makes director ns the holder with a new Manager announcing
	// through ann, after the previous holder released the VIPs.
	var holder *Manager
	take := func(ns string, ann Announcer) *Manager {
		t.Helper()
		if holder != nil {
			if err := holder.ReleaseAll(); err != nil {
				t.Fatal(err)
			}
			holder.Close()
		}
		m := New(links[ns], ann, Options{Refresh: -1})
		t.Cleanup(func() { m.Close() })
		if err := m.RemoveUnowned(vips); err != nil {
			t.Fatal(err)
		}
		if err := m.Set(vips); err != nil {
			t.Fatal(err)
		}
		if got := len(m.Owned()); got != 2 {
			t.Fatalf("%s holds %d VIPs", names[ns], got)
		}
		holder = m
		return m
	}
	check := func(m *Manager, step string) {
		t.Helper()
		if st := m.Stats(); st.AnnounceErrors != 0 || st.AddrErrors != 0 {
			t.Fatalf("%s: stats %+v", step, st)
		}
	}
	report := func(step string, d4, d6 time.Duration) {
		t.Logf("%-40s client moved: IPv4 after %v, IPv6 after %v", step, d4.Round(time.Millisecond), d6.Round(time.Millisecond))
	}

	// 0. A holds the VIPs. The router learns them from A's announcements
	// alone; the client resolves them by connecting once.
	mA := take(a, newAnnouncer(t, PacketConfig{Netns: nsPath(a)}))
	waitNeigh(t, lab, rt, vip4, macA, "router learns the IPv4 VIP from A's gratuitous ARP (arp_accept=1)")
	waitNeigh(t, lab, rt, vip6, macA, "router learns the IPv6 VIP from A's NA (accept_untracked_na=1)")
	if mac, _ := neigh(t, lab, cl, vip4); mac != "" {
		t.Fatalf("the client (arp_accept=0) created an entry from a gratuitous ARP: %s", mac)
	}
	for _, ip := range []string{vip4, vip6} {
		if got := ask(t, cl, ip); got != "A" {
			t.Fatalf("client asked %s, answered by %q", ip, got)
		}
	}
	waitNeigh(t, lab, cl, vip4, macA, "client after connecting")
	waitNeigh(t, lab, cl, vip6, macA, "client after connecting")
	check(mA, "A")

	// 1. Control: B takes the VIPs without announcing. Nothing moves.
	take(b, silent{})
	time.Sleep(300 * time.Millisecond)
	for _, ns := range []string{cl, rt} {
		for _, ip := range []string{vip4, vip6} {
			if mac, state := neigh(t, lab, ns, ip); mac != macA {
				t.Fatalf("control: without announcements %s resolves %s to %q (%s), want A's %s", ns, ip, mac, state, macA)
			}
		}
	}
	if out := lab.MustRun(a, "ip", "addr", "show", "dev", "eth0"); strings.Contains(out, vip4) || strings.Contains(out, vip6) {
		t.Fatalf("A still holds a VIP:\n%s", out)
	}

	// 2. A new Manager on B takes the VIPs already there and announces
	// them (both ARP forms, the default).
	m := take(b, newAnnouncer(t, PacketConfig{Netns: nsPath(b)}))
	d4 := waitNeigh(t, lab, cl, vip4, macB, "B's gratuitous ARP (request + reply)")
	d6 := waitNeigh(t, lab, cl, vip6, macB, "B's unsolicited NA")
	waitNeigh(t, lab, rt, vip4, macB, "router, B's gratuitous ARP")
	waitNeigh(t, lab, rt, vip6, macB, "router, B's NA")
	check(m, "B")
	report("A -> B, ARP request + reply:", d4, d6)

	// 3. Back to A, gratuitous ARP replies only.
	m = take(a, newAnnouncer(t, PacketConfig{Netns: nsPath(a), ARP: ARPReply}))
	d4 = waitNeigh(t, lab, cl, vip4, macA, "A's gratuitous ARP reply")
	d6 = waitNeigh(t, lab, cl, vip6, macA, "A's unsolicited NA")
	check(m, "A")
	report("B -> A, ARP reply only:", d4, d6)

	// 4. To B, ARP requests only, target MAC zero (RFC 5227).
	m = take(b, newAnnouncer(t, PacketConfig{Netns: nsPath(b), ARP: ARPRequest, ZeroTargetMAC: true}))
	d4 = waitNeigh(t, lab, cl, vip4, macB, "B's gratuitous ARP request (tha 0)")
	d6 = waitNeigh(t, lab, cl, vip6, macB, "B's unsolicited NA")
	check(m, "B")
	report("A -> B, ARP request only, tha zero:", d4, d6)

	// The client reaches the VIPs, now at B.
	for _, ip := range []string{vip4, vip6} {
		if got := ask(t, cl, ip); got != "B" {
			t.Fatalf("client asked %s, answered by %q", ip, got)
		}
	}
	if err := m.ReleaseAll(); err != nil {
		t.Fatal(err)
	}
	if out := lab.MustRun(b, "ip", "addr", "show", "dev", "eth0"); strings.Contains(out, vip4) || strings.Contains(out, vip6) {
		t.Fatalf("B still holds a VIP after ReleaseAll:\n%s", out)
	}
	t.Log(fmt.Sprintf("whole test %v", time.Since(start).Round(time.Millisecond)))
}
