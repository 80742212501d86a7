// Package nemesis is the failover lab of issue 4: directors, a client and
// two real servers in network namespaces, faults injected into the
// directors (nemeses), and observers that decide, every ~10 ms, who holds
// the VIP and whether the client is served. The same lab, observers and
// nemeses drive raftlb (real `raftlb agent` processes) and keepalived, so
// integration/nemesis_test.go and the failover benchmark
// (integration/bench/failover) measure both the same way. See
// docs/nemesis.md.
//
// Topology (every address lives in namespaces the lab creates; nothing is
// sent from the root namespace):
//
//	switch: bridge brc (client LAN) and bridge brs (server LAN), mcast snooping off
//	client  eth0 10.30.0.50  ── brc        prober: a new TCP connection to VIP:80 every 10 ms
//	        mon0 (no address) ── brc       ARP checker: who-has VIP every 10 ms
//	dN      eth0 10.30.0.1N ── brc  (VIP 10.30.0.100 on the holder; raft and API here)
//	        eth1 10.31.0.1N ── brs  (gateway VIP 10.31.0.1 on the holder)
//	w       eth0 10.30.0.19 ── brc  (the witness variant: `raftlb agent -witness`)
//	rs1 10.31.0.21, rs2 10.31.0.22 ── brs, default route via 10.31.0.1
//
// The real servers answer every connection with a short HTTP response
// whose body is their name, so the prober learns which one served it.
package nemesis

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	osexec "os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/raftlb/raftlb/internal/netlab"
)

// Addresses of the lab.
const (
	VIP         = "10.30.0.100" // the service VIP on the client LAN
	VIPPrefix   = 24
	GatewayVIP  = "10.31.0.1" // the real servers' default gateway, on the holder's eth1
	ServicePort = 80
	ClientIP    = "10.30.0.50"
	ClientMAC   = "02:30:00:00:00:50"

	// The ARP checker's interface in the client namespace, and the
	// sender address it asks with (configured nowhere: the replies must
	// not reach the client's own neighbour table).
	monitorIP  = "10.30.0.51"
	monitorMAC = "02:30:00:00:00:51"
)

// Node is one director (or the witness) of the lab.
type Node struct {
	Name       string // d1, d2, d3; w for the witness
	NS         string // full namespace name
	IP         string // eth0, on the client LAN: raft and API
	MAC        string // eth0
	ServerIP   string // eth1, on the server LAN ("" for the witness)
	ServerMAC  string // eth1
	ClientPort string // its port on brc, in the switch namespace
	ServerPort string // its port on brs ("" for the witness)
}

// Options shape the lab.
type Options struct {
	Directors int  // 2 or 3 (default 3)
	Witness   bool // add the witness namespace w
	// KeepDir keeps the scratch directory (daemon logs, configs) after
	// the lab is torn down, and logs where it is.
	KeepDir bool
}

// Lab is one built topology.
type Lab struct {
	T         netlab.T
	Net       *netlab.Lab
	Switch    string
	Client    string
	Directors []*Node
	Witness   *Node    // nil unless Options.Witness
	Reals     []string // their addresses
	RealNS    []string // their namespaces
	Dir       string   // scratch directory (configs, logs), removed at cleanup

	mu          sync.Mutex
	partitioned bool
}

// NewLab builds the topology and starts the real servers. Everything is
// removed when t's cleanups run (netlab.New registers them), also when
// the test fails.
func NewLab(t netlab.T, o Options) *Lab {
	t.Helper()
	if o.Directors == 0 {
		o.Directors = 3
	}
	if o.Directors < 2 || o.Directors > 3 {
		t.Fatalf("nemesis: %d directors; the lab has 2 or 3", o.Directors)
	}
	if _, err := osexec.LookPath("nft"); err != nil {
		t.Skip("nemesis: needs nftables (nft)")
	}
	nl := netlab.New(t)
	dir, err := os.MkdirTemp("", "raftlb-nemesis-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if o.KeepDir {
			t.Logf("nemesis: logs and configs kept in %s", dir)
			return
		}
		os.RemoveAll(dir)
	})
	l := &Lab{T: t, Net: nl, Dir: dir}

	l.Switch = nl.Netns("sw")
	for _, br := range []string{"brc", "brs"} {
		nl.Bridge(l.Switch, br)
		nl.MustRun(l.Switch, "ip", "link", "set", br, "type", "bridge", "mcast_snooping", "0")
	}

	l.Client = nl.Netns("client")
	nl.Attach(l.Client, "eth0", l.Switch, "brc", "p-cl", ClientMAC)
	nl.Addr(l.Client, "eth0", ClientIP+"/24")
	nl.Attach(l.Client, "mon0", l.Switch, "brc", "p-mon", monitorMAC)
	// A plain host: it updates an existing neighbour entry from a
	// gratuitous ARP but does not create one (a new namespace copies IPv4
	// settings from the root namespace, so set them). mon0 carries no
	// IPv4 and needs no IPv6.
	nl.MustRun(l.Client, "sysctl", "-qw", "net.ipv4.conf.all.arp_accept=0", "net.ipv4.conf.eth0.arp_accept=0",
		"net.ipv4.conf.all.drop_gratuitous_arp=0", "net.ipv4.conf.eth0.drop_gratuitous_arp=0",
		"net.ipv6.conf.mon0.disable_ipv6=1")

	for i := range o.Directors {
		n := &Node{
			Name:       fmt.Sprintf("d%d", i+1),
			IP:         fmt.Sprintf("10.30.0.%d", 11+i),
			MAC:        fmt.Sprintf("02:30:00:00:00:%02x", 0x11+i),
			ServerIP:   fmt.Sprintf("10.31.0.%d", 11+i),
			ServerMAC:  fmt.Sprintf("02:31:00:00:00:%02x", 0x11+i),
			ClientPort: fmt.Sprintf("p-d%dc", i+1),
			ServerPort: fmt.Sprintf("p-d%ds", i+1),
		}
		n.NS = nl.Netns(n.Name)
		nl.Attach(n.NS, "eth0", l.Switch, "brc", n.ClientPort, n.MAC)
		nl.Attach(n.NS, "eth1", l.Switch, "brs", n.ServerPort, n.ServerMAC)
		nl.Addr(n.NS, "eth0", n.IP+"/24")
		nl.Addr(n.NS, "eth1", n.ServerIP+"/24")
		nl.MustRun(n.NS, "sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv4.conf.all.arp_notify=0")
		l.Directors = append(l.Directors, n)
	}
	if o.Witness {
		w := &Node{Name: "w", IP: "10.30.0.19", MAC: "02:30:00:00:00:19", ClientPort: "p-wc"}
		w.NS = nl.Netns("w")
		nl.Attach(w.NS, "eth0", l.Switch, "brc", w.ClientPort, w.MAC)
		nl.Addr(w.NS, "eth0", w.IP+"/24")
		l.Witness = w
	}
	for i := range 2 {
		name := fmt.Sprintf("rs%d", i+1)
		ip := fmt.Sprintf("10.31.0.%d", 21+i)
		ns := nl.Netns(name)
		nl.Attach(ns, "eth0", l.Switch, "brs", "p-"+name)
		nl.Addr(ns, "eth0", ip+"/24")
		nl.MustRun(ns, "ip", "route", "add", "default", "via", GatewayVIP)
		stop, err := serveName(ns, net.JoinHostPort(ip, fmt.Sprint(ServicePort)), name)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(stop)
		l.Reals, l.RealNS = append(l.Reals, ip), append(l.RealNS, ns)
	}
	return l
}

// Members returns the directors, then the witness if there is one.
func (l *Lab) Members() []*Node {
	m := append([]*Node(nil), l.Directors...)
	if l.Witness != nil {
		m = append(m, l.Witness)
	}
	return m
}

// DirectorByMAC names the director whose eth0 has mac ("" if none).
func (l *Lab) DirectorByMAC(mac string) string {
	for _, d := range l.Directors {
		if strings.EqualFold(d.MAC, mac) {
			return d.Name
		}
	}
	return ""
}

// Neighbour returns the MAC that ip resolves to in namespace ns ("" when
// there is no usable entry: none, incomplete or failed).
func Neighbour(ns, ip string) (string, error) {
	h, err := netns.GetFromName(ns)
	if err != nil {
		return "", err
	}
	defer h.Close()
	nh, err := netlink.NewHandleAt(h)
	if err != nil {
		return "", err
	}
	defer nh.Close()
	ns4, err := nh.NeighList(0, netlink.FAMILY_V4)
	if err != nil {
		return "", err
	}
	want := net.ParseIP(ip)
	for _, n := range ns4 {
		if n.IP.Equal(want) && n.State&(netlink.NUD_INCOMPLETE|netlink.NUD_FAILED) == 0 && len(n.HardwareAddr) > 0 {
			return n.HardwareAddr.String(), nil
		}
	}
	return "", nil
}

// PointsAt returns nil if the client's neighbour entry for the VIP and
// every real server's entry for the gateway VIP are absent or point at
// director i: what a failover leaves behind has been repaired, so a new
// round starts from a clean network.
func (l *Lab) PointsAt(i int) error {
	d := l.Directors[i]
	if mac, err := Neighbour(l.Client, VIP); err != nil {
		return err
	} else if mac != "" && !strings.EqualFold(mac, d.MAC) {
		return fmt.Errorf("the client's neighbour entry for the VIP is %s (%s), not the holder %s", mac, orNone(l.DirectorByMAC(mac)), d.Name)
	}
	for j, ns := range l.RealNS {
		if mac, err := Neighbour(ns, GatewayVIP); err != nil {
			return err
		} else if mac != "" && !strings.EqualFold(mac, d.ServerMAC) {
			return fmt.Errorf("rs%d's neighbour entry for the gateway is %s, not the holder %s's %s", j+1, mac, d.Name, d.ServerMAC)
		}
	}
	return nil
}

// LinkDown sets member i's client-LAN port on the bridge down (a pulled
// cable: its eth0 loses carrier, and with it the raft peers, the client
// and the VRRP adverts).
func (l *Lab) LinkDown(i int) error {
	_, err := l.Net.Run(l.Switch, "ip", "link", "set", l.Members()[i].ClientPort, "down")
	return err
}

// LinkUp undoes LinkDown.
func (l *Lab) LinkUp(i int) error {
	_, err := l.Net.Run(l.Switch, "ip", "link", "set", l.Members()[i].ClientPort, "up")
	return err
}

// partitionTable is the nft bridge table of Partition.
const partitionTable = "nemesis_part"

// Partition cuts member i off from every other director and the witness,
// on both LANs, with an nft bridge filter in the switch namespace; the
// client, the ARP checker and the real servers still reach everyone.
func (l *Lab) Partition(i int) error {
	var me, others []string
	for j, m := range l.Members() {
		ports := []string{m.ClientPort}
		if m.ServerPort != "" {
			ports = append(ports, m.ServerPort)
		}
		if j == i {
			me = ports
		} else {
			others = append(others, ports...)
		}
	}
	set := func(p []string) string { return `{ "` + strings.Join(p, `", "`) + `" }` }
	rules := fmt.Sprintf("table bridge %s {\n\tchain forward {\n\t\ttype filter hook forward priority 0; policy accept;\n"+
		"\t\tiifname %s oifname %s drop\n\t\tiifname %s oifname %s drop\n\t}\n}\n",
		partitionTable, set(me), set(others), set(others), set(me))
	path := filepath.Join(l.Dir, "partition.nft")
	if err := os.WriteFile(path, []byte(rules), 0o644); err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, err := l.Net.Run(l.Switch, "nft", "-f", path); err != nil {
		return err
	}
	l.partitioned = true
	return nil
}

// Heal removes the partition.
func (l *Lab) Heal() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.partitioned {
		return nil
	}
	if _, err := l.Net.Run(l.Switch, "nft", "delete", "table", "bridge", partitionTable); err != nil {
		return err
	}
	l.partitioned = false
	return nil
}

// serveName serves name on addr inside ns: every connection gets a short
// HTTP response with the name as its body, written at once (the prober
// sends nothing), then the server half-closes and drains what an HTTP
// client may still send.
func serveName(ns, addr, name string) (stop func(), err error) {
	ln, err := netlab.Listen(ns, "tcp", addr)
	if err != nil {
		return nil, err
	}
	resp := []byte(fmt.Sprintf("HTTP/1.0 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s\n", len(name)+1, name))
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				time.Sleep(10 * time.Millisecond)
				continue
			}
			go func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(2 * time.Second))
				if _, err := c.Write(resp); err != nil {
					return
				}
				if tc, ok := c.(*net.TCPConn); ok {
					_ = tc.CloseWrite()
				}
				_ = c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
				_, _ = io.Copy(io.Discard, c)
			}()
		}
	}()
	return func() { ln.Close(); wg.Wait() }, nil
}
