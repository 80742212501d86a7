package health

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/raftlb/raftlb/model"
)

// Options configure a Prober.
type Options struct {
	// Workers is the number of checks run at once; default 64. Checks that
	// wait for a timeout hold a worker: needed workers ≈ checks per second ×
	// mean check duration. Stats.MaxLag shows when it is too small.
	Workers int
	// NewChecker builds the checker for a spec; default NewChecker.
	NewChecker func(model.Check) (Checker, error)
	// OnEvent receives every completed check (after its retries), with the
	// target's state after it. It is called from worker goroutines, for
	// different targets concurrently, for one target in order; it must not
	// block for long and must not call SetTargets or Close.
	OnEvent func(Event)
	// StatsWindow is the watchdog's window; default 1s.
	StatsWindow time.Duration
}

// State is a target's health as the Prober sees it.
type State struct {
	Key     Key
	Target  Target // the first target given with this key
	Up      bool
	Checked bool // at least one check completed
	// Successes and Failures are the current run of consecutive results.
	Successes, Failures int
	// Weight is the dynamic weight of the last successful check (nil:
	// the configured weight); a failed check leaves it.
	Weight      *int
	Since       time.Time
	LastCheck   time.Time
	LastLatency time.Duration
	LastErr     string
	Checks      uint64 // completed checks
}

// Event is one completed check.
type Event struct {
	State
	Result        Result
	Transition    bool // Up changed with this check
	WeightChanged bool // State.Weight changed with this check
}

// Stats is the Prober's self-monitoring (keepalived #2523: a frozen checker
// must be visible).
type Stats struct {
	Targets  int
	Workers  int
	InFlight int
	Attempts uint64 // completed check attempts since start, retries included
	// WindowAttempts is the number of attempts completed in the last full
	// window, which ended at WindowEnd: the watchdog counter.
	Window         time.Duration
	WindowAttempts uint64
	WindowEnd      time.Time
	// MaxLag is the longest a due check waited for a worker in the last
	// window: the pool is too small when it approaches the interval.
	MaxLag         time.Duration
	LastCompletion time.Time
	// Stalled is true when no check completed for far longer than the
	// slowest target's cycle, or the scheduler stopped rolling windows.
	Stalled bool
}

type entry struct {
	key     Key
	target  Target
	checker Checker
	due     time.Duration // since Prober.base (monotonic)
	idx     int           // in the heap; -1 = not in it
	running bool
	removed bool
	attempt int
	start   time.Time // of the check's first attempt
	st      State
}

type entryHeap []*entry

func (h entryHeap) Len() int           { return len(h) }
func (h entryHeap) Less(i, j int) bool { return h[i].due < h[j].due }
func (h entryHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].idx, h[j].idx = i, j
}
func (h *entryHeap) Push(x any) { e := x.(*entry); e.idx = len(*h); *h = append(*h, e) }
func (h *entryHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	e.idx = -1
	return e
}

// Prober checks a set of targets: one scheduler goroutine keeps a min-heap
// of next-check times and hands due checks to a fixed pool of workers. No
// goroutine or timer exists per target.
type Prober struct {
	opt    Options
	base   time.Time
	ctx    context.Context
	cancel context.CancelFunc
	jobs   chan *entry
	wake   chan struct{}
	wg     sync.WaitGroup

	mu       sync.Mutex
	heap     entryHeap
	entries  map[Key]*entry
	checkers map[string]Checker // by spec hash
	backlog  bool
	inFlight int
	maxLag   time.Duration // in the current window
	stallFor time.Duration
	setAt    time.Time
	closed   bool
	// watchdog
	winStart, winEnd time.Time
	winBase, winLast uint64
	lastMaxLag       time.Duration

	attempts atomic.Uint64
	lastDone atomic.Int64 // unix nanos
}

// NewProber starts a Prober with no targets. Close stops it.
func NewProber(opt Options) *Prober {
	if opt.Workers <= 0 {
		opt.Workers = 64
	}
	if opt.NewChecker == nil {
		opt.NewChecker = NewChecker
	}
	if opt.StatsWindow <= 0 {
		opt.StatsWindow = time.Second
	}
	ctx, cancel := context.WithCancel(context.Background())
	now := time.Now()
	p := &Prober{opt: opt, base: now, ctx: ctx, cancel: cancel,
		jobs: make(chan *entry, opt.Workers), wake: make(chan struct{}, 1),
		entries: map[Key]*entry{}, checkers: map[string]Checker{},
		winStart: now, winEnd: now, setAt: now}
	p.wg.Add(opt.Workers + 1)
	for range opt.Workers {
		go p.worker()
	}
	go p.schedule()
	return p
}

// SetTargets replaces the set of targets. Targets are deduplicated by Key:
// services sharing a real server and a check share one probe. Targets whose
// key is already present keep their state and schedule; new ones start after
// a random delay up to their spec's InitialDelayMax; the rest are dropped.
// Specs are normalised here; invalid ones are skipped and reported in the
// error (the others are still applied). Type none is never probed.
func (p *Prober) SetTargets(ts []Target) error {
	var errs []error
	want := make(map[Key]Target, len(ts))
	for _, t := range ts {
		s, err := model.NormalizeCheck(t.Spec)
		if err != nil {
			errs = append(errs, fmt.Errorf("target %s: %w", t.Addr, err))
			continue
		}
		if s.Type == model.CheckNone {
			continue
		}
		t.Spec = s
		k := t.Key()
		if _, dup := want[k]; !dup {
			want[k] = t
		}
	}
	now := time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return errors.New("health: prober closed")
	}
	for k, e := range p.entries {
		if _, keep := want[k]; keep {
			continue
		}
		e.removed = true
		if e.idx >= 0 {
			heap.Remove(&p.heap, e.idx)
		}
		delete(p.entries, k)
	}
	checkers := make(map[string]Checker, len(p.checkers))
	var stall time.Duration
	for k, t := range want {
		cycle := t.Spec.Interval.D() + time.Duration(t.Spec.Retries+1)*(t.Spec.Timeout.D()+t.Spec.RetryDelay.D())
		if s := t.Spec.InitialDelayMax.D() + 3*cycle; s > stall {
			stall = s
		}
		c, have := checkers[k.Spec]
		if !have {
			if c, have = p.checkers[k.Spec]; !have {
				var err error
				if c, err = p.opt.NewChecker(t.Spec); err != nil {
					msg := err.Error()
					c = CheckerFunc(func(context.Context, Target) Result { return Result{Err: msg} })
				}
			}
			checkers[k.Spec] = c
		}
		if _, have := p.entries[k]; have {
			continue
		}
		e := &entry{key: k, target: t, checker: c, idx: -1,
			st: State{Key: k, Target: t, Up: !t.Spec.StartDown, Since: now}}
		e.due = now.Sub(p.base)
		if d := t.Spec.InitialDelayMax.D(); d > 0 {
			e.due += rand.N(d)
		}
		p.entries[k] = e
		heap.Push(&p.heap, e)
	}
	p.checkers = checkers
	p.stallFor = stall + 2*p.opt.StatsWindow
	p.setAt = now
	p.poke()
	return errors.Join(errs...)
}

// Snapshot returns the state of every target, sorted by key.
func (p *Prober) Snapshot() []State {
	p.mu.Lock()
	out := make([]State, 0, len(p.entries))
	for _, e := range p.entries {
		out = append(out, e.st)
	}
	p.mu.Unlock()
	slices.SortFunc(out, func(a, b State) int {
		if c := a.Key.Addr.Compare(b.Key.Addr); c != 0 {
			return c
		}
		switch {
		case a.Key.Spec < b.Key.Spec:
			return -1
		case a.Key.Spec > b.Key.Spec:
			return 1
		}
		return 0
	})
	return out
}

// Stats returns the Prober's self-monitoring counters.
func (p *Prober) Stats() Stats {
	now := time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	s := Stats{Targets: len(p.entries), Workers: p.opt.Workers, InFlight: p.inFlight,
		Attempts: p.attempts.Load(), Window: p.opt.StatsWindow,
		WindowAttempts: p.winLast, WindowEnd: p.winEnd, MaxLag: p.lastMaxLag}
	if ns := p.lastDone.Load(); ns != 0 {
		s.LastCompletion = time.Unix(0, ns)
	}
	since := s.LastCompletion
	if p.setAt.After(since) {
		since = p.setAt
	}
	s.Stalled = s.Targets > 0 && (now.Sub(since) > p.stallFor || now.Sub(p.winEnd) > 3*p.opt.StatsWindow)
	return s
}

// Close stops the Prober and waits for running checks to be cancelled.
func (p *Prober) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	p.mu.Unlock()
	p.cancel()
	p.wg.Wait()
}

func (p *Prober) poke() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// schedule is the one scheduler goroutine.
func (p *Prober) schedule() {
	defer p.wg.Done()
	defer close(p.jobs)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		p.mu.Lock()
		now := time.Now()
		mono := now.Sub(p.base)
		for len(p.heap) > 0 && p.heap[0].due <= mono {
			if len(p.jobs) == cap(p.jobs) {
				p.backlog = true // a finishing worker pokes
				break
			}
			e := heap.Pop(&p.heap).(*entry)
			e.running = true
			p.inFlight++
			if lag := mono - e.due; lag > p.maxLag {
				p.maxLag = lag
			}
			p.jobs <- e // never blocks: only this goroutine sends, and there is room
		}
		if !now.Before(p.winStart.Add(p.opt.StatsWindow)) {
			a := p.attempts.Load()
			p.winLast, p.winBase = a-p.winBase, a
			p.winEnd, p.winStart = now, now
			p.lastMaxLag, p.maxLag = p.maxLag, 0
		}
		next := p.winStart.Add(p.opt.StatsWindow)
		if len(p.heap) > 0 && !p.backlog && p.base.Add(p.heap[0].due).Before(next) {
			next = p.base.Add(p.heap[0].due)
		}
		p.mu.Unlock()
		timer.Reset(time.Until(next))
		select {
		case <-timer.C:
		case <-p.wake:
		case <-p.ctx.Done():
			return
		}
	}
}

func (p *Prober) worker() {
	defer p.wg.Done()
	for {
		var e *entry
		select {
		case e = <-p.jobs:
		case <-p.ctx.Done():
			return
		}
		if e == nil {
			return
		}
		p.run(e)
	}
}

// run performs one attempt for e and reschedules it.
func (p *Prober) run(e *entry) {
	spec := e.target.Spec
	start := time.Now()
	if e.attempt == 0 {
		e.start = start
	}
	ctx, cancel := context.WithTimeout(p.ctx, spec.Timeout.D())
	res := e.checker.Check(ctx, e.target)
	cancel()
	if res.Latency == 0 {
		res.Latency = time.Since(start)
	}
	now := time.Now()
	p.attempts.Add(1)
	p.lastDone.Store(now.UnixNano())
	if p.ctx.Err() != nil {
		p.mu.Lock()
		p.inFlight--
		p.mu.Unlock()
		return
	}

	p.mu.Lock()
	if !res.Up && e.attempt < spec.Retries && !e.removed {
		e.attempt++
		e.due = now.Sub(p.base) + spec.RetryDelay.D()
		p.requeue(e)
		p.mu.Unlock()
		return
	}
	e.attempt = 0
	ev := Event{Result: res}
	st := &e.st
	st.Checked = true
	st.Checks++
	st.LastCheck, st.LastLatency, st.LastErr = now, res.Latency, res.Err
	if res.Up {
		st.Failures = 0
		st.Successes++
		if !st.Up && st.Successes >= spec.Rise {
			st.Up, st.Since, ev.Transition = true, now, true
		}
		if !model.SameWeight(st.Weight, res.Weight) {
			st.Weight, ev.WeightChanged = model.CloneWeight(res.Weight), true
		}
	} else {
		st.Successes = 0
		st.Failures++
		if st.Up && st.Failures >= spec.Fall {
			st.Up, st.Since, ev.Transition = false, now, true
		}
	}
	ev.State = *st
	removed := e.removed
	p.mu.Unlock()

	// Report before rescheduling, so one target's events stay in order.
	if p.opt.OnEvent != nil && !removed {
		p.opt.OnEvent(ev)
	}

	p.mu.Lock()
	e.due = max(e.start.Sub(p.base)+spec.Interval.D(), time.Since(p.base))
	p.requeue(e)
	p.mu.Unlock()
}

// requeue puts a finished e back into the heap (p.mu held).
func (p *Prober) requeue(e *entry) {
	e.running = false
	p.inFlight--
	if e.removed || p.closed {
		return
	}
	heap.Push(&p.heap, e)
	if e.idx == 0 || p.backlog {
		p.backlog = false
		p.poke()
	}
}
