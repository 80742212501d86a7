package fence

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/mdlayher/packet"
	"github.com/raftlb/raftlb/dataplane/vip"
	"github.com/raftlb/raftlb/internal/benchrec"
	"github.com/raftlb/raftlb/internal/netlab"
	"golang.org/x/sys/unix"
)

var (
	benchRounds = flag.Int("fence.rounds", 20, "rounds of TestFenceBound")
	benchRecord = flag.String("fence.record", "", "write TestFenceBound's table into this file between the bench:fence markers")
)

const benchCommand = "go test ./dataplane/fence/ -run TestFenceBound -count=1 -v -fence.record ../../docs/benchmarks.md"

const (
	lease    = 200 * time.Millisecond
	interval = 50 * time.Millisecond
	probeTO  = 50 * time.Millisecond
	// slack is the generous bound on fencing beyond the lease.
	slack = 500 * time.Millisecond
	// early tolerates the kernel's jiffy rounding (CONFIG_HZ 100: 10 ms).
	early = 10 * time.Millisecond
)

var (
	dirMAC = net.HardwareAddr{2, 0, 0, 0x77, 0, 1}
	cliMAC = net.HardwareAddr{2, 0, 0, 0x77, 0, 2}
	dirIP  = netip.MustParseAddr("10.77.0.1")
	cliIP  = netip.MustParseAddr("10.77.0.2")
	vip4   = netip.MustParseAddr("10.77.0.100")
	vip6   = netip.MustParseAddr("fd77::100")
	cliIP6 = netip.MustParseAddr("fd77::2")
)

func TestMain(m *testing.M) {
	if os.Getenv("RAFTLB_FENCE_HELPER") != "" {
		os.Exit(helperMain())
	}
	flag.Parse()
	os.Exit(m.Run())
}

// helperMain is the renewing "daemon" run as a child process: it renews
// the VIPs of $RAFTLB_FENCE_VIPS in namespace $RAFTLB_FENCE_NS every
// interval and prints "R <start> <end>" (CLOCK_MONOTONIC ns) after each
// successful renewal.
func helperMain() int {
	var addrs []netip.Addr
	for _, s := range strings.Split(os.Getenv("RAFTLB_FENCE_VIPS"), ",") {
		addrs = append(addrs, netip.MustParseAddr(s))
	}
	f, err := New(WithNetNSPath(os.Getenv("RAFTLB_FENCE_NS")))
	if err != nil {
		fmt.Println("E", err)
		return 1
	}
	if err := f.SetVIPs(addrs, []string{"eth0"}); err != nil {
		fmt.Println("E", err)
		return 1
	}
	for {
		t0 := mono()
		if err := f.Renew(addrs, lease); err != nil {
			fmt.Println("E", err)
		} else {
			fmt.Println("R", int64(t0), int64(mono()))
		}
		time.Sleep(interval)
	}
}

// mono is CLOCK_MONOTONIC, comparable across processes.
func mono() time.Duration {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return time.Duration(ts.Nano())
}

// lab is a director and a client namespace on one bridge; the director
// holds vip4 and vip6 on eth0 and serves HTTP on both.
type lab struct {
	*netlab.Lab
	dir, cli string
	f        *Fence
}

func newLab(t *testing.T) *lab {
	l := &lab{Lab: netlab.New(t)}
	sw := l.Netns("sw")
	l.dir, l.cli = l.Netns("dir"), l.Netns("cli")
	for _, ns := range []string{sw, l.dir, l.cli} {
		l.MustRun(ns, "sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0")
	}
	l.Bridge(sw, "br0")
	l.Attach(l.dir, "eth0", sw, "br0", "pdir", dirMAC.String())
	l.Attach(l.cli, "eth0", sw, "br0", "pcli", cliMAC.String())
	l.Addr(l.dir, "eth0", dirIP.String()+"/24")
	l.Addr(l.cli, "eth0", cliIP.String()+"/24")
	l.Addr(l.dir, "eth0", "fd77::1/64")
	l.Addr(l.cli, "eth0", cliIP6.String()+"/64")

	f, err := New(WithNetNSPath("/run/netns/" + l.dir))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	l.f = f
	if err := f.SetVIPs([]netip.Addr{vip4, vip6}, []string{"eth0"}); err != nil {
		t.Fatal(err)
	}
	l.Addr(l.dir, "eth0", vip4.String()+"/24")
	l.Addr(l.dir, "eth0", vip6.String()+"/64")
	l.Serve(l.dir, netip.AddrPortFrom(vip4, 80).String(), "ok")
	l.Serve(l.dir, netip.AddrPortFrom(vip6, 80).String(), "ok")
	return l
}

// arper sends ARP requests for vip4 from the client's eth0 on a packet
// socket and waits for the director's reply.
type arper struct{ c *packet.Conn }

func newArper(t *testing.T, ns string) *arper {
	var c *packet.Conn
	err := netlab.Do(ns, func() error {
		ifi, err := net.InterfaceByName("eth0")
		if err != nil {
			return err
		}
		c, err = packet.Listen(ifi, packet.Raw, unix.ETH_P_ARP, nil)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &arper{c: c}
}

func (a *arper) probe() bool {
	f := make([]byte, 42)
	copy(f[0:6], []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	copy(f[6:12], cliMAC)
	binary.BigEndian.PutUint16(f[12:], unix.ETH_P_ARP)
	copy(f[14:22], []byte{0, 1, 8, 0, 6, 4, 0, 1})
	copy(f[22:28], cliMAC)
	copy(f[28:32], cliIP.AsSlice())
	copy(f[38:42], vip4.AsSlice())
	if _, err := a.c.WriteTo(f, &packet.Addr{HardwareAddr: net.HardwareAddr(f[0:6])}); err != nil {
		return false
	}
	_ = a.c.SetReadDeadline(time.Now().Add(probeTO))
	buf := make([]byte, 1500)
	for {
		n, _, err := a.c.ReadFrom(buf)
		if err != nil {
			return false
		}
		r := buf[:n]
		if n >= 42 && binary.BigEndian.Uint16(r[20:22]) == 2 &&
			netip.AddrFrom4([4]byte(r[28:32])) == vip4 && netip.AddrFrom4([4]byte(r[38:42])) == cliIP {
			return true
		}
	}
}

// dial reports whether a new TCP connection to addr from ns succeeds
// within probeTO.
func dial(ns string, addr netip.AddrPort) bool {
	err := netlab.Do(ns, func() error {
		c, err := net.DialTimeout("tcp", addr.String(), probeTO)
		if err == nil {
			c.Close()
		}
		return err
	})
	return err == nil
}

type sample struct {
	at time.Duration // mono at the start of the probe
	ok bool
}

// prober runs probe back to back until stopped.
type prober struct {
	mu      sync.Mutex
	samples []sample
	stop    chan struct{}
	done    chan struct{}
}

func startProber(probe func() bool) *prober {
	p := &prober{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		for {
			select {
			case <-p.stop:
				return
			default:
			}
			at := mono()
			ok := probe()
			p.mu.Lock()
			p.samples = append(p.samples, sample{at, ok})
			p.mu.Unlock()
			if ok {
				time.Sleep(time.Millisecond)
			}
		}
	}()
	return p
}

func (p *prober) finish() []sample {
	close(p.stop)
	<-p.done
	return p.samples
}

// fencedAt is the start of the first failed probe after which none
// succeeded, or -1 if the last probe succeeded.
func fencedAt(s []sample) time.Duration {
	if len(s) == 0 || s[len(s)-1].ok {
		return -1
	}
	i := len(s) - 1
	for i > 0 && !s[i-1].ok {
		i--
	}
	return s[i].at
}

// renewal is the start and end of one successful Renew.
type renewal struct{ start, end time.Duration }

// checkRound checks one round's samples against the last renewal and
// returns the time from the end of that renewal until the probe was
// fenced.
func checkRound(t *testing.T, what string, s []sample, last renewal) time.Duration {
	t.Helper()
	for _, x := range s {
		if !x.ok && x.at < last.start+lease-early {
			t.Errorf("%s: a probe %v before the lease ran out failed (fenced while renewed)", what, last.start+lease-x.at)
		}
	}
	at := fencedAt(s)
	if at < 0 {
		t.Errorf("%s: never fenced after renewals stopped", what)
		return 0
	}
	if d := at - last.end; d > lease+slack {
		t.Errorf("%s: fenced %v after the last renewal, want within %v", what, d, lease+slack)
	}
	return at - last.end
}

// renewFor renews vips every interval for dur in this process and returns
// the last renewal.
func renewFor(t *testing.T, f *Fence, vips []netip.Addr, dur time.Duration) renewal {
	t.Helper()
	var last renewal
	for end := time.Now().Add(dur); ; {
		s := mono()
		if err := f.Renew(vips, lease); err != nil {
			t.Fatal(err)
		}
		last = renewal{s, mono()}
		if time.Now().Add(interval).After(end) {
			return last
		}
		time.Sleep(interval)
	}
}

type stats struct{ min, med, max time.Duration }

func summarize(ds []time.Duration) stats {
	s := slices.Clone(ds)
	slices.Sort(s)
	return stats{s[0], s[len(s)/2], s[len(s)-1]}
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond)) }

// TestFenceBound: with the lease renewed every 50 ms for 200 ms the client
// resolves and reaches the VIP; once renewals stop, ARP replies and new
// connections stop within the lease (checked at lookup), and never before.
func TestFenceBound(t *testing.T) {
	l := newLab(t)
	// A permanent neighbour entry, so that the TCP probe measures the
	// traffic fence, not ARP; the ARP probe measures the ARP fence.
	l.MustRun(l.cli, "ip", "neigh", "replace", vip4.String(), "lladdr", dirMAC.String(), "dev", "eth0", "nud", "permanent")
	a := newArper(t, l.cli)
	vips := []netip.Addr{vip4, vip6}
	target := netip.AddrPortFrom(vip4, 80)

	rounds := *benchRounds
	if testing.Short() {
		rounds = 3
	}
	var arpD, tcpD []time.Duration
	for r := 0; r < rounds && !t.Failed(); r++ {
		if err := l.f.Renew(vips, lease); err != nil {
			t.Fatal(err)
		}
		pa, pt := startProber(a.probe), startProber(func() bool { return dial(l.cli, target) })
		last := renewFor(t, l.f, vips, 300*time.Millisecond)
		time.Sleep(lease + 200*time.Millisecond)
		sa, st := pa.finish(), pt.finish()
		arpD = append(arpD, checkRound(t, fmt.Sprintf("round %d ARP", r), sa, last))
		tcpD = append(tcpD, checkRound(t, fmt.Sprintf("round %d TCP", r), st, last))
	}
	if t.Failed() {
		return
	}
	as, ts := summarize(arpD), summarize(tcpD)
	t.Logf("lease %v renewed every %v, %d rounds; from the end of the last renewal until fenced:", lease, interval, rounds)
	t.Logf("ARP reply: min %s median %s max %s", ms(as.min), ms(as.med), ms(as.max))
	t.Logf("new TCP connection: min %s median %s max %s", ms(ts.min), ms(ts.med), ms(ts.max))
	if *benchRecord != "" {
		load, _ := os.ReadFile("/proc/loadavg")
		table := fmt.Sprintf("Measured %s on %s.\n\nCommand: `%s` (as root; go test runs the binary in the package directory, hence the path)\n\n"+
			"Load average when it started: %s.\n\n"+
			"A director and a client namespace on one bridge; the director holds the VIP with an HTTP server on it. "+
			"Each round renews a %v lease every %v for 300 ms, then stops; the client probes back to back (ARP requests on a packet socket, %v reply timeout; new TCP connections with a permanent neighbour entry, %v connect timeout). "+
			"\"fenced after\" is from the end of the last Renew until the start of the first probe that failed, after which none succeeded. No probe failed while the lease was live.\n\n"+
			"| probe | rounds | min | median | max |\n|---|---|---|---|---|\n"+
			"| ARP reply for the VIP | %d | %s | %s | %s |\n| new TCP connection to VIP:80 | %d | %s | %s | %s |\n",
			time.Now().UTC().Format("2006-01-02 15:04 MST"), benchrec.Machine(), benchCommand, strings.Join(strings.Fields(string(load))[:3], " "),
			lease, interval, probeTO, probeTO,
			rounds, ms(as.min), ms(as.med), ms(as.max), rounds, ms(ts.min), ms(ts.med), ms(ts.max))
		if err := benchrec.Record(*benchRecord, "fence", "VIP fence: kernel-side lease expiry", table); err != nil {
			t.Fatal(err)
		}
	}
}

// TestFenceChildProcess renews from a separate process, which is frozen
// (SIGSTOP), thawed (SIGCONT) and killed (SIGKILL) by PID.
func TestFenceChildProcess(t *testing.T) {
	l := newLab(t)
	l.MustRun(l.cli, "ip", "neigh", "replace", vip4.String(), "lladdr", dirMAC.String(), "dev", "eth0", "nud", "permanent")
	a := newArper(t, l.cli)
	target := netip.AddrPortFrom(vip4, 80)

	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "RAFTLB_FENCE_HELPER=1", "RAFTLB_FENCE_NS=/run/netns/"+l.dir, "RAFTLB_FENCE_VIPS="+vip4.String()+","+vip6.String())
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	t.Cleanup(func() {
		_ = syscall.Kill(pid, syscall.SIGKILL)
		_ = cmd.Wait()
	})
	var (
		mu    sync.Mutex
		last  renewal
		count atomic.Int64
	)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			if len(f) == 3 && f[0] == "R" {
				s, _ := strconv.ParseInt(f[1], 10, 64)
				e, _ := strconv.ParseInt(f[2], 10, 64)
				mu.Lock()
				last = renewal{time.Duration(s), time.Duration(e)}
				mu.Unlock()
				count.Add(1)
			} else {
				t.Logf("helper: %s", sc.Text())
			}
		}
	}()
	waitRenewals := func(n int64) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for count.Load() < n {
			if time.Now().After(deadline) {
				t.Fatalf("helper made %d renewals, want %d", count.Load(), n)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	lastRenewal := func() renewal {
		mu.Lock()
		defer mu.Unlock()
		return last
	}

	// measure probes while the helper renews for 300 ms, then applies sig,
	// and checks that the VIP is fenced in time.
	measure := func(name string, sig syscall.Signal) {
		t.Helper()
		pa, pt := startProber(a.probe), startProber(func() bool { return dial(l.cli, target) })
		time.Sleep(300 * time.Millisecond)
		if err := syscall.Kill(pid, sig); err != nil {
			t.Fatal(err)
		}
		time.Sleep(lease + 300*time.Millisecond)
		sa, st := pa.finish(), pt.finish()
		lr := lastRenewal()
		da := checkRound(t, name+" ARP", sa, lr)
		dt := checkRound(t, name+" TCP", st, lr)
		t.Logf("%s: fenced %s (ARP) / %s (TCP) after the helper's last renewal", name, ms(da), ms(dt))
	}

	waitRenewals(3)
	measure("SIGSTOP", syscall.SIGSTOP)

	// Thawed, the helper renews again and the VIP is usable again.
	n := count.Load()
	cont := mono()
	if err := syscall.Kill(pid, syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	waitRenewals(n + 1)
	if !a.probe() || !dial(l.cli, target) {
		t.Fatal("VIP not usable after SIGCONT and a renewal")
	}
	t.Logf("SIGCONT: usable again %s after the signal", ms(mono()-cont))

	waitRenewals(count.Load() + 3)
	measure("SIGKILL", syscall.SIGKILL)
	_ = cmd.Wait()
	// Dead for good: still fenced well after the lease.
	time.Sleep(lease)
	if a.probe() || dial(l.cli, target) {
		t.Fatal("VIP usable after the renewing process was killed")
	}
}

// TestFenceIPv6 checks that the fence stops traffic to an IPv6 VIP and the
// neighbour advertisements for it.
func TestFenceIPv6(t *testing.T) {
	l := newLab(t)
	vips := []netip.Addr{vip4, vip6}
	target := netip.AddrPortFrom(vip6, 80)
	neigh := func() string {
		return strings.TrimSpace(l.MustRun(l.cli, "ip", "-6", "neigh", "show", vip6.String(), "dev", "eth0"))
	}

	if err := l.f.Renew(vips, time.Second); err != nil {
		t.Fatal(err)
	}
	l.MustRun(l.cli, "ip", "-6", "neigh", "flush", "dev", "eth0")
	if !dialWithin(l.cli, target, time.Second) {
		t.Fatal("IPv6 VIP not reachable while leased")
	}
	if n := neigh(); !strings.Contains(n, "lladdr") {
		t.Fatalf("client did not resolve the leased IPv6 VIP: %q", n)
	}

	// Let the lease run out.
	if err := l.f.Renew(vips, lease); err != nil {
		t.Fatal(err)
	}
	time.Sleep(lease + 50*time.Millisecond)
	l.MustRun(l.cli, "ip", "-6", "neigh", "flush", "dev", "eth0")
	if dialWithin(l.cli, target, 500*time.Millisecond) {
		t.Fatal("IPv6 VIP reachable after its lease ran out")
	}
	if n := neigh(); strings.Contains(n, "lladdr") {
		t.Fatalf("client resolved the fenced IPv6 VIP: %q", n)
	}
	// Traffic, with resolution out of the way.
	l.MustRun(l.cli, "ip", "-6", "neigh", "replace", vip6.String(), "lladdr", dirMAC.String(), "dev", "eth0", "nud", "permanent")
	if dialWithin(l.cli, target, 500*time.Millisecond) {
		t.Fatal("IPv6 VIP reachable (static neighbour) after its lease ran out")
	}
	// The NA rule itself: make the director announce all its addresses
	// (ndisc_notify on a hardware address change); the NA for the fenced
	// VIP must be dropped on output.
	l.MustRun(l.dir, "sysctl", "-qw", "net.ipv6.conf.eth0.ndisc_notify=1")
	l.MustRun(l.dir, "ip", "link", "set", "eth0", "address", "02:00:00:77:00:11")
	time.Sleep(50 * time.Millisecond)
	if n := ruleCounter(t, l, "inet", "output"); n == 0 {
		t.Error("no neighbour advertisement for the fenced IPv6 VIP was dropped on output")
	}

	// Renewed: usable again (back to the director's real address).
	l.MustRun(l.dir, "ip", "link", "set", "eth0", "address", dirMAC.String())
	if err := l.f.Renew(vips, time.Second); err != nil {
		t.Fatal(err)
	}
	if !dialWithin(l.cli, target, time.Second) {
		t.Fatal("IPv6 VIP not reachable after renewing")
	}
}

// TestFenceARPOutputRevokeRemove checks the arp output rule (the
// director's own ARP with the fenced VIP as sender), Revoke, that Close
// keeps the fence and that Remove deletes it.
func TestFenceARPOutputRevokeRemove(t *testing.T) {
	l := newLab(t)
	a := newArper(t, l.cli)
	vips := []netip.Addr{vip4, vip6}
	if err := l.f.Renew(vips, time.Minute); err != nil {
		t.Fatal(err)
	}
	if !a.probe() {
		t.Fatal("no ARP reply while leased")
	}
	if err := l.f.Revoke(); err != nil {
		t.Fatal(err)
	}
	if a.probe() {
		t.Fatal("ARP reply after Revoke")
	}
	// The director resolving the client from the VIP: its ARP request
	// carries the VIP as sender and must be dropped.
	l.MustRun(l.dir, "ip", "neigh", "flush", "dev", "eth0")
	_ = netlab.Do(l.dir, func() error {
		d := net.Dialer{Timeout: 200 * time.Millisecond, LocalAddr: &net.TCPAddr{IP: vip4.AsSlice()}}
		c, err := d.DialContext(context.Background(), "tcp", netip.AddrPortFrom(cliIP, 9).String())
		if err == nil {
			c.Close()
		}
		return nil
	})
	if n := ruleCounter(t, l, "arp", "arp_out"); n == 0 {
		t.Error("the director's ARP request from the fenced VIP was not dropped on output")
	}

	if err := l.f.Renew([]netip.Addr{netip.MustParseAddr("10.77.0.200")}, lease); err == nil || !strings.Contains(err.Error(), "10.77.0.200") {
		t.Errorf("renewing an undeclared VIP: err = %v, want one naming it", err)
	}
	if err := l.f.Renew(vips, 0); err == nil {
		t.Error("renewing with a zero lease succeeded")
	}

	// Close keeps the fence.
	if err := l.f.Close(); err != nil {
		t.Fatal(err)
	}
	if a.probe() {
		t.Fatal("ARP reply after Close")
	}
	// A new Fence (a restarted daemon) keeps the VIPs fenced until it renews.
	f, err := New(WithNetNSPath("/run/netns/" + l.dir))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if a.probe() {
		t.Fatal("ARP reply after a new New")
	}
	if err := f.Remove(); err != nil {
		t.Fatal(err)
	}
	if !a.probe() {
		t.Fatal("no ARP reply after Remove")
	}
	if out := l.MustRun(l.dir, "nft", "list", "tables"); strings.Contains(out, TableName) {
		t.Fatalf("tables left after Remove: %s", out)
	}
	if err := f.Remove(); err != nil {
		t.Fatalf("second Remove: %v", err)
	}
}

func dialWithin(ns string, addr netip.AddrPort, d time.Duration) bool {
	err := netlab.Do(ns, func() error {
		c, err := net.DialTimeout("tcp", addr.String(), d)
		if err == nil {
			c.Close()
		}
		return err
	})
	return err == nil
}

var counterRE = regexp.MustCompile(`counter packets (\d+)`)

// ruleCounter sums the rule counters of a fence chain.
func ruleCounter(t *testing.T, l *lab, fam, chain string) int {
	t.Helper()
	out := l.MustRun(l.dir, "nft", "list", "chain", fam, TableName, chain)
	n := 0
	for _, m := range counterRE.FindAllStringSubmatch(out, -1) {
		v, _ := strconv.Atoi(m[1])
		n += v
	}
	if n == 0 {
		t.Logf("%s", out)
	}
	return n
}

// TestFenceEgressPacketSocket: the announcements dataplane/vip sends on
// packet sockets pass no arp or inet hook; the interface's egress chain
// drops them once the lease is gone. This is the frame a daemon frozen
// between its lease check and its send would put on the wire when woken.
func TestFenceEgressPacketSocket(t *testing.T) {
	l := newLab(t)
	vips := []netip.Addr{vip4, vip6}
	ann, err := vip.NewPacketAnnouncer(vip.PacketConfig{Netns: "/run/netns/" + l.dir})
	if err != nil {
		t.Fatal(err)
	}
	defer ann.Close()
	arp, nd := listenFrames(t, l.cli, unix.ETH_P_ARP), listenFrames(t, l.cli, unix.ETH_P_IPV6)
	garp := func(f []byte) bool {
		return len(f) >= 42 && netip.AddrFrom4([4]byte(f[28:32])) == vip4
	}
	na := func(f []byte) bool {
		return len(f) >= 78 && f[20] == unix.IPPROTO_ICMPV6 && f[54] == 136 && netip.AddrFrom16([16]byte(f[62:78])) == vip6
	}
	announce := func() (arpSeen, naSeen bool, errs []error) {
		drain(arp)
		drain(nd)
		errs = append(errs, ann.Announce("eth0", vip4), ann.Announce("eth0", vip6))
		return seen(arp, garp), seen(nd, na), errs
	}

	if err := l.f.Guarded("eth0"); err != nil {
		t.Fatalf("Guarded(eth0) after SetVIPs: %v", err)
	}
	if err := l.f.Guarded("eth1"); err == nil || !strings.Contains(err.Error(), "eth1") {
		t.Fatalf("Guarded(eth1), an interface with no VIP: err = %v, want one naming it", err)
	}

	if err := l.f.Renew(vips, time.Minute); err != nil {
		t.Fatal(err)
	}
	if a, n, errs := announce(); !a || !n || errors.Join(errs...) != nil {
		t.Fatalf("leased: client saw GARP %v, NA %v; announce errors %v", a, n, errs)
	}

	if err := l.f.Revoke(); err != nil {
		t.Fatal(err)
	}
	a, n, errs := announce()
	if a || n {
		t.Fatalf("unleased: client saw GARP %v, NA %v (the egress chain let them through)", a, n)
	}
	for _, err := range errs {
		if err == nil {
			t.Error("announcing an unleased VIP reported no error (the kernel drop should surface)")
		}
	}
	if c := ruleCounter(t, l, "netdev", "egress_eth0"); c < 2 {
		t.Errorf("egress_eth0 counted %d drops, want the GARP and the NA", c)
	}

	// A chain removed behind the fence's back (as an older kernel does
	// with its device) is reported and installed again by Guarded.
	l.MustRun(l.dir, "nft", "delete", "chain", "netdev", TableName, "egress_eth0")
	if a, _, _ := announce(); !a {
		t.Fatal("without the egress chain the GARP should pass (the lab checks itself)")
	}
	if err := l.f.Guarded("eth0"); err != nil {
		t.Fatalf("Guarded(eth0) did not reinstall the chain: %v", err)
	}
	if a, n, _ := announce(); a || n {
		t.Fatalf("after Guarded reinstalled the chain: client saw GARP %v, NA %v", a, n)
	}

	// The VIPs move to another interface: eth0's chain goes, eth1's
	// comes (Linux 6.16+ accepts a chain for an interface not yet there).
	if err := l.f.SetVIPs(vips, []string{"eth1"}); err != nil {
		t.Fatal(err)
	}
	chains := l.MustRun(l.dir, "nft", "list", "chains", "netdev")
	if strings.Contains(chains, "egress_eth0") {
		t.Errorf("egress_eth0 kept after its interface lost its VIPs:\n%s", chains)
	}
	if err := l.f.Guarded("eth0"); err == nil {
		t.Error("Guarded(eth0) with no VIP on eth0: no error")
	}
	if err := l.f.SetVIPs(vips, []string{"bad/name"}); err == nil || !strings.Contains(err.Error(), "bad/name") {
		t.Errorf("SetVIPs with interface bad/name: err = %v, want one naming it", err)
	}
}

// listenFrames opens a packet socket for one ether type on ns's eth0.
func listenFrames(t *testing.T, ns string, proto int) *packet.Conn {
	t.Helper()
	var c *packet.Conn
	err := netlab.Do(ns, func() error {
		ifi, err := net.InterfaceByName("eth0")
		if err != nil {
			return err
		}
		c, err = packet.Listen(ifi, packet.Raw, proto, nil)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// drain discards the frames already queued on c.
func drain(c *packet.Conn) {
	buf := make([]byte, 1500)
	for {
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Millisecond))
		if _, _, err := c.ReadFrom(buf); err != nil {
			return
		}
	}
}

// seen reports whether a frame matching arrives on c within 200 ms.
func seen(c *packet.Conn, match func([]byte) bool) bool {
	buf := make([]byte, 1500)
	_ = c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	for {
		n, _, err := c.ReadFrom(buf)
		if err != nil {
			return false
		}
		if match(buf[:n]) {
			return true
		}
	}
}
