package nemesis

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"
)

// Nemesis names one fault.
type Nemesis string

// The nemeses. "Leader" is the director holding the VIPs.
const (
	KillLeader   Nemesis = "kill-leader"   // SIGKILL (keepalived: the crash of Keepalived.Kill), restarted after recovery
	StopLeader   Nemesis = "stop-leader"   // SIGSTOP for RunnerOptions.Freeze (5 s), then SIGCONT
	LinkDown     Nemesis = "link-down"     // its client-LAN port down until another director serves, then up
	Partition    Nemesis = "partition"     // cut off from the other directors (and the witness) only, then healed
	KillFollower Nemesis = "kill-follower" // SIGKILL of a non-holder, restarted after a while
	RestartAll   Nemesis = "restart-all"   // every member killed, then all started again
	Handover     Nemesis = "handover"      // SIGTERM of the leader (planned), restarted after recovery
)

// AllNemeses in the order the suite and the benchmark run them.
var AllNemeses = []Nemesis{KillLeader, StopLeader, LinkDown, Partition, KillFollower, RestartAll, Handover}

// ParseNemeses parses a comma-separated list ("all" or empty: every one).
func ParseNemeses(s string) ([]Nemesis, error) {
	if s == "" || s == "all" {
		return AllNemeses, nil
	}
	var out []Nemesis
	for _, f := range strings.Split(s, ",") {
		n := Nemesis(strings.TrimSpace(f))
		if !slices.Contains(AllNemeses, n) {
			return nil, fmt.Errorf("unknown nemesis %q (have %v)", n, AllNemeses)
		}
		out = append(out, n)
	}
	return out, nil
}

// Moves says whether the nemesis takes the VIPs away from the leader,
// so recovery means another director holds them.
func (n Nemesis) Moves() bool {
	switch n {
	case KillLeader, LinkDown, Partition, Handover:
		return true
	}
	return false
}

// RunnerOptions configure a Runner.
type RunnerOptions struct {
	Interval     time.Duration // checkers' and prober's period (default 10 ms)
	ProbeTimeout time.Duration // one probe's bound (default 200 ms)
	Settle       time.Duration // continuous service that counts as recovered (default 1 s)
	Timeout      time.Duration // bound of every wait (default 30 s)
	Freeze       time.Duration // SIGSTOP length (default 5 s)
	FollowerDown time.Duration // how long kill-follower keeps it down at least (default Settle)
	Seed         uint64        // of the random phase and choices (default: the time)
	Logf         func(format string, args ...any)
}

// Runner runs rounds of nemeses against one System in one Lab, with the
// address checker, the ARP checker and the prober running throughout.
type Runner struct {
	Lab     *Lab
	Sys     System
	Checker *Checker
	ARP     *ARPChecker
	Prober  *Prober

	o        RunnerOptions
	rng      *rand.Rand
	turn     int
	started  time.Time
	forgot   time.Time
	oldDuals []Dual
}

// NewRunner starts the observers, then the system, and waits until it is
// settled. Close stops everything.
func NewRunner(l *Lab, sys System, o RunnerOptions) (*Runner, error) {
	if o.Interval == 0 {
		o.Interval = 10 * time.Millisecond
	}
	if o.ProbeTimeout == 0 {
		o.ProbeTimeout = 200 * time.Millisecond
	}
	if o.Settle == 0 {
		o.Settle = time.Second
	}
	if o.Timeout == 0 {
		o.Timeout = 30 * time.Second
	}
	if o.Freeze == 0 {
		o.Freeze = 5 * time.Second
	}
	if o.FollowerDown == 0 {
		o.FollowerDown = o.Settle
	}
	if o.Seed == 0 {
		o.Seed = uint64(time.Now().UnixNano())
	}
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	r := &Runner{Lab: l, Sys: sys, o: o, rng: rand.New(rand.NewPCG(o.Seed, 0x6e656d65)), started: time.Now()}
	r.forgot = r.started
	var err error
	if r.Checker, err = StartChecker(l, sys.Fenced(), o.Interval); err != nil {
		return nil, err
	}
	if r.ARP, err = StartARPChecker(l, o.Interval); err != nil {
		r.Close()
		return nil, err
	}
	if r.Prober, err = StartProber(l.Client, fmt.Sprintf("%s:%d", VIP, ServicePort), o.Interval, o.ProbeTimeout); err != nil {
		r.Close()
		return nil, err
	}
	if err := sys.Start(); err != nil {
		r.Close()
		return nil, fmt.Errorf("%s: start: %w", sys.Name(), err)
	}
	if _, err := r.WaitSettled(); err != nil {
		r.Close()
		return nil, fmt.Errorf("%s: never settled after start: %w\n%s", sys.Name(), err, sys.Logs(3000))
	}
	return r, nil
}

// Close stops the system and the observers.
func (r *Runner) Close() {
	if r.Sys != nil {
		r.Sys.Close()
	}
	if r.Prober != nil {
		r.Prober.Stop()
	}
	if r.ARP != nil {
		r.ARP.Stop()
	}
	if r.Checker != nil {
		r.Checker.Stop()
	}
}

// AllDuals returns every dual-holder sample since the runner started,
// both checkers.
func (r *Runner) AllDuals() []Dual {
	now := time.Now()
	out := append([]Dual(nil), r.oldDuals...)
	out = append(out, r.Checker.Duals(r.forgot, now)...)
	return append(out, r.ARP.Duals(r.forgot, now)...)
}

// forget drops observer history before t, keeping its dual samples.
func (r *Runner) forget(t time.Time) {
	if !t.After(r.forgot) {
		return
	}
	r.oldDuals = append(r.oldDuals, r.Checker.Duals(r.forgot, t)...)
	r.oldDuals = append(r.oldDuals, r.ARP.Duals(r.forgot, t)...)
	r.Checker.Forget(t)
	r.ARP.Forget(t)
	r.Prober.Forget(t)
	r.forgot = t
}

func (r *Runner) name(i int) string {
	if ms := r.Lab.Members(); i >= 0 && i < len(ms) {
		return ms[i].Name
	}
	return fmt.Sprint(i)
}

func (r *Runner) index(name string) int {
	for i, m := range r.Lab.Members() {
		if m.Name == name {
			return i
		}
	}
	return -1
}

// WaitSettled waits until exactly one director holds both VIPs and has
// held them for Settle, the client has been served without a failure for
// Settle, the client's and the real servers' neighbour entries point at
// the holder (or are absent), and the system says it is at rest with that
// holder. It returns the holder.
func (r *Runner) WaitSettled() (int, error) {
	deadline := time.Now().Add(r.o.Timeout)
	why := "nothing checked yet"
	for time.Now().Before(deadline) {
		cur := r.Checker.Current()
		changes := r.Checker.Changes(time.Now().Add(-r.o.Settle), time.Now())
		switch {
		case len(cur.VIP) != 1 || !slices.Equal(cur.VIP, cur.Gateway):
			why = "holders: " + cur.String()
		case len(changes) != 1:
			why = "holders changed within the settle time: " + cur.String()
		case !r.Prober.Served(r.o.Settle):
			why = "the client is not served continuously"
		default:
			h := r.index(cur.VIP[0])
			if err := r.Lab.PointsAt(h); err != nil {
				why = err.Error()
			} else if err := r.Sys.Settled(h); err != nil {
				why = err.Error()
			} else if again := r.Checker.Current(); slices.Equal(again.VIP, cur.VIP) {
				return h, nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return -1, fmt.Errorf("not settled within %v: %s", r.o.Timeout, why)
}

// waitServed waits until the client has been served without a failure
// for Settle, counted from after; with moved, another director than old
// must hold the service VIP, and the Settle is counted from when one was
// first seen holding (a crashed keepalived keeps serving beside the new
// master: recovery is the new holder serving, not the old one).
func (r *Runner) waitServed(after time.Time, old int, moved bool) (time.Time, error) {
	deadline := time.Now().Add(r.o.Timeout)
	for time.Now().Before(deadline) {
		from := after
		if moved {
			from = time.Time{}
			for _, c := range r.Checker.Changes(after, time.Now()) {
				if !c.At.Before(after) && slices.ContainsFunc(c.VIP, func(h string) bool { return h != r.name(old) }) {
					from = c.At
					break
				}
			}
			cur := r.Checker.Current().VIP
			if from.IsZero() || !slices.ContainsFunc(cur, func(h string) bool { return h != r.name(old) }) {
				time.Sleep(20 * time.Millisecond)
				continue
			}
		}
		if time.Since(from) >= r.o.Settle+r.o.ProbeTimeout && r.Prober.Served(r.o.Settle) {
			return time.Now(), nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	cur := r.Checker.Current()
	if moved {
		return time.Now(), fmt.Errorf("no recovery within %v: holders %s; client served: %v", r.o.Timeout, cur, r.Prober.Served(r.o.Settle))
	}
	return time.Now(), fmt.Errorf("the client was not served continuously within %v (holders %s)", r.o.Timeout, cur)
}

// Result is one round.
type Result struct {
	System  string
	Nemesis Nemesis
	Old     string        // the leader (holder) when the fault came
	Target  string        // the member the fault hit (kill-follower: a follower; restart-all: all)
	New     string        // the first other director to hold the VIP after the fault ("" none)
	Final   string        // the holder at the end of the round
	Phase   time.Duration // random delay before the fault
	// Gap is the longest time without a successful connection from one
	// second before the fault (at most from the moment the system was
	// found settled) until the client was served again for
	// Settle after the last step of the nemesis (SIGCONT, link up, heal,
	// restart of all).
	Gap time.Duration
	// Takeover is the time from the fault to the first sample with
	// another director holding (-1: none).
	Takeover time.Duration
	// RestoreGap is the longest time without a successful connection
	// after the gap window until the system was at rest again: a
	// stopped member starting again (kill-leader, kill-follower,
	// handover), keepalived's highest priority preempting back.
	RestoreGap time.Duration
	Failed     int    // failed probes in the gap window
	DualAddr   []Dual // address-checker dual-holder samples in the whole round
	DualARP    []Dual // ARP dual-holder samples in the whole round
	// Inconclusive are address-checker sweeps with two holders whose
	// reads were too far apart to count and that a re-read did not
	// confirm (see Checker).
	Inconclusive []Dual
	Timeline     []string
	Err          error // the round could not complete (no recovery, a step failed)
}

func (res Result) String() string {
	s := fmt.Sprintf("%s %s: %s -> %s, gap %v, takeover %v, restore gap %v, failed probes %d, dual addr %d arp %d",
		res.System, res.Nemesis, res.Old, orNone(res.New), ms(res.Gap), ms(res.Takeover), ms(res.RestoreGap), res.Failed,
		len(res.DualAddr), len(res.DualARP))
	if res.Err != nil {
		s += ", ERROR: " + res.Err.Error()
	}
	return s
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

func ms(d time.Duration) string {
	if d < 0 {
		return "-"
	}
	return d.Round(time.Millisecond).String()
}

// Round runs one nemesis: wait until settled, sleep a random phase of the
// system's timers, inject, wait for recovery (and undo the fault where
// the nemesis has a second step), restore what was stopped, and wait until
// settled again.
func (r *Runner) Round(n Nemesis) (res Result) {
	res = Result{System: r.Sys.Name(), Nemesis: n, Takeover: -1, RestoreGap: -1}
	t0 := time.Now()
	r.forget(t0.Add(-10 * time.Second))
	h, err := r.WaitSettled()
	if err != nil {
		res.Err = fmt.Errorf("before the fault: %w", err)
		return res
	}
	settledAt := time.Now()
	res.Old, res.Target = r.name(h), r.name(h)
	res.Phase = time.Duration(r.rng.Int64N(int64(r.Sys.Phase())))
	time.Sleep(res.Phase)

	var restore []int // members to start again after recovery
	var end time.Time
	k := time.Now()
	switch n {
	case KillLeader:
		if err = r.Sys.Kill(h); err == nil {
			restore = []int{h}
			end, err = r.waitServed(k, h, true)
		}
	case StopLeader:
		if err = r.Sys.Freeze(h); err == nil {
			time.Sleep(r.o.Freeze)
			if err = r.Sys.Thaw(h); err == nil {
				end, err = r.waitServed(time.Now(), h, false)
			}
		}
	case LinkDown:
		if err = r.Lab.LinkDown(h); err == nil {
			_, err = r.waitServed(k, h, true)
			if uerr := r.Lab.LinkUp(h); uerr != nil {
				err = errors.Join(err, uerr)
			}
			if err == nil {
				end, err = r.waitServed(time.Now(), h, false)
			}
		}
	case Partition:
		if err = r.Lab.Partition(h); err == nil {
			_, err = r.waitServed(k, h, true)
			if herr := r.Lab.Heal(); herr != nil {
				err = errors.Join(err, herr)
			}
			if err == nil {
				end, err = r.waitServed(time.Now(), h, false)
			}
		}
	case KillFollower:
		var others []int
		for i := range r.Sys.Members() {
			if i != h {
				others = append(others, i)
			}
		}
		f := others[r.turn%len(others)]
		r.turn++
		res.Target = r.name(f)
		if err = r.Sys.Kill(f); err == nil {
			restore = []int{f}
			time.Sleep(r.o.FollowerDown)
			end, err = r.waitServed(k, h, false)
		}
	case RestartAll:
		res.Target = "all"
		for i := range r.Sys.Members() {
			if kerr := r.Sys.Kill(i); kerr != nil {
				err = errors.Join(err, kerr)
			}
		}
		for i := range r.Sys.Members() {
			if serr := r.Sys.Restart(i); serr != nil {
				err = errors.Join(err, serr)
			}
		}
		if err == nil {
			var hh int
			hh, err = r.WaitSettled()
			end = time.Now()
			res.Final = r.name(hh)
		}
	case Handover:
		if err = r.Sys.Term(h); err == nil {
			restore = []int{h}
			end, err = r.waitServed(k, h, true)
		}
	default:
		err = fmt.Errorf("unknown nemesis %q", n)
	}
	if end.IsZero() {
		end = time.Now()
	}
	res.Err = err
	from := k.Add(-time.Second)
	if from.Before(settledAt) {
		from = settledAt // before it the system was not at rest
	}
	as := r.Prober.Attempts(from, end)
	res.Gap = Gap(as, from, end)
	for _, a := range as {
		if !a.OK {
			res.Failed++
		}
	}
	for _, c := range r.Checker.Changes(k, end) {
		if res.New != "" || c.At.Before(k) {
			continue
		}
		for _, who := range c.VIP {
			if who != res.Old {
				res.New, res.Takeover = who, c.At.Sub(k)
				break
			}
		}
	}

	if err != nil {
		r.repair()
	}
	// Restore what the nemesis stopped, then settle.
	for _, i := range restore {
		if serr := r.Sys.Restart(i); serr != nil {
			res.Err = errors.Join(res.Err, serr)
		}
	}
	hh, serr := r.WaitSettled()
	settled := time.Now()
	if serr != nil {
		res.Err = errors.Join(res.Err, fmt.Errorf("after the round: %w", serr))
	} else {
		res.Final = r.name(hh)
	}
	res.RestoreGap = Gap(r.Prober.Attempts(end.Add(-r.o.ProbeTimeout), settled), end, settled)
	res.DualAddr = r.Checker.Duals(t0, settled)
	res.DualARP = r.ARP.Duals(t0, settled)
	res.Inconclusive = r.Checker.Inconclusive(t0, settled)
	res.Timeline = r.timeline(k, settled)
	return res
}

// repair undoes whatever a failed round may have left: the partition,
// a link down, a frozen or stopped member.
func (r *Runner) repair() {
	_ = r.Lab.Heal()
	for i := range r.Sys.Members() {
		_ = r.Lab.LinkUp(i)
		if r.Sys.Frozen(i) {
			_ = r.Sys.Thaw(i)
		}
		if !r.Sys.Running(i) {
			_ = r.Sys.Restart(i)
		}
	}
}

// timeline describes a round relative to the fault at k: holder changes,
// the MAC answering ARP, gratuitous ARPs, and runs of failed probes.
func (r *Runner) timeline(k, end time.Time) []string {
	type ev struct {
		at time.Time
		s  string
	}
	var evs []ev
	for _, c := range r.Checker.Changes(k.Add(-time.Second), end) {
		evs = append(evs, ev{c.At, "holders " + c.String()})
	}
	for _, a := range r.ARP.Answers(k.Add(-time.Second), end) {
		evs = append(evs, ev{a.At, "ARP answered by " + orNone(a.Name) + " " + a.MAC})
	}
	var lastMAC string
	var lastAt time.Time
	for _, g := range r.ARP.GARPs(k.Add(-time.Second), end) {
		if g.MAC == lastMAC && g.At.Sub(lastAt) < 2*time.Second {
			continue // one line per burst
		}
		evs = append(evs, ev{g.At, "gratuitous ARP from " + orNone(g.Name)})
		lastMAC, lastAt = g.MAC, g.At
	}
	var runStart time.Time
	var runN int
	var runErr string
	for _, a := range r.Prober.Attempts(k.Add(-time.Second), end) {
		if !a.OK {
			if runN == 0 {
				runStart, runErr = a.Start, a.Err
			}
			runN++
			continue
		}
		if runN > 0 {
			evs = append(evs, ev{runStart, fmt.Sprintf("%d probes failed (first: %s)", runN, runErr)})
			runN = 0
		}
	}
	if runN > 0 {
		evs = append(evs, ev{runStart, fmt.Sprintf("%d probes failed (first: %s), to the end", runN, runErr)})
	}
	slices.SortStableFunc(evs, func(a, b ev) int { return a.at.Compare(b.at) })
	var out []string
	for _, e := range evs {
		out = append(out, fmt.Sprintf("%+8.3fs %s", e.at.Sub(k).Seconds(), e.s))
	}
	return out
}

// StallResult is one Stall round.
type StallResult struct {
	System string
	Stall  time.Duration
	Old    string // the holder that was frozen
	// Elected: the raft term changed (an election ran); Moved: another
	// director held the VIPs at some sample (a false failover).
	Elected, Moved bool
	Err            error
}

func (s StallResult) String() string {
	out := fmt.Sprintf("%s stall %v of %s: elected %v, moved %v", s.System, s.Stall, s.Old, s.Elected, s.Moved)
	if s.Err != nil {
		out += ", error: " + s.Err.Error()
	}
	return out
}

// raftTerms is what Stall needs beyond System: raftlb's raft term.
type raftTerms interface {
	RaftTerm(i int) (uint64, error)
}

// Stall freezes the holder for d (SIGSTOP, then SIGCONT) at a random phase
// of the timers, as a GC pause or CPU starvation would, and reports whether
// the cluster elected a new leader and whether the VIPs moved. It measures
// how long a stall the timing profile tolerates (docs/fencing.md).
func (r *Runner) Stall(d time.Duration) (res StallResult) {
	res = StallResult{System: r.Sys.Name(), Stall: d}
	rt, ok := r.Sys.(raftTerms)
	if !ok {
		res.Err = fmt.Errorf("%s has no raft term", r.Sys.Name())
		return res
	}
	r.forget(time.Now().Add(-10 * time.Second))
	h, err := r.WaitSettled()
	if err != nil {
		res.Err = fmt.Errorf("before the stall: %w", err)
		return res
	}
	res.Old = r.name(h)
	before, err := rt.RaftTerm(h)
	if err != nil {
		res.Err = err
		return res
	}
	time.Sleep(time.Duration(r.rng.Int64N(int64(r.Sys.Phase()))))
	k := time.Now()
	if err := r.Sys.Freeze(h); err != nil {
		res.Err = err
		return res
	}
	time.Sleep(d)
	if err := r.Sys.Thaw(h); err != nil {
		res.Err = err
		return res
	}
	if _, err := r.WaitSettled(); err != nil {
		res.Err = fmt.Errorf("after the stall: %w", err)
		return res
	}
	for _, c := range r.Checker.Changes(k, time.Now()) {
		for _, who := range c.VIP {
			res.Moved = res.Moved || who != res.Old
		}
	}
	after, err := rt.RaftTerm(h)
	res.Elected = after != before
	res.Err = err
	return res
}
