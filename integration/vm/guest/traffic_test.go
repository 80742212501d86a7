//go:build vmguest

package guest

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/raftlb/raftlb/dataplane"
	"github.com/raftlb/raftlb/dataplane/ipvs"
)

// The network inside the VM, built once for the traffic tests (only
// addresses inside these namespaces are ever used):
//
//	client  c0 10.0.0.2/24  ---------- br-front
//	dir1    f0 10.0.0.11/24 + VIP 10.0.0.100/32 (br-front)
//	        r0 10.0.1.254/24 (br-real: the real servers' gateway)
//	        s0 10.0.2.1/24  (br-sync)
//	dir2    f0 10.0.0.12/24, r0 10.0.1.253/24, s0 10.0.2.2/24
//	rs1     e0 10.0.1.1/24, default via 10.0.1.254, httpd on :80 and :8080
//	rs2     e0 10.0.1.2/24, likewise
//
// dir1 is the active director (it holds the VIP and the gateway); dir2 is
// a backup that only receives synced connections.
const vip = "10.0.0.100"

type topology struct {
	once sync.Once
	err  error
	made []string // namespaces and bridges, for teardown
}

var topo topology

// setup builds the network the first time a test needs it.
func (tp *topology) setup(t *testing.T) {
	t.Helper()
	tp.once.Do(func() { tp.err = tp.build() })
	if tp.err != nil {
		t.Fatalf("topology: %v", tp.err)
	}
}

func (tp *topology) build() error {
	var err error
	sh := func(args ...string) {
		if err != nil {
			return
		}
		if out, e := exec.Command(args[0], args[1:]...).CombinedOutput(); e != nil {
			err = fmt.Errorf("%s: %v: %s", strings.Join(args, " "), e, out)
		}
	}
	for _, br := range []string{"br-front", "br-real", "br-sync"} {
		sh("ip", "link", "add", br, "type", "bridge")
		sh("ip", "link", "set", br, "up")
		tp.made = append(tp.made, "link:"+br)
	}
	for _, ns := range []string{"client", "dir1", "dir2", "rs1", "rs2"} {
		sh("ip", "netns", "add", ns)
		sh("ip", "-n", ns, "link", "set", "lo", "up")
		tp.made = append(tp.made, "netns:"+ns)
	}
	link := func(ns, ifname, br string, addrs ...string) {
		host := "h-" + ns + "-" + ifname
		sh("ip", "link", "add", host, "type", "veth", "peer", "name", ifname, "netns", ns)
		sh("ip", "link", "set", host, "master", br, "up")
		sh("ip", "-n", ns, "link", "set", ifname, "up")
		for _, a := range addrs {
			sh("ip", "-n", ns, "addr", "add", a, "dev", ifname)
		}
	}
	link("client", "c0", "br-front", "10.0.0.2/24")
	link("dir1", "f0", "br-front", "10.0.0.11/24", vip+"/32")
	link("dir1", "r0", "br-real", "10.0.1.254/24")
	link("dir1", "s0", "br-sync", "10.0.2.1/24")
	link("dir2", "f0", "br-front", "10.0.0.12/24")
	link("dir2", "r0", "br-real", "10.0.1.253/24")
	link("dir2", "s0", "br-sync", "10.0.2.2/24")
	link("rs1", "e0", "br-real", "10.0.1.1/24")
	link("rs2", "e0", "br-real", "10.0.1.2/24")
	for _, ns := range []string{"dir1", "dir2"} {
		// IPVS NAT forwards; never redirect the real servers around us.
		sh("ip", "netns", "exec", ns, "sh", "-c",
			"echo 1 > /proc/sys/net/ipv4/ip_forward; echo 0 > /proc/sys/net/ipv4/conf/all/send_redirects; echo 0 > /proc/sys/net/ipv4/conf/r0/send_redirects")
	}
	for _, rs := range []string{"rs1", "rs2"} {
		sh("ip", "-n", rs, "route", "add", "default", "via", "10.0.1.254")
		dir := filepath.Join("/tmp/www", rs)
		if e := os.MkdirAll(dir, 0o755); e != nil && err == nil {
			err = e
		}
		if e := os.WriteFile(filepath.Join(dir, "index.html"), []byte("hello from "+rs+"\n"), 0o644); e != nil && err == nil {
			err = e
		}
		for _, port := range []string{"80", "8080"} {
			sh("ip", "netns", "exec", rs, "httpd", "-p", port, "-h", dir) // busybox httpd daemonizes
		}
	}
	return err
}

// teardown removes the namespaces (their httpd and IPVS go with them) and
// bridges; the VM powers off right after anyway.
func (tp *topology) teardown() {
	for _, m := range slices.Backward(tp.made) {
		kind, name, _ := strings.Cut(m, ":")
		if kind == "netns" {
			exec.Command("ip", "netns", "pids", name).Run()
			exec.Command("ip", "netns", "del", name).Run()
		} else {
			exec.Command("ip", "link", "del", name).Run()
		}
	}
}

// fetch makes one HTTP request from the client to the VIP.
func fetch(t *testing.T, port string) string {
	t.Helper()
	// busybox 1.35's wget segfaults with -T; bound it with timeout instead.
	return strings.TrimSpace(inNS(t, "client", "timeout", "10", "wget", "-q", "-O", "-", "http://"+vip+":"+port+"/"))
}

// clientConns are the IPVS connections in ns from the client to the VIP
// port, as ipvsadm -Lnc lists them.
func clientConns(t *testing.T, ns, port string) []Conn {
	t.Helper()
	all, err := ParseConns(inNS(t, ns, "ipvsadm", "-Lnc"))
	if err != nil {
		t.Fatal(err)
	}
	want := netip.MustParseAddrPort(vip + ":" + port)
	var out []Conn
	for _, c := range all {
		if c.Source.Addr() == mustAddr("10.0.0.2") && c.Virtual == want {
			out = append(out, c)
		}
	}
	return out
}

// webService is tcp VIP:port, round robin over rs1 and rs2 by NAT.
func webService(port string) dataplane.Table {
	return table(svc("tcp", vip+":"+port, "rr"), dest("10.0.1.1:"+port, "nat", 1), dest("10.0.1.2:"+port, "nat", 1))
}

// TestNATTraffic: real HTTP from the client netns through the VIP on dir1
// (programmed by the Backend) to busybox httpd in rs1 and rs2; ipvsadm -Lnc
// shows the connections.
func TestNATTraffic(t *testing.T) {
	topo.setup(t)
	b := backend(t, "/run/netns/dir1")
	web := webService("80")
	applyAll(t, b, dataplane.Table{}, addChanges(web))
	t.Cleanup(func() { b.Apply(web, dataplane.Diff(web, dataplane.Table{})) })
	requireKernelHas(t, b, "dir1", web)

	count := map[string]int{}
	for range 6 {
		count[fetch(t, "80")]++
	}
	t.Logf("responses: %v", count)
	if count["hello from rs1"] != 3 || count["hello from rs2"] != 3 {
		t.Fatalf("want 3 responses from each real server (rr), got %v", count)
	}
	conns := clientConns(t, "dir1", "80")
	byDest := map[string]int{}
	for _, c := range conns {
		byDest[c.Destination.String()]++
	}
	t.Logf("ipvsadm -Lnc (dir1):\n%s", inNS(t, "dir1", "ipvsadm", "-Lnc"))
	if len(conns) != 6 || byDest["10.0.1.1:80"] != 3 || byDest["10.0.1.2:80"] != 3 {
		t.Fatalf("want 6 connections, 3 per real server, in ipvsadm -Lnc; got %v", byDest)
	}
}

// TestSyncDaemon: master on dir1 and backup on dir2 started through the
// SyncBackend; connections made through dir1 appear in dir2's ipvsadm -Lnc.
func TestSyncDaemon(t *testing.T) {
	topo.setup(t)
	master, backup := backend(t, "/run/netns/dir1"), backend(t, "/run/netns/dir2")
	web := webService("8080")
	for _, b := range []dataplane.Backend{master, backup} {
		applyAll(t, b, dataplane.Table{}, addChanges(web))
		t.Cleanup(func() { b.Apply(web, dataplane.Diff(web, dataplane.Table{})) })
	}
	cfg := dataplane.SyncDaemon{SyncID: 42, Interface: "s0", McastPort: 8850, McastTTL: 2, MaxLen: 1200}
	mcfg, bcfg := cfg, cfg
	mcfg.Role, bcfg.Role = "master", "backup"
	if err := master.StartSyncDaemon(mcfg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { master.StopSyncDaemon("master") })
	if err := backup.StartSyncDaemon(bcfg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { backup.StopSyncDaemon("backup") })

	// What the kernel reports, through the Backend and through ipvsadm.
	for _, c := range []struct {
		b interface {
			SyncDaemons() ([]dataplane.SyncDaemon, error)
		}
		ns   string
		want dataplane.SyncDaemon
	}{{master, "dir1", mcfg}, {backup, "dir2", bcfg}} {
		ds, err := c.b.SyncDaemons()
		if err != nil {
			t.Fatal(err)
		}
		want := c.want
		want.McastGroup = mustAddr("224.0.0.81") // the kernel's default, filled in
		if len(ds) != 1 || ds[0] != want {
			t.Errorf("%s: SyncDaemons() = %+v, want [%+v]", c.ns, ds, want)
		}
		out := inNS(t, c.ns, "ipvsadm", "-L", "--daemon")
		t.Logf("%s: ipvsadm -L --daemon: %s", c.ns, strings.TrimSpace(out))
		kv := ParseDaemons(out)[want.Role]
		if kv["mcast"] != "s0" || kv["syncid"] != "42" {
			t.Errorf("%s: ipvsadm shows %v", c.ns, kv)
		}
		for k, v := range map[string]string{"port": "8850", "ttl": "2", "group": "224.0.0.81"} {
			if got, ok := kv[k]; ok && got != v {
				t.Errorf("%s: ipvsadm shows %s=%s, want %s", c.ns, k, got, v)
			}
		}
	}
	// The backup listens on the port we asked for: the u16 went over in
	// the byte order the kernel expects (8850 = 0x2292).
	if udp := inNS(t, "dir2", "cat", "/proc/net/udp"); !strings.Contains(udp, ":2292 ") {
		t.Errorf("backup is not bound to port 8850:\n%s", udp)
	}
	// Starting the same daemon again is not an error; other settings are.
	if err := master.StartSyncDaemon(mcfg); err != nil {
		t.Errorf("restart with the same settings: %v", err)
	}
	other := mcfg
	other.SyncID = 43
	if err := master.StartSyncDaemon(other); err == nil {
		t.Errorf("a second master with another sync id was accepted")
	} else {
		t.Logf("second master refused: %v", err)
	}
	if t.Failed() {
		t.FailNow()
	}

	time.Sleep(500 * time.Millisecond)
	for range 4 {
		if r := fetch(t, "8080"); !strings.HasPrefix(r, "hello from rs") {
			t.Fatalf("unexpected response %q", r)
		}
	}
	if n := len(clientConns(t, "dir1", "8080")); n != 4 {
		t.Fatalf("master has %d connections, want 4", n)
	}
	start := time.Now()
	eventually(t, 10*time.Second, func() error {
		if n := len(clientConns(t, "dir2", "8080")); n < 4 {
			return fmt.Errorf("backup has %d of 4 connections: %w", n, errNotYet)
		}
		return nil
	})
	t.Logf("4 connections synced to the backup after %v; ipvsadm -Lnc (dir2):\n%s",
		time.Since(start).Round(100*time.Millisecond), inNS(t, "dir2", "ipvsadm", "-Lnc"))

	for _, c := range []struct {
		b    *ipvs.Backend
		role string
	}{{master, "master"}, {backup, "backup"}} {
		if err := c.b.StopSyncDaemon(c.role); err != nil {
			t.Fatal(err)
		}
		if err := c.b.StopSyncDaemon(c.role); err != nil {
			t.Errorf("stopping a stopped daemon: %v", err)
		}
		if ds, err := c.b.SyncDaemons(); err != nil || len(ds) != 0 {
			t.Errorf("after stop: %+v %v", ds, err)
		}
	}
}
