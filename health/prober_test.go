package health

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/raftlb/raftlb/model"
)

// waitFor polls cond until it holds or d passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// fake is a controllable checker: per address a script of results (the last
// one repeats), and a record of every call.
type fake struct {
	mu     sync.Mutex
	script map[netip.AddrPort][]bool
	calls  map[netip.AddrPort][]time.Time
	weight *int
	block  chan struct{} // if set, Check waits for it (ignoring ctx): a frozen checker
}

func newFake() *fake {
	return &fake{script: map[netip.AddrPort][]bool{}, calls: map[netip.AddrPort][]time.Time{}}
}

func (f *fake) set(a netip.AddrPort, results ...bool) {
	f.mu.Lock()
	f.script[a] = results
	f.mu.Unlock()
}

func (f *fake) ncalls(a netip.AddrPort) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.calls[a])
}

func (f *fake) Check(ctx context.Context, t Target) Result {
	f.mu.Lock()
	block := f.block
	a := t.CheckAddr()
	f.calls[a] = append(f.calls[a], time.Now())
	up := true
	if s := f.script[a]; len(s) > 0 {
		up = s[0]
		if len(s) > 1 {
			f.script[a] = s[1:]
		}
	}
	w := f.weight
	f.mu.Unlock()
	if block != nil {
		<-block
	}
	if !up {
		return Result{Err: "fake down"}
	}
	return Result{Up: true, Weight: w}
}

// events collects OnEvent calls.
type events struct {
	mu  sync.Mutex
	evs map[Key][]Event
	n   atomic.Int64
}

func newEvents() *events { return &events{evs: map[Key][]Event{}} }

func (e *events) on(ev Event) {
	e.mu.Lock()
	e.evs[ev.Key] = append(e.evs[ev.Key], ev)
	e.mu.Unlock()
	e.n.Add(1)
}

func (e *events) of(k Key) []Event {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]Event(nil), e.evs[k]...)
}

func newTestProber(t *testing.T, f Checker, ev *events, workers int) *Prober {
	t.Helper()
	opt := Options{Workers: workers, NewChecker: func(model.Check) (Checker, error) { return f, nil }, StatsWindow: 50 * time.Millisecond}
	if ev != nil {
		opt.OnEvent = ev.on
	}
	p := NewProber(opt)
	t.Cleanup(p.Close)
	return p
}

func target(t *testing.T, addr string, s model.Check) Target {
	t.Helper()
	if s.Interval == 0 {
		s.Interval = model.Duration(10 * time.Millisecond)
	}
	n, err := model.NormalizeCheck(s)
	if err != nil {
		t.Fatal(err)
	}
	return Target{Addr: netip.MustParseAddrPort(addr), Spec: n}
}

// transitions returns the indexes of events that changed Up.
func transitions(evs []Event) []int {
	var out []int
	for i, e := range evs {
		if e.Transition {
			out = append(out, i)
		}
	}
	return out
}

func TestRiseFall(t *testing.T) {
	const F, T = false, true
	for _, c := range []struct {
		name      string
		startDown bool
		script    []bool
		want      []int // event indexes with a transition
		finalUp   bool
	}{
		// Start down: Rise (2) successes in a row to come up, Fall (3)
		// failures in a row to go down; a broken run starts over.
		{"start down", true, []bool{F, F, T, F, T, T, T, F, F, T, F, F, F, T, T}, []int{5, 12, 14}, true},
		// Start up: it takes Fall failures to go down.
		{"start up", false, []bool{F, F, T, F, F, F, F}, []int{5}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			f, ev := newFake(), newEvents()
			p := newTestProber(t, f, ev, 4)
			tg := target(t, "127.0.0.1:80", model.Check{Rise: 2, Fall: 3, StartDown: c.startDown})
			f.set(tg.Addr, append(c.script, c.script[len(c.script)-1])...)
			if err := p.SetTargets([]Target{tg}); err != nil {
				t.Fatal(err)
			}
			if st := p.Snapshot(); len(st) != 1 || st[0].Up == c.startDown || st[0].Checked {
				t.Fatalf("initial snapshot %+v", st)
			}
			k := tg.Key()
			waitFor(t, 5*time.Second, "all scripted results", func() bool { return len(ev.of(k)) >= len(c.script)+1 })
			evs := ev.of(k)[:len(c.script)]
			if got := transitions(evs); fmt.Sprint(got) != fmt.Sprint(c.want) {
				t.Fatalf("transitions at %v, want %v", got, c.want)
			}
			for i, e := range evs {
				if e.Result.Up != c.script[i] || e.Checks != uint64(i+1) {
					t.Fatalf("event %d: %+v", i, e)
				}
				if e.Transition && e.Up && e.Successes != 2 || e.Transition && !e.Up && e.Failures != 3 {
					t.Fatalf("event %d transition with counts %d/%d", i, e.Successes, e.Failures)
				}
			}
			if !evs[len(evs)-1].Up == c.finalUp || !evs[3].LastCheck.After(evs[2].LastCheck) {
				t.Fatalf("final %+v", evs[len(evs)-1])
			}
			if st := p.Snapshot(); st[0].Up != c.finalUp || st[0].Since.IsZero() || st[0].LastErr == "" == !c.finalUp {
				t.Fatalf("snapshot %+v", st[0])
			}
		})
	}
}

func TestRetriesWithDelay(t *testing.T) {
	f, ev := newFake(), newEvents()
	p := newTestProber(t, f, ev, 4)
	down := target(t, "127.0.0.1:1", model.Check{Retries: 2, RetryDelay: model.Duration(40 * time.Millisecond), Interval: model.Duration(time.Hour), InitialDelayMax: model.Duration(time.Millisecond)})
	f.set(down.Addr, false)
	flaky := target(t, "127.0.0.2:1", model.Check{Retries: 2, RetryDelay: model.Duration(40 * time.Millisecond), Interval: model.Duration(time.Hour), InitialDelayMax: model.Duration(time.Millisecond), StartDown: true, Rise: 1})
	f.set(flaky.Addr, false, false, true)
	if err := p.SetTargets([]Target{down, flaky}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "both checks", func() bool { return len(ev.of(down.Key())) == 1 && len(ev.of(flaky.Key())) == 1 })
	// One check = 1 + Retries attempts, RetryDelay apart; one event.
	for _, a := range []netip.AddrPort{down.Addr, flaky.Addr} {
		f.mu.Lock()
		calls := f.calls[a]
		f.mu.Unlock()
		if len(calls) != 3 {
			t.Fatalf("%s: %d attempts, want 3", a, len(calls))
		}
		for i := 1; i < 3; i++ {
			if gap := calls[i].Sub(calls[i-1]); gap < 40*time.Millisecond {
				t.Errorf("%s: attempts %d and %d only %v apart", a, i-1, i, gap)
			}
		}
	}
	if e := ev.of(down.Key())[0]; e.Result.Up || e.Failures != 1 {
		t.Errorf("down: %+v", e)
	}
	// A retry that succeeds counts as one success.
	if e := ev.of(flaky.Key())[0]; !e.Result.Up || !e.Transition || e.Failures != 0 {
		t.Errorf("flaky: %+v", e)
	}
	if s := p.Stats(); s.Attempts != 6 {
		t.Errorf("stats %+v, want 6 attempts", s)
	}
}

func TestProberTimeout(t *testing.T) {
	ev := newEvents()
	var took atomic.Int64
	c := CheckerFunc(func(ctx context.Context, _ Target) Result {
		start := time.Now()
		<-ctx.Done()
		took.Store(int64(time.Since(start)))
		return Result{Err: "timeout"}
	})
	p := newTestProber(t, c, ev, 2)
	tg := target(t, "127.0.0.1:1", model.Check{Timeout: model.Duration(30 * time.Millisecond), Interval: model.Duration(time.Hour), InitialDelayMax: model.Duration(time.Millisecond)})
	p.SetTargets([]Target{tg})
	waitFor(t, 5*time.Second, "the check", func() bool { return ev.n.Load() == 1 })
	if d := time.Duration(took.Load()); d < 25*time.Millisecond || d > time.Second {
		t.Errorf("check cancelled after %v, want ~30ms", d)
	}
}

func TestDedupeSharedTargets(t *testing.T) {
	f, ev := newFake(), newEvents()
	p := newTestProber(t, f, ev, 4)
	spec := model.Check{Type: "tcp", Interval: model.Duration(20 * time.Millisecond)}
	// Two services with the same real server and check, a third with the
	// check port pointing at the same place, and one with another check.
	a := target(t, "10.0.0.1:80", spec)
	b := target(t, "10.0.0.1:80", spec)
	viaPort := target(t, "10.0.0.1:8080", model.Check{Type: "tcp", Interval: model.Duration(20 * time.Millisecond), Port: 80})
	other := target(t, "10.0.0.1:80", model.Check{Type: "tcp", Interval: model.Duration(20 * time.Millisecond), Fall: 5})
	if a.Key() != b.Key() || a.Key() != viaPort.Key() || a.Key() == other.Key() {
		t.Fatalf("keys %v %v %v %v", a.Key(), b.Key(), viaPort.Key(), other.Key())
	}
	p.SetTargets([]Target{a, b, viaPort, other})
	if n := len(p.Snapshot()); n != 2 {
		t.Fatalf("%d probes, want 2", n)
	}
	waitFor(t, 5*time.Second, "10 checks of the shared target", func() bool { return len(ev.of(a.Key())) >= 10 })
	// The fake records by checked address: both probes hit 10.0.0.1:80, so
	// the calls are the shared probe's plus the other spec's, no more.
	got := f.ncalls(a.CheckAddr())
	if max := len(ev.of(a.Key())) + len(ev.of(other.Key())) + 2; got > max {
		t.Errorf("%d checks of 10.0.0.1:80, want at most %d (one probe per key)", got, max)
	}
}

func TestSetTargetsKeepsState(t *testing.T) {
	f, ev := newFake(), newEvents()
	p := newTestProber(t, f, ev, 4)
	a := target(t, "127.0.0.1:1", model.Check{StartDown: true, Rise: 2})
	b := target(t, "127.0.0.1:2", model.Check{StartDown: true, Rise: 2})
	p.SetTargets([]Target{a})
	waitFor(t, 5*time.Second, "a up", func() bool {
		evs := ev.of(a.Key())
		return len(evs) > 0 && evs[len(evs)-1].Up
	})
	before := p.Snapshot()[0]

	// Adding b (and a again, as another service would) keeps a as it is.
	a2 := a
	a2.Spec.StartDown = true
	p.SetTargets([]Target{b, a2, a})
	snap := p.Snapshot()
	if len(snap) != 2 || snap[0].Key != a.Key() || !snap[0].Up || snap[0].Since != before.Since || snap[0].Checks < before.Checks {
		t.Fatalf("after adding b: %+v (before %+v)", snap, before)
	}
	if snap[1].Up || snap[1].Checked {
		t.Fatalf("b: %+v", snap[1])
	}
	waitFor(t, 5*time.Second, "b up", func() bool {
		evs := ev.of(b.Key())
		return len(evs) > 0 && evs[len(evs)-1].Up
	})
	if tr := transitions(ev.of(a.Key())); len(tr) != 1 {
		t.Errorf("a transitions %v, want only the first rise", tr)
	}

	// Dropping a stops its checks.
	p.SetTargets([]Target{b})
	if s := p.Snapshot(); len(s) != 1 || s[0].Key != b.Key() {
		t.Fatalf("after dropping a: %+v", s)
	}
	n := f.ncalls(a.Addr)
	nb := len(ev.of(b.Key()))
	waitFor(t, 5*time.Second, "more checks of b", func() bool { return len(ev.of(b.Key())) >= nb+5 })
	if got := f.ncalls(a.Addr); got > n+1 { // one may have been running
		t.Errorf("a checked %d more times after it was dropped", got-n)
	}
	if p.Stats().Targets != 1 {
		t.Errorf("stats %+v", p.Stats())
	}

	// An invalid spec is reported and skipped; type none is not probed.
	err := p.SetTargets([]Target{b, {Addr: a.Addr, Spec: model.Check{Type: "bogus"}}, {Addr: a.Addr, Spec: model.Check{Type: "none"}}})
	if err == nil || len(p.Snapshot()) != 1 {
		t.Errorf("SetTargets with a bad spec: %v, %d targets", err, len(p.Snapshot()))
	}
}

func TestDynamicWeightEvents(t *testing.T) {
	f, ev := newFake(), newEvents()
	w := 7
	f.weight = &w
	p := newTestProber(t, f, ev, 2)
	tg := target(t, "127.0.0.1:1", model.Check{})
	p.SetTargets([]Target{tg})
	waitFor(t, 5*time.Second, "3 checks", func() bool { return len(ev.of(tg.Key())) >= 3 })
	evs := ev.of(tg.Key())
	if !evs[0].WeightChanged || evs[1].WeightChanged || evs[2].Weight == nil || *evs[2].Weight != 7 {
		t.Errorf("events %+v", evs[:3])
	}
	// An up result without a weight (a script's exit 0) is the configured
	// weight again, as keepalived's misc_dynamic: not "unchanged".
	f.mu.Lock()
	f.weight = nil
	f.mu.Unlock()
	waitFor(t, 5*time.Second, "the weight back to the configured one", func() bool {
		evs := ev.of(tg.Key())
		last := evs[len(evs)-1]
		return last.Weight == nil && last.Up
	})
	changed := 0
	for _, e := range ev.of(tg.Key()) {
		if e.WeightChanged {
			changed++
		}
	}
	if changed != 2 {
		t.Errorf("%d events changed the weight, want 2 (7, then the configured weight)", changed)
	}
}

// TestScriptExitCodeSetsTheStateWeight: a real dynamic script check in a
// prober, its exit code read from a file the test writes: exit 12 is up
// with weight 10, 7 with weight 5, 1 down (the weight is left as it was),
// 0 up with the configured weight.
func TestScriptExitCodeSetsTheStateWeight(t *testing.T) {
	code := filepath.Join(t.TempDir(), "code")
	setCode := func(c string) {
		if err := os.WriteFile(code+".tmp", []byte(c+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(code+".tmp", code); err != nil {
			t.Fatal(err)
		}
	}
	setCode("12")
	script := writeScript(t, `exit "$(cat "$1")"`)
	ev := newEvents()
	p := NewProber(Options{Workers: 2, OnEvent: ev.on, StatsWindow: 50 * time.Millisecond})
	t.Cleanup(p.Close)
	tg := target(t, "127.0.0.1:9", model.Check{Type: "script", Rise: 1, Fall: 1, Timeout: model.Duration(2 * time.Second),
		Interval: model.Duration(20 * time.Millisecond), Script: &model.ScriptCheck{Path: script, Args: []string{code}, Dynamic: true}})
	if err := p.SetTargets([]Target{tg}); err != nil {
		t.Fatal(err)
	}
	state := func() State {
		evs := ev.of(tg.Key())
		if len(evs) == 0 {
			return State{}
		}
		return evs[len(evs)-1].State
	}
	weightIs := func(want int) func() bool {
		return func() bool { s := state(); return s.Up && s.Weight != nil && *s.Weight == want }
	}
	waitFor(t, 10*time.Second, "exit 12: up with weight 10", weightIs(10))
	setCode("7")
	waitFor(t, 10*time.Second, "exit 7: up with weight 5", weightIs(5))
	setCode("1")
	waitFor(t, 10*time.Second, "exit 1: down", func() bool { s := state(); return s.Checked && !s.Up })
	if s := state(); s.Weight == nil || *s.Weight != 5 || s.LastErr != "script exit 1" {
		t.Errorf("down: weight %v, error %q; want the weight left at 5, script exit 1", s.Weight, s.LastErr)
	}
	setCode("0")
	waitFor(t, 10*time.Second, "exit 0: up with the configured weight", func() bool { s := state(); return s.Up && s.Weight == nil })
}

func TestWatchdogSeesFrozenChecker(t *testing.T) {
	f := newFake()
	f.block = make(chan struct{})
	p := newTestProber(t, f, nil, 1)
	p.SetTargets([]Target{target(t, "127.0.0.1:1", model.Check{Timeout: model.Duration(10 * time.Millisecond)})})
	waitFor(t, 5*time.Second, "stalled", func() bool { return p.Stats().Stalled })
	s := p.Stats()
	if s.WindowAttempts != 0 || s.InFlight != 1 || s.Attempts != 0 {
		t.Errorf("frozen stats %+v", s)
	}
	f.mu.Lock()
	close(f.block)
	f.block = nil
	f.mu.Unlock()
	waitFor(t, 5*time.Second, "recovered", func() bool {
		s := p.Stats()
		return !s.Stalled && s.WindowAttempts > 0
	})
}

// TestManyTargetsFewGoroutines: 10,000 targets cost no goroutine each.
func TestManyTargetsFewGoroutines(t *testing.T) {
	before := runtime.NumGoroutine()
	var calls atomic.Int64
	c := CheckerFunc(func(context.Context, Target) Result { calls.Add(1); return Result{Up: true} })
	p := newTestProber(t, c, nil, 64)
	ts := make([]Target, 10000)
	spec, _ := model.NormalizeCheck(model.Check{Interval: model.Duration(500 * time.Millisecond)})
	for i := range ts {
		ts[i] = Target{Addr: netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}), 80), Spec: spec}
	}
	if err := p.SetTargets(ts); err != nil {
		t.Fatal(err)
	}
	maxG := 0
	waitFor(t, 25*time.Second, "every target checked", func() bool {
		maxG = max(maxG, runtime.NumGoroutine())
		return calls.Load() >= 10000 && p.Stats().Targets == 10000 && allChecked(p)
	})
	if limit := before + 64 + 1 + 5; maxG > limit {
		t.Errorf("%d goroutines with 10k targets, want at most %d", maxG, limit)
	}
	if s := p.Stats(); s.Targets != 10000 || s.Stalled {
		t.Errorf("stats %+v", s)
	}
	p.Close()
	waitFor(t, 5*time.Second, "goroutines gone", func() bool { return runtime.NumGoroutine() <= before+2 })
}

func allChecked(p *Prober) bool {
	for _, st := range p.Snapshot() {
		if !st.Checked {
			return false
		}
	}
	return true
}
