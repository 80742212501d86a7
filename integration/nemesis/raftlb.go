package nemesis

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/raftlb/raftlb/api/client"
	"github.com/raftlb/raftlb/cluster"
	"github.com/raftlb/raftlb/internal/netlab"
	"github.com/raftlb/raftlb/trust"
)

// Ports of every raftlb member, on its eth0 address.
const (
	raftPort = 7481
	apiPort  = 7480
	token    = "nemesis-token-6b1d8f3a5c9e2074d6b1f8a3"
)

// RaftlbOptions configure the raftlb system.
type RaftlbOptions struct {
	Binary  string   // the raftlb binary (go build -o ... ./cmd/raftlb)
	Profile string   // timing profile: lan (default) or fast
	Args    []string // more agent flags, for every director
}

// Raftlb is real `raftlb agent` processes, one per member namespace, with
// the nftables dataplane (the witness, if the lab has one, runs
// `raftlb agent -witness`), configured through the CLI from the client
// namespace.
type Raftlb struct {
	lab   *Lab
	o     RaftlbOptions
	procs []*proc
	http  *http.Client
}

// NewRaftlb prepares the members; Start starts them.
func NewRaftlb(l *Lab, o RaftlbOptions) *Raftlb {
	if o.Profile == "" {
		o.Profile = "lan"
	}
	r := &Raftlb{lab: l, o: o, http: netlab.HTTPClient(l.Client, time.Second)}
	// The directors serve HTTPS with certificates of the cluster CA that
	// the token derives (their addresses are beyond loopback).
	tr, err := trust.FromTokens([]string{token})
	if err != nil {
		panic(err) // a constant token: cannot fail
	}
	r.http.Transport.(*http.Transport).TLSClientConfig = tr.ClientConfig()
	tokenFile := filepath.Join(l.Dir, "token")
	_ = os.WriteFile(tokenFile, []byte(token+"\n"), 0o600)
	var peers []string
	for _, m := range l.Members() {
		peers = append(peers, fmt.Sprintf("%s=%s:%d", m.Name, m.IP, raftPort))
	}
	for _, m := range l.Members() {
		args := []string{o.Binary, "agent", "-node-id", m.Name, "-data-dir", filepath.Join(l.Dir, "data-"+m.Name),
			"-raft-addr", fmt.Sprintf("%s:%d", m.IP, raftPort), "-api-addr", fmt.Sprintf("%s:%d", m.IP, apiPort),
			"-token-file", tokenFile, "-peers", strings.Join(peers, ","), "-timing", o.Profile}
		if m == l.Witness {
			args = append(args, "-witness")
		} else {
			args = append(args, "-dataplane", "nft")
			args = append(args, o.Args...)
		}
		r.procs = append(r.procs, &proc{name: m.Name, ns: m.NS, args: args, logPath: filepath.Join(l.Dir, m.Name+".log")})
	}
	return r
}

// HasWitness reports whether the raftlb binary has the -witness flag.
func HasWitness(binary string) bool {
	out, _ := exec.Command(binary, "agent", "-h").CombinedOutput()
	return strings.Contains(string(out), "-witness")
}

// Name is "raftlb <profile>" (with "+witness" on two directors and a
// witness).
func (r *Raftlb) Name() string {
	n := "raftlb " + r.o.Profile
	if r.lab.Witness != nil {
		n += fmt.Sprintf(" (%d+witness)", len(r.lab.Directors))
	}
	return n
}

// Fenced is true: a raftlb director holds a VIP only under a live lease in
// its kernel fence.
func (r *Raftlb) Fenced() bool { return true }

// Phase is the profile's heartbeat timeout (cluster/profile.go).
func (r *Raftlb) Phase() time.Duration {
	p, err := cluster.ProfileByName(r.o.Profile)
	if err != nil {
		return 300 * time.Millisecond
	}
	return p.HeartbeatTimeout
}

// Members counts the directors and the witness.
func (r *Raftlb) Members() int { return len(r.procs) }

func (r *Raftlb) member(i int) (*proc, error) {
	if i < 0 || i >= len(r.procs) {
		return nil, fmt.Errorf("member %d: %w", i, errNotMember)
	}
	return r.procs[i], nil
}

// Start starts every member, waits for a leader and configures the VIP
// group (the service VIP on eth0, the real servers' gateway on eth1),
// service web (rr) and both real servers through the CLI.
func (r *Raftlb) Start() error {
	for _, p := range r.procs {
		if err := p.start(); err != nil {
			return err
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for r.leader() < 0 {
		if time.Now().After(deadline) {
			return fmt.Errorf("raftlb: no leader within 30 s")
		}
		time.Sleep(100 * time.Millisecond)
	}
	cmds := [][]string{
		{"vip", "add", fmt.Sprintf("%s/%d", VIP, VIPPrefix), "-interface", "eth0", "-group", "lab"},
		{"vip", "add", GatewayVIP + "/24", "-interface", "eth1", "-group", "lab"},
		{"service", "add", "web", "-t", fmt.Sprintf("%s:%d", VIP, ServicePort), "-s", "rr"},
	}
	for _, rs := range r.lab.Reals {
		cmds = append(cmds, []string{"real", "add", "web", fmt.Sprintf("%s:%d", rs, ServicePort)})
	}
	for _, c := range cmds {
		if _, err := r.CLI(c...); err != nil {
			return err
		}
	}
	return nil
}

// CLI runs the raftlb CLI inside the client namespace against the first
// running director's API.
func (r *Raftlb) CLI(args ...string) (string, error) {
	target := r.lab.Directors[0]
	for i, d := range r.lab.Directors {
		if r.procs[i].running() && !r.procs[i].isFrozen() {
			target = d
			break
		}
	}
	full := append([]string{"netns", "exec", r.lab.Client, "env",
		fmt.Sprintf("RAFTLB_ADDR=https://%s:%d", target.IP, apiPort), "RAFTLB_TOKEN=" + token, r.o.Binary}, args...)
	out, err := exec.Command("ip", full...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("raftlb %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// API returns an API client for member i whose connections are made from
// the client namespace.
func (r *Raftlb) API(i int) (*client.Client, error) {
	m := r.lab.Members()[i]
	return client.New(client.Options{Addr: fmt.Sprintf("https://%s:%d", m.IP, apiPort), Token: token,
		Transport: r.http.Transport, Timeout: time.Second, NoLeaderWait: -1})
}

// leader returns the member that says it is the raft leader, or -1.
func (r *Raftlb) leader() int {
	for i, p := range r.procs {
		if !p.running() || p.isFrozen() {
			continue
		}
		if st, err := r.status(i); err == nil && st == "leader" {
			return i
		}
	}
	return -1
}

func (r *Raftlb) status(i int) (role string, err error) {
	c, err := r.API(i)
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	st, err := c.Status(ctx)
	return st.Role, err
}

func (r *Raftlb) ready(i int) error {
	m := r.lab.Members()[i]
	resp, err := r.http.Get(fmt.Sprintf("https://%s:%d/readyz", m.IP, apiPort))
	if err != nil {
		return fmt.Errorf("%s: readyz: %w", m.Name, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: readyz: %s", m.Name, resp.Status)
	}
	return nil
}

// Running reports whether member i's process is alive.
func (r *Raftlb) Running(i int) bool { return r.procs[i].running() }

// Frozen reports whether member i is SIGSTOPped.
func (r *Raftlb) Frozen(i int) bool { return r.procs[i].isFrozen() }

// Kill SIGKILLs member i.
func (r *Raftlb) Kill(i int) error {
	p, err := r.member(i)
	if err != nil {
		return err
	}
	return p.kill()
}

// Freeze SIGSTOPs member i.
func (r *Raftlb) Freeze(i int) error {
	p, err := r.member(i)
	if err != nil {
		return err
	}
	return p.signal(syscall.SIGSTOP)
}

// Thaw SIGCONTs member i.
func (r *Raftlb) Thaw(i int) error {
	p, err := r.member(i)
	if err != nil {
		return err
	}
	return p.signal(syscall.SIGCONT)
}

// Term SIGTERMs member i (a planned handover when it leads) and waits for
// it to exit.
func (r *Raftlb) Term(i int) error {
	p, err := r.member(i)
	if err != nil {
		return err
	}
	return p.term(30 * time.Second)
}

// TermStatus SIGTERMs member i and waits up to d for it to exit; it
// returns the exit status (an error, and the process SIGKILLed, if it
// did not exit within d).
func (r *Raftlb) TermStatus(i int, d time.Duration) (int, error) {
	p, err := r.member(i)
	if err != nil {
		return -1, err
	}
	if err := p.term(d); err != nil {
		return -1, err
	}
	return p.exitCode(), nil
}

// Leader returns the member that says it is the raft leader, or -1.
func (r *Raftlb) Leader() int { return r.leader() }

// Restart starts member i again with its data dir.
func (r *Raftlb) Restart(i int) error {
	p, err := r.member(i)
	if err != nil {
		return err
	}
	return p.start()
}

// Settled: every member runs, is not frozen and is ready (knows a leader,
// caught up), and holder is the raft leader.
func (r *Raftlb) Settled(holder int) error {
	for i, p := range r.procs {
		if !p.running() || p.isFrozen() {
			return fmt.Errorf("%s is not running", p.name)
		}
		if err := r.ready(i); err != nil {
			return err
		}
	}
	role, err := r.status(holder)
	if err != nil {
		return err
	}
	if role != "leader" {
		return fmt.Errorf("holder %s is %s, not the leader", r.procs[holder].name, role)
	}
	return nil
}

// Logs returns the tail of every member's log.
func (r *Raftlb) Logs(n int) string { return logsOf(r.procs, n) }

// Close kills every member.
func (r *Raftlb) Close() {
	for _, p := range r.procs {
		_ = p.kill()
	}
}

// RaftTerm returns member i's current raft term.
func (r *Raftlb) RaftTerm(i int) (uint64, error) {
	c, err := r.API(i)
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	st, err := c.Status(ctx)
	return st.Term, err
}
