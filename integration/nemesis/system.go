package nemesis

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// System is one set of directors under test: raftlb (Raftlb) or keepalived
// (Keepalived). Members are the directors (the lab's Directors, same
// indexes), then any member that never holds a VIP (the witness).
type System interface {
	Name() string
	// Fenced says whether holding a VIP needs a live kernel fence lease
	// besides the address (raftlb) or the address alone counts
	// (keepalived).
	Fenced() bool
	// Phase is the upper bound of the random delay before a fault: the
	// heartbeat timeout or the advert interval, so faults land at a random
	// point of the timers.
	Phase() time.Duration
	// Start starts every member and configures the service.
	Start() error
	Members() int
	Running(i int) bool
	Frozen(i int) bool
	Kill(i int) error    // crash (SIGKILL; keepalived: the lab's way, see Keepalived.Kill)
	Freeze(i int) error  // SIGSTOP
	Thaw(i int) error    // SIGCONT
	Term(i int) error    // planned stop (SIGTERM); returns when the process has exited
	Restart(i int) error // start a stopped member again, same data
	// Settled returns nil when the system is at rest with director holder
	// holding the VIPs (raftlb: every member ready and holder the raft
	// leader; keepalived: the highest-priority director holds).
	Settled(holder int) error
	// Logs returns the tail of every member's log.
	Logs(n int) string
	Close()
}

// proc is one daemon started inside a namespace (`ip netns exec` execs
// it, so the PID is the daemon's).
type proc struct {
	name    string
	ns      string
	args    []string
	logPath string

	mu     sync.Mutex
	cmd    *exec.Cmd
	done   chan struct{}
	frozen bool
}

func (p *proc) start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil && !closed(p.done) {
		return fmt.Errorf("%s is already running (pid %d)", p.name, p.cmd.Process.Pid)
	}
	f, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	fmt.Fprintf(f, "==== %s nemesis: start %s\n", time.Now().Format("15:04:05.000"), strings.Join(p.args, " "))
	cmd := exec.Command("ip", append([]string{"netns", "exec", p.ns}, p.args...)...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		f.Close()
		return fmt.Errorf("start %s: %w", p.name, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		fmt.Fprintf(f, "==== %s nemesis: exited: %v\n", time.Now().Format("15:04:05.000"), cmd.ProcessState)
		f.Close()
		close(done)
	}()
	p.cmd, p.done, p.frozen = cmd, done, false
	return nil
}

func closed(c chan struct{}) bool {
	if c == nil {
		return true
	}
	select {
	case <-c:
		return true
	default:
		return false
	}
}

func (p *proc) running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd != nil && !closed(p.done)
}

func (p *proc) isFrozen() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.frozen && p.cmd != nil && !closed(p.done)
}

func (p *proc) pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || closed(p.done) {
		return 0
	}
	return p.cmd.Process.Pid
}

// signal sends sig to the daemon by its PID.
func (p *proc) signal(sig syscall.Signal) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || closed(p.done) {
		return fmt.Errorf("%s is not running", p.name)
	}
	if err := p.cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("%s: %v: %w", p.name, sig, err)
	}
	switch sig {
	case syscall.SIGSTOP:
		p.frozen = true
	case syscall.SIGCONT:
		p.frozen = false
	}
	return nil
}

// wait waits up to d for the daemon to exit.
func (p *proc) wait(d time.Duration) bool {
	p.mu.Lock()
	done := p.done
	p.mu.Unlock()
	if done == nil {
		return true
	}
	select {
	case <-done:
		return true
	case <-time.After(d):
		return false
	}
}

// kill SIGKILLs the daemon and waits for it.
func (p *proc) kill() error {
	if !p.running() {
		return nil
	}
	if err := p.signal(syscall.SIGKILL); err != nil && p.running() {
		return err
	}
	if !p.wait(10 * time.Second) {
		return fmt.Errorf("%s did not die after SIGKILL", p.name)
	}
	return nil
}

// term sends SIGTERM and waits up to d for the exit; then SIGKILL.
func (p *proc) term(d time.Duration) error {
	if err := p.signal(syscall.SIGTERM); err != nil {
		return err
	}
	if p.wait(d) {
		return nil
	}
	_ = p.kill()
	return fmt.Errorf("%s did not exit within %v of SIGTERM; killed", p.name, d)
}

// exitCode returns the exit status of the daemon's last run (-1: it was
// killed by a signal, or has not exited).
func (p *proc) exitCode() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || !closed(p.done) {
		return -1
	}
	return p.cmd.ProcessState.ExitCode()
}

// tail returns the last n bytes of the daemon's log.
func (p *proc) tail(n int) string {
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return err.Error()
	}
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

func logsOf(procs []*proc, n int) string {
	var b strings.Builder
	for _, p := range procs {
		fmt.Fprintf(&b, "---- %s (%s) ----\n%s\n", p.name, p.logPath, p.tail(n))
	}
	return b.String()
}

// errNotMember is returned for an out-of-range member index.
var errNotMember = errors.New("no such member")
