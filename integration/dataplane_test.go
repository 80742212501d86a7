package integration

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/raftlb/raftlb/api/client"
	"github.com/raftlb/raftlb/api/wire"
	"github.com/raftlb/raftlb/internal/netlab"
)

// nsLab is three real `raftlb agent` processes, each in its own network
// namespace, with the nftables dataplane; two real servers; one client.
//
//	client 10.10.0.50 ── br-c ── dirN eth0 10.10.0.N+1   (VIP 10.10.0.100 on the leader)
//	rs1 .11, rs2 .12 ── br-s ── dirN eth1 10.20.0.N+1   (gateway VIP 10.20.0.1 on the leader)
type nsLab struct {
	t      *testing.T
	lab    *netlab.Lab
	client string
	dirs   []string // namespaces
	ips    []string // director addresses on br-c
	macs   []string // director MACs on br-c
	token  string
	procs  []*exec.Cmd
	logs   []string
}

func newNSLab(t *testing.T) *nsLab {
	l := &nsLab{t: t, lab: netlab.New(t), token: filepath.Join(t.TempDir(), "token")}
	if err := os.WriteFile(l.token, []byte(token), 0o600); err != nil {
		t.Fatal(err)
	}
	lab := l.lab
	sw := lab.Netns("sw")
	lab.Bridge(sw, "br-c")
	lab.Bridge(sw, "br-s")
	l.client = lab.Netns("client")
	lab.Attach(l.client, "eth0", sw, "br-c", "p-cl")
	lab.Addr(l.client, "eth0", "10.10.0.50/24")
	// A plain host: updates an existing neighbour entry from a gratuitous
	// ARP, does not create one (a new namespace copies IPv4 settings from
	// the root namespace, so set them).
	lab.MustRun(l.client, "sysctl", "-qw", "net.ipv4.conf.all.arp_accept=0", "net.ipv4.conf.eth0.arp_accept=0",
		"net.ipv4.conf.all.drop_gratuitous_arp=0", "net.ipv4.conf.eth0.drop_gratuitous_arp=0")
	var peers []string
	for i := range 3 {
		ns := lab.Netns(fmt.Sprintf("dir%d", i+1))
		mac := fmt.Sprintf("02:10:00:00:00:%02x", i+1)
		lab.Attach(ns, "eth0", sw, "br-c", fmt.Sprintf("p-d%dc", i+1), mac)
		lab.Attach(ns, "eth1", sw, "br-s", fmt.Sprintf("p-d%ds", i+1))
		ip := fmt.Sprintf("10.10.0.%d", i+2)
		lab.Addr(ns, "eth0", ip+"/24")
		lab.Addr(ns, "eth1", fmt.Sprintf("10.20.0.%d/24", i+2))
		lab.MustRun(ns, "sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv4.conf.all.arp_notify=0")
		l.dirs, l.ips, l.macs = append(l.dirs, ns), append(l.ips, ip), append(l.macs, mac)
		peers = append(peers, fmt.Sprintf("d%d=%s:7481", i+1, ip))
	}
	for i := range 2 {
		rs := lab.Netns(fmt.Sprintf("rs%d", i+1))
		lab.Attach(rs, "eth0", sw, "br-s", fmt.Sprintf("p-rs%d", i+1))
		lab.Addr(rs, "eth0", fmt.Sprintf("10.20.0.%d/24", 11+i))
		lab.MustRun(rs, "ip", "route", "add", "default", "via", "10.20.0.1")
		lab.Serve(rs, fmt.Sprintf("10.20.0.%d:80", 11+i), fmt.Sprintf("rs%d", i+1))
	}
	for i, ns := range l.dirs {
		logPath := filepath.Join(t.TempDir(), fmt.Sprintf("d%d.log", i+1))
		f, err := os.Create(logPath)
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command("ip", "netns", "exec", ns, binary, "agent", "-node-id", fmt.Sprintf("d%d", i+1),
			"-data-dir", t.TempDir(), "-raft-addr", l.ips[i]+":7481", "-api-addr", l.ips[i]+":7480",
			"-token-file", l.token, "-peers", strings.Join(peers, ","), "-timing", "fast", "-dataplane", "nft", "-resync", "2s")
		cmd.Stdout, cmd.Stderr = f, f
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		l.procs, l.logs = append(l.procs, cmd), append(l.logs, logPath)
	}
	stopOnCleanup(t, &l.procs, &l.logs)
	return l
}

// stopOnCleanup kills the agents when the test ends and, if it failed,
// logs the tail of each one's log (director d1, d2, ... in order).
func stopOnCleanup(t *testing.T, procs *[]*exec.Cmd, logs *[]string) {
	t.Cleanup(func() {
		for _, p := range *procs {
			_ = p.Process.Kill()
			_, _ = p.Process.Wait()
		}
		if t.Failed() {
			for i, p := range *logs {
				b, _ := os.ReadFile(p)
				t.Logf("---- d%d log (tail) ----\n%s", i+1, tail(string(b), 2500))
			}
		}
	})
}

// api returns a client for director i whose connections are made from
// inside the client namespace (the directors' APIs listen on the lab
// network; nothing is sent from the root namespace).
func (l *nsLab) api(i int) *client.Client {
	c, err := client.New(client.Options{Addr: "https://" + l.ips[i] + ":7480", Token: token,
		Transport: netlab.HTTPClient(l.client, 5*time.Second).Transport})
	if err != nil {
		l.t.Fatal(err)
	}
	return c
}

// cli runs the raftlb CLI inside director i's namespace against its API.
func (l *nsLab) cli(i int, args ...string) string {
	l.t.Helper()
	full := append([]string{"netns", "exec", l.dirs[i], "env", "RAFTLB_ADDR=https://" + l.ips[i] + ":7480", "RAFTLB_TOKEN=" + token, binary}, args...)
	out, err := exec.Command("ip", full...).CombinedOutput()
	if err != nil {
		l.t.Fatalf("raftlb %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// status reads director i's /v1/status.
func (l *nsLab) status(i int) (wire.Status, error) {
	return l.api(i).Status(context.Background())
}

func (l *nsLab) waitFor(what string, cond func() bool) {
	l.t.Helper()
	waitUntil(l.t, what, 20*time.Second, cond)
}

// waitUntil polls cond until it holds, failing t after d.
func waitUntil(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

func (l *nsLab) leader() int {
	l.t.Helper()
	found := -1
	l.waitFor("a leader", func() bool {
		for i := range l.dirs {
			if st, err := l.status(i); err == nil && st.Role == "leader" {
				found = i
				return true
			}
		}
		return false
	})
	return found
}

// holds reports whether director i has the VIP on eth0.
func (l *nsLab) holds(i int) bool {
	out, _ := l.lab.Run(l.dirs[i], "ip", "-o", "addr", "show", "dev", "eth0")
	return strings.Contains(out, "10.10.0.100/")
}

// dests is the number of destinations director i's dataplane programmed.
func (l *nsLab) dests(i int) float64 {
	st, err := l.status(i)
	if err != nil {
		return -1
	}
	if st.Dataplane == nil {
		return -1
	}
	return float64(st.Dataplane.Destinations)
}

// round sends n requests to the VIP from the client, one new connection
// each, and counts who answered.
func (l *nsLab) round(n int) map[string]int {
	l.t.Helper()
	c := netlab.HTTPClient(l.client, 2*time.Second)
	counts := map[string]int{}
	for range n {
		resp, err := c.Get("http://10.10.0.100/")
		if err != nil {
			counts["error"]++
			continue
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		counts[strings.TrimSpace(string(b))]++
	}
	return counts
}

func (l *nsLab) neighMAC() string {
	out, _ := l.lab.Run(l.client, "ip", "neigh", "show", "10.10.0.100", "dev", "eth0")
	f := strings.Fields(out)
	for i := range f {
		if f[i] == "lladdr" && i+1 < len(f) {
			return f[i+1]
		}
	}
	return ""
}

// configure adds the lab's VIP group (client-side VIP and the real servers'
// gateway), service web (rr) and the given real servers through a
// follower's CLI, and returns the leader and that follower.
func (l *nsLab) configure(reals ...string) (leader, follower int) {
	l.t.Helper()
	leader = l.leader()
	follower = (leader + 1) % 3
	l.cli(follower, "vip", "add", "10.10.0.100/24", "-interface", "eth0", "-group", "lab")
	l.cli(follower, "vip", "add", "10.20.0.1/24", "-interface", "eth1", "-group", "lab")
	l.cli(follower, "service", "add", "web", "-t", "10.10.0.100:80", "-s", "rr")
	for _, r := range reals {
		l.cli(follower, "real", "add", "web", r)
	}
	return leader, follower
}

func TestDataplaneNftThreeDirectors(t *testing.T) {
	l := newNSLab(t)
	ld, f := l.configure("10.20.0.11:80", "10.20.0.12:80")
	l.waitFor("the VIP on the leader and 2 destinations on every director", func() bool {
		return l.holds(ld) && l.dests(0) == 2 && l.dests(1) == 2 && l.dests(2) == 2
	})
	for i := range l.dirs {
		if i != ld && l.holds(i) {
			t.Fatalf("follower d%d holds the VIP", i+1)
		}
	}

	if c := l.round(8); c["rs1"] != 4 || c["rs2"] != 4 {
		t.Fatalf("rr: %v, want 4/4", c)
	}
	l.cli(f, "service", "update", "web", "-s", "wrr")
	l.cli(f, "real", "update", "web", "10.20.0.11:80", "-w", "3")
	l.waitFor("wrr 3:1", func() bool { c := l.round(8); return c["rs1"] == 6 && c["rs2"] == 2 })
	l.cli(f, "real", "drain", "web", "10.20.0.12:80")
	l.waitFor("drain", func() bool { c := l.round(8); return c["rs1"] == 8 })
	l.cli(f, "real", "update", "web", "10.20.0.12:80", "-state", "enabled", "-w", "1")

	// Move leadership: the VIP group follows, and the client's neighbour
	// entry flips to the new director's MAC from its gratuitous ARP alone.
	if got := l.neighMAC(); got != l.macs[ld] {
		t.Fatalf("client's neighbour entry %q, want the leader's %s", got, l.macs[ld])
	}
	target := (ld + 2) % 3
	l.cli(f, "cluster", "transfer-leadership", fmt.Sprintf("d%d", target+1))
	l.waitFor("the VIP on the new leader only", func() bool { return l.holds(target) && !l.holds(ld) })
	l.waitFor("the client's neighbour entry to flip", func() bool { return l.neighMAC() == l.macs[target] })
	l.waitFor("traffic through the new director", func() bool { c := l.round(4); return c["rs1"]+c["rs2"] == 4 })
}

// TestLeaderLinkDownNeverTwoHolders: the leader's link goes down. Its lease
// runs out without quorum confirmations and it drops the VIP by itself; a
// new leader claims it after the claim delay. A sampler reads every
// director's addresses throughout: never two holders.
func TestLeaderLinkDownNeverTwoHolders(t *testing.T) {
	l := newNSLab(t)
	ld, _ := l.configure()
	l.waitFor("the VIP on the leader", func() bool { return l.holds(ld) })

	stopSampling := l.sampleHolders()
	l.lab.MustRun(l.dirs[ld], "ip", "link", "set", "eth0", "down")
	l.waitFor("the old leader to drop the VIP by itself", func() bool { return !l.holds(ld) })
	l.waitFor("another director to hold the VIP", func() bool {
		return l.holds((ld+1)%3) || l.holds((ld+2)%3)
	})
	l.lab.MustRun(l.dirs[ld], "ip", "link", "set", "eth0", "up")
	// Keep sampling while the old leader rejoins as a follower.
	l.waitFor("the old leader to rejoin as a follower", func() bool {
		st, err := l.status(ld)
		return err == nil && st.Role == "follower"
	})
	if dual := stopSampling(); len(dual) > 0 {
		t.Fatalf("two directors held the VIP at once: %v", dual)
	}
}

// sampleHolders reads every director's addresses until the returned
// function is called, which returns the instants with two holders.
func (l *nsLab) sampleHolders() func() []string {
	stop := make(chan struct{})
	done := make(chan []string)
	go func() {
		var dual []string
		for {
			select {
			case <-stop:
				done <- dual
				return
			default:
			}
			var holders []int
			for i := range l.dirs {
				if l.holds(i) {
					holders = append(holders, i+1)
				}
			}
			if len(holders) > 1 {
				dual = append(dual, fmt.Sprint(time.Now().Format("15:04:05.000"), " holders d", holders))
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	return func() []string {
		close(stop)
		return <-done
	}
}

// TestSigtermHandsOverOnACommittedRelease: SIGTERM on the leader releases
// the VIPs, commits the release and transfers leadership; the new leader
// claims at once (no claim delay) and the client keeps being served.
func TestSigtermHandsOverOnACommittedRelease(t *testing.T) {
	l := newNSLab(t)
	ld, _ := l.configure("10.20.0.11:80")
	l.waitFor("traffic through the leader", func() bool { return l.round(2)["rs1"] == 2 })
	stopSampling := l.sampleHolders()
	if err := l.procs[ld].Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	newLeader := -1
	l.waitFor("another director to hold the VIP", func() bool {
		for i := range l.dirs {
			if i != ld && l.holds(i) {
				newLeader = i
				return true
			}
		}
		return false
	})
	l.waitFor("the new leader to report its claim", func() bool {
		st, err := l.status(newLeader)
		if err != nil {
			return false
		}
		return st.VIPs != nil && st.VIPs.Lease.Holding
	})
	st, _ := l.status(newLeader)
	lease := st.VIPs.Lease
	if !lease.ClaimedOnRelease {
		t.Fatalf("the new leader waited for the lease instead of claiming on the committed release: %+v", lease)
	}
	_, _ = l.procs[ld].Process.Wait()
	if dual := stopSampling(); len(dual) > 0 {
		t.Fatalf("two directors held the VIP at once: %v", dual)
	}
	l.waitFor("traffic through the new leader", func() bool { return l.round(2)["rs1"] == 2 })
}

// TestLeaderFrozenIsFencedByTheKernel: the leader's daemon is SIGSTOPped.
// It cannot remove its address, but its kernel fence stops answering ARP
// and accepting traffic when the lease runs out; a new leader claims the
// VIP, the client moves to it, and after SIGCONT the client never goes back
// to the old director's MAC.
func TestLeaderFrozenIsFencedByTheKernel(t *testing.T) {
	l := newNSLab(t)
	ld, _ := l.configure("10.20.0.11:80")
	l.waitFor("traffic through the leader", func() bool { return l.round(2)["rs1"] == 2 })
	if got := l.neighMAC(); got != l.macs[ld] {
		t.Fatalf("client's neighbour entry %q, want the leader's %s", got, l.macs[ld])
	}

	frozen := l.procs[ld].Process
	if err := frozen.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stopped := true
	defer func() {
		if stopped {
			_ = frozen.Signal(syscall.SIGCONT)
		}
	}()
	newLeader := -1
	l.waitFor("a new leader holding the VIP", func() bool {
		for i := range l.dirs {
			if i != ld && l.holds(i) {
				newLeader = i
				return true
			}
		}
		return false
	})
	l.waitFor("the client to move to the new leader", func() bool { return l.neighMAC() == l.macs[newLeader] })
	l.waitFor("traffic through the new leader", func() bool { c := l.round(2); return c["rs1"]+c["rs2"] == 2 })
	if !l.holds(ld) {
		t.Log("note: the frozen director's address is gone; expected it to stay (only the fence stops it)")
	}

	// Wake the old leader: its lease has long run out, so its kernel keeps
	// refusing the VIP while its daemon learns the new term and removes
	// the address. The client must never flip back.
	if err := frozen.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	stopped = false
	deadline := time.Now().Add(10 * time.Second)
	for l.holds(ld) {
		if mac := l.neighMAC(); mac == l.macs[ld] {
			t.Fatalf("the client went back to the old leader's MAC %s after SIGCONT", mac)
		}
		if time.Now().After(deadline) {
			t.Fatal("the old leader kept the VIP address after SIGCONT")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if c := l.round(4); c["rs1"]+c["rs2"] != 4 {
		t.Fatalf("traffic after the old leader woke: %v", c)
	}
}
