package gossip

import (
	"fmt"
	"testing"
	"time"
)

// Up/down changes go out before refreshes, a newer observation of a target
// replaces a waiting one, and a batch is bounded by its byte budget.
func TestChangesBeforeRefreshes(t *testing.T) {
	g := bare("a")
	g.mu.Lock()
	p := &peer{}
	g.peers["x"] = p
	g.resetPeerLocked(p, 1)
	g.mu.Unlock()

	var refresh []Observation
	for i := range 500 {
		refresh = append(refresh, Observation{Target: fmt.Sprintf("r%03d", i), Up: true})
	}
	g.Publish(refresh) // first views: changes
	g.mu.Lock()
	p.changes = map[string]struct{}{} // as if x had them
	g.mu.Unlock()
	for i := range refresh {
		refresh[i].Latency = time.Millisecond // now refreshes
	}
	g.Publish(refresh)
	g.Publish([]Observation{{Target: "c1", Up: false, Err: "refused"}, {Target: "r007", Up: false, Err: "timeout"}})
	g.Publish([]Observation{{Target: "c1", Up: false, Err: "refused again"}}) // replaces the waiting one

	g.mu.Lock()
	p.window = 1
	out := g.batchesLocked(p, time.Now(), nil)
	pending, changes := len(p.changes)+len(p.refresh), len(p.changes)
	g.mu.Unlock()
	if len(out) != 1 {
		t.Fatalf("%d packets with a window of 1", len(out))
	}
	if len(out[0].msg) > batchBytes {
		t.Fatalf("batch of %d bytes", len(out[0].msg))
	}
	m, err := decodeMsg(out[0].msg)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.obs) < 10 || m.obs[0].Up || m.obs[1].Up {
		t.Fatalf("first batch: %d observations, the first two %+v %+v; want the two changes first", len(m.obs), m.obs[0], m.obs[1])
	}
	first := map[string]string{m.obs[0].Target: m.obs[0].Err, m.obs[1].Target: m.obs[1].Err}
	if first["c1"] != "refused again" || first["r007"] != "timeout" {
		t.Fatalf("first batch starts with %v", first)
	}
	if changes != 0 || pending != 500-(len(m.obs)-1) {
		t.Fatalf("after the batch: %d pending, %d changes", pending, changes)
	}
	// c1 twice; r007's change replaced its refresh.
	if n := g.coalesced.Load(); n != 2 {
		t.Fatalf("%d coalesced, want 2", n)
	}
}

// bare is a Gossip without memberlist or goroutines, for driving its
// bookkeeping directly.
func bare(name string) *Gossip {
	g := &Gossip{name: name, epoch: 1, cfg: Config{AckTimeout: time.Second}, views: map[string]*view{},
		live: map[string]uint64{}, leaving: map[string]uint64{}, departed: map[string]departure{}, peers: map[string]*peer{},
		gone: map[string]*peer{}}
	g.views[name] = &view{epoch: 1, obs: map[string]Observation{}}
	return g
}

// A batch that is not acknowledged is sent again, with the observations
// current then, until it is; nothing is lost.
func TestLostBatchesAreSentAgain(t *testing.T) {
	markDone(t)
	ca := quiet(t, "a")
	ca.AckTimeout = 50 * time.Millisecond
	ca.RefreshInterval = 20 * time.Millisecond
	a := start(t, ca)
	b := start(t, quiet(t, "b", a.Addr()))
	eventually(t, 5*time.Second, "two members", func() error {
		if alive(a) != "a,b" || alive(b) != "a,b" {
			return errString("not yet")
		}
		return nil
	})
	a.tr.lose.Store(true)
	want := obsFor("a", 300, false)
	a.Publish(want)
	eventually(t, 5*time.Second, "batches sent again", func() error {
		if st := a.Stats(); st.BatchesResent < 3 {
			return fmt.Errorf("%d resent", st.BatchesResent)
		}
		return nil
	})
	if n := len(b.Views()["a"]); n != 0 {
		t.Fatalf("b has %d observations through a lossless path", n)
	}
	a.tr.lose.Store(false)
	eventually(t, 10*time.Second, "b has a's view", func() error { return sameView(b, "a", want) })
	eventually(t, 5*time.Second, "all acknowledged", func() error {
		if st := a.Stats(); st.Pending+st.InFlight != 0 {
			return fmt.Errorf("%d pending, %d in flight", st.Pending, st.InFlight)
		}
		return nil
	})
}

// Thousands of up/down changes at once reach every member by batches
// alone (memberlist's gossip rounds carry only its own messages; no
// push/pull after the joins).
func TestMassChangeReachesEveryone(t *testing.T) {
	markDone(t)
	const n, flip = 5000, 1000
	cfg := func(name string, join ...string) Config {
		c := fastConfig(t, name, join...)
		c.PushPullInterval = time.Hour
		// Probes that tolerate a loaded machine (the race detector, three
		// directors in one process): a false death is survived, but costs
		// time.
		c.ProbeInterval, c.ProbeTimeout, c.SuspicionMult = 200*time.Millisecond, 100*time.Millisecond, 4
		return c
	}
	a := start(t, cfg("a"))
	b := start(t, cfg("b", a.Addr()))
	c := start(t, cfg("c", a.Addr()))
	gs := []*Gossip{a, b, c}
	eventually(t, 5*time.Second, "three members", func() error {
		for _, g := range gs {
			if alive(g) != "a,b,c" {
				return fmt.Errorf("%s sees %s", g.Name(), alive(g))
			}
		}
		return nil
	})
	want := map[string][]Observation{}
	for _, g := range gs {
		want[g.Name()] = obsFor(g.Name(), n, true)
		g.Publish(want[g.Name()])
	}
	converged := func() error {
		for _, g := range gs { // cheap first: nothing left to send
			if st := g.Stats(); st.Pending+st.InFlight > 0 {
				return fmt.Errorf("%s: %d pending, %d in flight", g.Name(), st.Pending, st.InFlight)
			}
		}
		return allHold(gs, want)
	}
	eventually(t, 20*time.Second, "first views everywhere", converged)
	for _, g := range gs {
		w := want[g.Name()]
		for i := range flip {
			w[i].Up, w[i].Err = false, "connect: connection refused"
		}
		g.Publish(w[:flip])
	}
	eventually(t, 20*time.Second, "every change everywhere", converged)
}

// A member killed (no Leave) and started again with the same name and
// address but a new epoch: the others hold the new incarnation's full view
// promptly (no push/pull: an hour), again and again.
func TestRestartedMemberViewReplacedAtOnce(t *testing.T) {
	markDone(t)
	cfg := func(name string, join ...string) Config {
		c := fastConfig(t, name, join...)
		c.PushPullInterval = time.Hour
		return c
	}
	a := start(t, cfg("a"))
	b := start(t, cfg("b", a.Addr()))
	c := start(t, cfg("c", a.Addr()))
	addr := c.Addr()
	for _, g := range []*Gossip{a, b} {
		g.Publish(obsFor(g.Name(), 50, true))
	}
	for round := range 8 {
		view := obsFor("c", 200, round%2 == 0)
		for i := range view {
			view[i].Err += fmt.Sprintf(" (incarnation %d)", round)
		}
		c.Publish(view)
		eventually(t, 5*time.Second, fmt.Sprintf("round %d: c's view on a and b", round), func() error {
			return allHold([]*Gossip{a, b}, map[string][]Observation{"c": view})
		})
		c.Shutdown() // as if killed: no Leave
		cc := cfg("c", a.Addr())
		cc.BindAddr = addr
		c = start(t, cc)
		// The new incarnation publishes after it joined (as the agent
		// does: its prober starts afresh), and gets a's and b's views.
		eventually(t, 5*time.Second, fmt.Sprintf("round %d: restarted c has a's and b's views", round), func() error {
			return allHold([]*Gossip{c}, map[string][]Observation{"a": obsFor("a", 50, true), "b": obsFor("b", 50, true)})
		})
	}
	view := obsFor("c", 200, false)
	c.Publish(view)
	eventually(t, 5*time.Second, "last incarnation's view on a and b", func() error {
		return allHold([]*Gossip{a, b}, map[string][]Observation{"c": view})
	})
}
