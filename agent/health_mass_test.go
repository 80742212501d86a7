package agent

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/raftlb/raftlb/cluster/gossip"
	"github.com/raftlb/raftlb/dataplane"
	"github.com/raftlb/raftlb/fsm"
	"github.com/raftlb/raftlb/health"
	"github.com/raftlb/raftlb/internal/benchrec"
	"github.com/raftlb/raftlb/model"
)

var (
	massMeasure = flag.Bool("health.mass", false, "run TestMeasureMassFailure (three directors in one process, 10,000 real servers; about a minute)")
	massRecord  = flag.String("health.mass.record", "", "write its table into this file (docs/benchmarks.md, bench:health-mass markers)")
	massRounds  = flag.Int("health.mass.rounds", 5, "rounds per variant")
)

// massLab is three directors in one process: each a real gossip endpoint on
// loopback (the agent's settings, push/pull only every hour so that nothing
// rides on it) and a healthCore whose prober is the test (it calls onEvent
// as the prober's workers would). The leader d1 commits through a fake raft
// log that applies every command to the three directors' FSMs in order.
type massLab struct {
	t       testing.TB
	reals   []string // "addr:port", the service's real servers
	spec    model.Check
	fsms    []*testFSM
	cores   []*healthCore
	gossips []*gossip.Gossip
	keys    []health.Key // per real server, the same on every director
	names   []string     // their target names
	mu      sync.Mutex   // the replicated log
}

const massService = "web"

func newMassLab(t testing.TB, n int) *massLab {
	l := &massLab{t: t, spec: model.Check{Type: "tcp", Interval: model.Duration(time.Second), Fall: 3, Rise: 2}}
	for i := range n {
		l.reals = append(l.reals, fmt.Sprintf("10.%d.%d.%d:80", 1+i/62500, i/250%250, i%250+1))
	}
	ids := []string{"d1", "d2", "d3"}
	for range ids {
		l.fsms = append(l.fsms, &testFSM{f: fsm.New(nil)})
	}
	for i, id := range ids {
		l.replicate(&fsm.RegisterNode{Node: model.Node{ID: id, RaftAddr: fmt.Sprintf("127.0.0.1:%d", 7501+i),
			APIAddr: fmt.Sprintf("127.0.0.1:%d", 7481+i), APIScheme: "http", GossipAddr: "127.0.0.1:1"}})
	}
	spec := l.spec
	svc := checkedService(massService, "192.0.2.1", &spec, "", l.reals...)
	if err := l.replicate(svc); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		for _, g := range l.gossips {
			g.Shutdown()
		}
	})
	for i, id := range ids {
		cfg := gossip.Config{NodeID: id, BindAddr: "127.0.0.1:0", Key: []byte("0123456789abcdef0123456789abcdef"),
			Logger:         hclog.New(&hclog.LoggerOptions{Name: id, Level: hclog.Error, Output: testLogWriter{t}}),
			GossipInterval: gossipInterval, RetransmitMult: gossipRetransmitMult, TCPTimeout: gossipTCPTimeout,
			PushPullInterval: time.Hour}
		if i > 0 {
			cfg.Join = []string{l.gossips[0].Addr()}
		}
		leader := i == 0
		core := newHealthCore(id, quietLog(), l.fsms[i].f, func() bool { return leader }, nil, l.replicate, 0)
		cfg.OnChange = core.poke
		g, err := gossip.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		l.gossips = append(l.gossips, g)
		p := &fakeProber{}
		core.g, core.p = g, p
		core.syncTargets()
		if len(p.last()) != n {
			t.Fatalf("%s probes %d targets, want %d", id, len(p.last()), n)
		}
		l.cores = append(l.cores, core)
		wg.Add(1)
		go func() { defer wg.Done(); core.decideLoop(ctx) }()
	}
	for _, r := range l.reals {
		ap := netip.MustParseAddrPort(r)
		s, _ := model.NormalizeCheck(l.spec)
		k := health.Target{Addr: ap, Spec: s}.Key()
		l.keys, l.names = append(l.keys, k), append(l.names, health.TargetName(k))
	}
	waitMass(t, "three live directors everywhere", 10*time.Second, func() error {
		for _, c := range l.cores {
			if live := liveDirectors(c.g.Members(), c.fsm.Nodes()); len(live) != 3 {
				return fmt.Errorf("%s counts %v", c.self, live)
			}
		}
		return nil
	})
	return l
}

// replicate is the raft log: every director applies c, in order.
func (l *massLab) replicate(c fsm.Command) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	var first error
	for i, tf := range l.fsms {
		if err := tf.apply(c); err != nil && i == 0 {
			first = err
		}
	}
	return first
}

// report has director d's prober report real server i up or down.
func (l *massLab) report(d, i int, up bool) {
	st := health.State{Key: l.keys[i], Up: up, Checked: true, LastLatency: time.Millisecond}
	if !up {
		st.LastErr = "dial tcp " + l.reals[i] + ": connect: connection refused"
	}
	l.cores[d].onEvent(health.Event{State: st, Transition: true})
}

// viewsHold reports whether every director holds, from every director,
// the view "down" for exactly the real servers in down. With cheap, it
// first checks that no director has anything left to send.
func (l *massLab) viewsHold(down map[int]bool, cheap bool) error {
	for _, g := range l.gossips {
		if st := g.Stats(); cheap && st.Pending+st.InFlight > 0 {
			return fmt.Errorf("%s: %d observations to send, %d batches in flight", g.Name(), st.Pending, st.InFlight)
		}
	}
	for _, g := range l.gossips {
		views := g.Views()
		for _, origin := range []string{"d1", "d2", "d3"} {
			v := views[origin]
			if len(v) != len(l.reals) {
				return fmt.Errorf("%s has %d of %s's views", g.Name(), len(v), origin)
			}
			for i, name := range l.names {
				if o := v[name]; o.Up == down[i] {
					return fmt.Errorf("%s sees %s's view of %s up=%v", g.Name(), origin, l.reals[i], o.Up)
				}
			}
		}
	}
	return nil
}

// outOfEveryDataplane reports whether every director's desired dataplane
// table holds exactly the real servers not in down.
func (l *massLab) outOfEveryDataplane(down map[int]bool) error {
	for d, tf := range l.fsms {
		tf.mu.Lock()
		t, names := dataplane.FromFSM(tf.f.Services())
		tf.mu.Unlock()
		dests := t[names[massService]].Dests
		if len(dests) != len(l.reals)-len(down) {
			return fmt.Errorf("d%d's dataplane has %d destinations, want %d", d+1, len(dests), len(l.reals)-len(down))
		}
	}
	return nil
}

func (l *massLab) transitions() uint64 {
	l.cores[0].mu.Lock()
	defer l.cores[0].mu.Unlock()
	return l.cores[0].stats.Transitions
}

// up reports every real server up on every director and waits until all
// views hold that.
func (l *massLab) allUp(within time.Duration) {
	for d := range l.cores {
		for i := range l.reals {
			l.report(d, i, true)
		}
	}
	waitMass(l.t, "every view up everywhere", within, func() error { return l.viewsHold(nil, true) })
}

func waitMass(t testing.TB, what string, within time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v: %v", what, within, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// testLogWriter logs to t until the test ends (memberlist can log during
// Cleanup).
type testLogWriter struct{ t testing.TB }

func (w testLogWriter) Write(p []byte) (int, error) {
	if !w.t.Failed() {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

// pick returns k distinct real server indexes of n.
func pick(rng *rand.Rand, n, k int) map[int]bool {
	out := map[int]bool{}
	for _, i := range rng.Perm(n)[:k] {
		out[i] = true
	}
	return out
}

// TestHealthMassFailure: 1000 of 10,000 real servers fail at once. Every
// director reports them down (as its prober would, each after fall ×
// interval); every director's views converge by gossip batches alone, the
// leader commits the 1000 transitions, and every director's dataplane
// (its desired table, from its FSM) loses exactly those 1000.
func TestHealthMassFailure(t *testing.T) {
	const n, k = 10000, 1000
	l := newMassLab(t, n)
	l.allUp(60 * time.Second)
	if err := l.outOfEveryDataplane(nil); err != nil {
		t.Fatal(err)
	}
	down := pick(rand.New(rand.NewPCG(5, 6)), n, k)
	for d := range l.cores {
		for i := range down {
			l.report(d, i, false)
		}
	}
	waitMass(t, "every view of the failed servers down everywhere", 30*time.Second, func() error { return l.viewsHold(down, true) })
	waitMass(t, "the 1000 out of every dataplane", 30*time.Second, func() error { return l.outOfEveryDataplane(down) })
	if got := l.transitions(); got != k {
		t.Fatalf("the leader committed %d transitions, want %d", got, k)
	}
	for d, tf := range l.fsms {
		for i, r := range l.reals {
			rs, _, _ := tf.f.Real(massService, r)
			if down[i] != (rs.Health != nil && !rs.Health.Up) {
				t.Fatalf("d%d: %s health %+v", d+1, r, rs.Health)
			}
		}
	}
	for _, g := range l.gossips {
		if st := g.Stats(); st.StatesMerged > 2 || st.BadMessages != 0 {
			t.Errorf("%s: %d full states merged (only the joins), %d bad messages", g.Name(), st.StatesMerged, st.BadMessages)
		}
	}
}

// TestMeasureMassFailure times the same, repeatedly: 1000 of 10,000 real
// servers fail (then recover), each director's 1000 reports either all at
// once or spread over one check interval in random order (as the probes'
// phases spread them). Opt-in: -health.mass.
func TestMeasureMassFailure(t *testing.T) {
	if !*massMeasure {
		t.Skip("opt-in: -health.mass")
	}
	const n, k = 10000, 1000
	l := newMassLab(t, n)
	l.allUp(120 * time.Second)
	rng := rand.New(rand.NewPCG(7, 8))
	type sample struct{ views, committed, dataplane, afterLast time.Duration }
	results := map[string][]sample{}
	variants := []string{"at once", "over 1 s"}
	for round := range *massRounds {
		for _, variant := range variants {
			down := pick(rng, n, k)
			idx := slices.Collect(func(yield func(int) bool) {
				for i := range down {
					if !yield(i) {
						return
					}
				}
			})
			before := l.transitions()
			start := time.Now()
			var wg sync.WaitGroup
			var lastMu sync.Mutex
			var last time.Time // the last report
			for d := range l.cores {
				order := slices.Clone(idx)
				rng.Shuffle(len(order), func(a, b int) { order[a], order[b] = order[b], order[a] })
				wg.Add(1)
				go func() {
					defer wg.Done()
					for j, i := range order {
						if variant != "at once" {
							// Report j at start + j/k of the interval.
							if wait := time.Until(start.Add(time.Second * time.Duration(j) / k)); wait > 0 {
								time.Sleep(wait)
							}
						}
						l.report(d, i, false)
					}
					lastMu.Lock()
					if now := time.Now(); now.After(last) {
						last = now
					}
					lastMu.Unlock()
				}()
			}
			var s sample
			waitMass(t, "views", 60*time.Second, func() error { return l.viewsHold(down, true) })
			s.views = time.Since(start)
			waitMass(t, "committed", 60*time.Second, func() error {
				if got := l.transitions() - before; got != k {
					return fmt.Errorf("%d of %d", got, k)
				}
				return nil
			})
			s.committed = time.Since(start)
			waitMass(t, "dataplane", 60*time.Second, func() error { return l.outOfEveryDataplane(down) })
			s.dataplane = time.Since(start)
			wg.Wait()
			s.afterLast = s.dataplane - last.Sub(start)
			results[variant] = append(results[variant], s)
			t.Logf("round %d %s: %+v", round, variant, s)

			// Back up, for the next round.
			for d := range l.cores {
				for i := range down {
					l.report(d, i, true)
				}
			}
			waitMass(t, "back up", 60*time.Second, func() error { return l.outOfEveryDataplane(nil) })
		}
	}

	var b strings.Builder
	fmt.Fprintf(&b, "Measured %s on %s.\n\n", time.Now().UTC().Format("2006-01-02 15:04 UTC"), benchrec.Machine())
	fmt.Fprintf(&b, "Command: `go test ./agent/ -run TestMeasureMassFailure -v -timeout 20m -health.mass -health.mass.rounds %d -health.mass.record $PWD/docs/benchmarks.md`\n\n", *massRounds)
	fmt.Fprintf(&b, "Three directors in one process: real gossip on 127.0.0.1 (the agent's settings; push/pull only every hour, so nothing rides on it), "+
		"each director's health wiring (agent/health.go: publish on change, the leader's 20 ms decision window, health.Decide, fsm.SetHealth batches of ≤ 4096) "+
		"and its FSM; the leader's commands are applied to the three FSMs in order (raft itself is not in this measurement: one commit, tens of ms, see the writes benchmark above). "+
		"One service, majority policy, %d real servers; each round %d of them fail and then recover. The probes are the test: each director reports the %d down "+
		"(what its prober does fall × interval after the failure), all at once or spread over one check interval (1 s) in random order. "+
		"Times from the first report until every director holds every director's view of the %d down, until the leader has committed all %d transitions, "+
		"and until every director's desired dataplane table (dataplane.FromFSM) lacks all %d (polled every 20 ms; the views are compared once no director has anything left to send or unacknowledged). %d rounds per variant. "+
		"Target: the dataplane within fall × interval + 1 s of the failure, that is within 1 s of the reports (plus the spread).\n\n", n, k, k, k, k, k, *massRounds)
	b.WriteString("| reports | views converged p50 / max | committed p50 / max | out of every dataplane p50 / max | the same after the last report p50 / max |\n|---|---|---|---|---|\n")
	for _, v := range variants {
		rs := results[v]
		col := func(f func(sample) time.Duration) string {
			ds := make([]time.Duration, len(rs))
			for i, r := range rs {
				ds[i] = f(r)
			}
			slices.Sort(ds)
			return fmt.Sprintf("%.2f s / %.2f s", ds[len(ds)/2].Seconds(), ds[len(ds)-1].Seconds())
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s |\n", v, col(func(s sample) time.Duration { return s.views }),
			col(func(s sample) time.Duration { return s.committed }), col(func(s sample) time.Duration { return s.dataplane }),
			col(func(s sample) time.Duration { return s.afterLast }))
	}
	t.Log("\n" + b.String())
	if *massRecord != "" {
		if err := benchrec.Record(*massRecord, "health-mass", "Health checks: 1000 of 10,000 real servers failing at once", b.String()); err != nil {
			t.Fatal(err)
		}
	}
}
