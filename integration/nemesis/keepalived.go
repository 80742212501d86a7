package nemesis

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// ErrNoKeepalived is returned by Keepalived.Start when keepalived is not
// installed (apt-get install -y keepalived).
var ErrNoKeepalived = errors.New("keepalived is not installed (apt-get install -y keepalived)")

// KeepalivedOptions configure the keepalived system.
type KeepalivedOptions struct {
	Version int    // VRRP version: 2 or 3
	Advert  string // advert_int: "1" (VRRPv2 needs an integer), "0.1" (VRRPv3)
}

// Keepalived is keepalived (`keepalived --vrrp --dont-fork`, VRRP only)
// in each director namespace, priorities 150/100/50, all starting BACKUP
// with preempt (the default), one VRRP instance on eth0 carrying both VIPs
// (the service VIP on eth0, the gateway on eth1). The kernel has no IPVS
// here, so each director gets the same service as a static nftables DNAT
// table: the prober's connections reach the real servers exactly as
// through raftlb's nft dataplane.
type Keepalived struct {
	lab      *Lab
	o        KeepalivedOptions
	procs    []*proc
	dirs     []string // per director: configs and pid files
	children []int    // the VRRP child of each running daemon
}

// NewKeepalived prepares the directors; Start starts them.
func NewKeepalived(l *Lab, o KeepalivedOptions) *Keepalived {
	if o.Version == 0 {
		o.Version = 2
	}
	if o.Advert == "" {
		o.Advert = "1"
	}
	k := &Keepalived{lab: l, o: o, children: make([]int, len(l.Directors))}
	for _, d := range l.Directors {
		dir := filepath.Join(l.Dir, "keepalived-"+d.Name)
		k.dirs = append(k.dirs, dir)
		k.procs = append(k.procs, &proc{name: d.Name, ns: d.NS, logPath: filepath.Join(l.Dir, d.Name+".keepalived.log"),
			args: []string{"keepalived", "--dont-fork", "--log-console", "--log-detail", "--no-syslog", "--vrrp",
				"-f", filepath.Join(dir, "keepalived.conf"), "-p", filepath.Join(dir, "keepalived.pid"),
				"-r", filepath.Join(dir, "vrrp.pid"), "-c", filepath.Join(dir, "checkers.pid"), "-b", filepath.Join(dir, "bfd.pid")}})
	}
	return k
}

// Name is "keepalived vN advert X".
func (k *Keepalived) Name() string {
	return fmt.Sprintf("keepalived v%d advert %s", k.o.Version, k.o.Advert)
}

// Fenced is false: a keepalived director holds a VIP while the address is
// configured (its kernel answers ARP for it and accepts traffic to it).
func (k *Keepalived) Fenced() bool { return false }

// Phase is the advert interval.
func (k *Keepalived) Phase() time.Duration {
	f, err := strconv.ParseFloat(k.o.Advert, 64)
	if err != nil || f <= 0 {
		return time.Second
	}
	return time.Duration(f * float64(time.Second))
}

// Members counts the directors.
func (k *Keepalived) Members() int { return len(k.procs) }

func priority(i int) int { return []int{150, 100, 50}[i] }

func (k *Keepalived) conf(i int) string {
	d := k.lab.Directors[i]
	return fmt.Sprintf(`global_defs {
    router_id %s
    vrrp_version %d
}

vrrp_instance VI_1 {
    state BACKUP
    interface eth0
    virtual_router_id 51
    priority %d
    advert_int %s
    virtual_ipaddress {
        %s/%d dev eth0
        %s/24 dev eth1
    }
}
`, d.Name, k.o.Version, priority(i), k.o.Advert, VIP, VIPPrefix, GatewayVIP)
}

// dnat is the static service of every keepalived director: new
// connections to VIP:80 are DNATed round-robin to the real servers, as
// raftlb's nft dataplane does, but only while the VIP is a local address
// of the director (fib daddr type local), as with IPVS, which sees only
// packets for local addresses: a director that has dropped the VIP must
// not keep serving it for clients whose neighbour entry still points at
// it. Packets for the VIP while it is not local are not tracked either,
// so that neither a NAT binding from before (a reused client port) nor
// an unNATed entry made meanwhile decides a later connection; they are
// routed, as without IPVS. (raftlb's fence drops them before conntrack.)
func (k *Keepalived) dnat() string {
	var m []string
	for i, rs := range k.lab.Reals {
		m = append(m, fmt.Sprintf("%d : %s", i, rs))
	}
	return fmt.Sprintf(`table ip nemesis_lb {
	chain raw {
		type filter hook prerouting priority raw; policy accept;
		ip daddr %[1]s fib daddr type != local notrack
	}
	chain prerouting {
		type nat hook prerouting priority dstnat; policy accept;
		ip daddr %[1]s tcp dport %[2]d fib daddr type local dnat to numgen inc mod %[3]d map { %[4]s }
	}
}
`, VIP, ServicePort, len(k.lab.Reals), strings.Join(m, ", "))
}

// Start installs the DNAT table and starts keepalived in every director.
func (k *Keepalived) Start() error {
	if _, err := exec.LookPath("keepalived"); err != nil {
		return ErrNoKeepalived
	}
	for i, d := range k.lab.Directors {
		if err := os.MkdirAll(k.dirs[i], 0o755); err != nil {
			return err
		}
		nft := filepath.Join(k.dirs[i], "dnat.nft")
		if err := os.WriteFile(nft, []byte(k.dnat()), 0o644); err != nil {
			return err
		}
		if _, err := k.lab.Net.Run(d.NS, "nft", "-f", nft); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(k.dirs[i], "keepalived.conf"), []byte(k.conf(i)), 0o644); err != nil {
			return err
		}
		if err := k.Restart(i); err != nil {
			return err
		}
	}
	return nil
}

// Restart starts director i's keepalived and waits for its VRRP child.
func (k *Keepalived) Restart(i int) error {
	if i < 0 || i >= len(k.procs) {
		return errNotMember
	}
	for _, f := range []string{"keepalived.pid", "vrrp.pid", "checkers.pid", "bfd.pid"} {
		_ = os.Remove(filepath.Join(k.dirs[i], f))
	}
	p := k.procs[i]
	if err := p.start(); err != nil {
		return err
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if child, err := k.child(i); err == nil {
			k.children[i] = child
			return nil
		} else if time.Now().After(deadline) || !p.running() {
			return fmt.Errorf("keepalived in %s did not start its VRRP child: %v\n%s", p.name, err, p.tail(2000))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// child reads the VRRP child's PID from its pid file and checks that it
// is a child of the daemon this lab started.
func (k *Keepalived) child(i int) (int, error) {
	b, err := os.ReadFile(filepath.Join(k.dirs[i], "vrrp.pid"))
	if err != nil {
		return 0, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0, fmt.Errorf("vrrp.pid: %q", b)
	}
	if pp := ppid(pid); pp != k.procs[i].pid() {
		return 0, fmt.Errorf("pid %d from vrrp.pid has parent %d, not our keepalived %d", pid, pp, k.procs[i].pid())
	}
	return pid, nil
}

// ppid returns the parent PID of pid (0 if it is gone).
func ppid(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	_, rest, ok := strings.Cut(string(b), ") ")
	if !ok {
		return 0
	}
	f := strings.Fields(rest)
	if len(f) < 2 {
		return 0
	}
	n, _ := strconv.Atoi(f[1])
	return n
}

// Running reports whether director i's keepalived is alive.
func (k *Keepalived) Running(i int) bool { return k.procs[i].running() }

// Frozen reports whether it is SIGSTOPped.
func (k *Keepalived) Frozen(i int) bool { return k.procs[i].isFrozen() }

// Kill crashes director i's keepalived the way the keepalived lab found
// to be a real crash: SIGSTOP the parent (or it respawns the child),
// SIGKILL the VRRP child, SIGKILL the parent. (SIGKILL of the parent alone
// is not a crash: the child has PDEATHSIG=SIGTERM and shuts down
// gracefully.) The VIPs stay configured on the crashed node.
func (k *Keepalived) Kill(i int) error {
	p := k.procs[i]
	if !p.running() {
		return nil
	}
	if err := p.signal(syscall.SIGSTOP); err != nil {
		return err
	}
	if c := k.children[i]; c > 0 && ppid(c) == p.pid() {
		_ = syscall.Kill(c, syscall.SIGKILL)
	}
	if err := p.kill(); err != nil {
		return err
	}
	// The child is reparented and reaped by init; wait until it is gone
	// or a zombie.
	if c := k.children[i]; c > 0 {
		deadline := time.Now().Add(2 * time.Second)
		for time.Now().Before(deadline) && alive(c) {
			time.Sleep(5 * time.Millisecond)
		}
		k.children[i] = 0
	}
	return nil
}

// alive reports whether pid exists and is not a zombie.
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	_, rest, ok := strings.Cut(string(b), ") ")
	return ok && !strings.HasPrefix(rest, "Z")
}

// Freeze SIGSTOPs the daemon and its VRRP child.
func (k *Keepalived) Freeze(i int) error {
	p := k.procs[i]
	if err := p.signal(syscall.SIGSTOP); err != nil {
		return err
	}
	if c := k.children[i]; c > 0 && ppid(c) == p.pid() {
		return syscall.Kill(c, syscall.SIGSTOP)
	}
	return nil
}

// Thaw SIGCONTs the VRRP child, then the daemon.
func (k *Keepalived) Thaw(i int) error {
	p := k.procs[i]
	if c := k.children[i]; c > 0 && ppid(c) == p.pid() {
		_ = syscall.Kill(c, syscall.SIGCONT)
	}
	return p.signal(syscall.SIGCONT)
}

// Term stops director i's keepalived cleanly (it sends a priority-0
// advert and removes its VIPs).
func (k *Keepalived) Term(i int) error {
	err := k.procs[i].term(20 * time.Second)
	k.children[i] = 0
	return err
}

// Settled: every daemon runs, unfrozen, and the highest-priority director
// (d1) holds, as preempt makes it.
func (k *Keepalived) Settled(holder int) error {
	for _, p := range k.procs {
		if !p.running() || p.isFrozen() {
			return fmt.Errorf("%s is not running", p.name)
		}
	}
	if holder != 0 {
		return fmt.Errorf("%s holds; waiting for d1 (priority 150) to preempt", k.lab.Directors[holder].Name)
	}
	return nil
}

// Logs returns the tail of every daemon's log.
func (k *Keepalived) Logs(n int) string { return logsOf(k.procs, n) }

// Close crashes every daemon (the lab's namespaces go next).
func (k *Keepalived) Close() {
	for i := range k.procs {
		_ = k.Kill(i)
	}
}
