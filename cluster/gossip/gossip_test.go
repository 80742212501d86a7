package gossip

import (
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
)

var testKey = []byte("0123456789abcdef0123456789abcdef")

// fastConfig is a loopback Config with memberlist tuned for tests: probes
// every 50 ms, gossip every 20 ms, push/pull every 300 ms.
func fastConfig(t testing.TB, name string, join ...string) Config {
	t.Helper()
	return Config{
		NodeID:            name,
		BindAddr:          "127.0.0.1:0",
		Key:               testKey,
		Join:              join,
		Logger:            hclog.New(&hclog.LoggerOptions{Name: name, Level: hclog.Warn, Output: testWriter{t}}),
		ProbeInterval:     50 * time.Millisecond,
		ProbeTimeout:      25 * time.Millisecond,
		GossipInterval:    20 * time.Millisecond,
		PushPullInterval:  300 * time.Millisecond,
		SuspicionMult:     2,
		TCPTimeout:        time.Second,
		DepartedRetention: 500 * time.Millisecond,
	}
}

// testWriter sends logs to t.Log until the test ends.
type testWriter struct{ t testing.TB }

var (
	doneMu sync.Mutex
	done   = map[testing.TB]bool{}
)

func (w testWriter) Write(p []byte) (int, error) {
	doneMu.Lock()
	d := done[w.t]
	doneMu.Unlock()
	if !d {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

func markDone(t testing.TB) {
	t.Cleanup(func() {
		doneMu.Lock()
		done[t] = true
		doneMu.Unlock()
	})
}

func start(t testing.TB, cfg Config) *Gossip {
	t.Helper()
	g, err := New(cfg)
	if err != nil {
		t.Fatalf("New(%s): %v", cfg.NodeID, err)
	}
	t.Cleanup(func() { g.Shutdown() })
	return g
}

func cluster3(t *testing.T) []*Gossip { return cluster3With(t, nil) }

// cluster3With is cluster3 with c's config changed by setC (if not nil).
func cluster3With(t *testing.T, setC func(*Config)) []*Gossip {
	t.Helper()
	markDone(t)
	a := start(t, fastConfig(t, "a"))
	b := start(t, fastConfig(t, "b", a.Addr()))
	cc := fastConfig(t, "c", a.Addr())
	if setC != nil {
		setC(&cc)
	}
	c := start(t, cc)
	gs := []*Gossip{a, b, c}
	eventually(t, 5*time.Second, "3 alive members everywhere", func() error {
		for _, g := range gs {
			if got := alive(g); got != "a,b,c" {
				return fmt.Errorf("%s sees %q", g.Name(), got)
			}
		}
		return nil
	})
	return gs
}

func alive(g *Gossip) string {
	var names []string
	for _, m := range g.Members() {
		if m.State == StateAlive || m.State == StateSuspect {
			names = append(names, m.Name)
		}
	}
	return strings.Join(names, ",")
}

// eventually polls f until it returns nil or the deadline passes.
func eventually(t testing.TB, within time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v: %v", what, within, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func obsFor(node string, n int, up bool) []Observation {
	var out []Observation
	for i := range n {
		out = append(out, Observation{
			Target:  fmt.Sprintf("tcp/10.0.%d.%d:80#h1", i/250, i%250+1),
			Up:      up,
			Latency: time.Duration(i+1) * time.Millisecond,
			Err:     map[bool]string{true: "", false: "connection refused by " + node}[up],
		})
	}
	return out
}

// sameView reports how g's view of origin differs from want (nil if equal,
// ignoring Seq).
func sameView(g *Gossip, origin string, want []Observation) error {
	g.mu.Lock()
	var got map[string]Observation
	if v := g.views[origin]; v != nil {
		got = maps.Clone(v.obs)
	}
	g.mu.Unlock()
	if len(got) != len(want) {
		return fmt.Errorf("%s: view of %s has %d targets, want %d", g.Name(), origin, len(got), len(want))
	}
	for _, w := range want {
		o, ok := got[w.Target]
		if !ok || o.Up != w.Up || o.Latency != w.Latency || o.Err != w.Err || o.Seq == 0 {
			return fmt.Errorf("%s: view of %s/%s = %+v, want %+v", g.Name(), origin, w.Target, o, w)
		}
	}
	return nil
}

// allHold reports how the views of gs differ from want (origin → its
// observations), nil if they all hold exactly those.
func allHold(gs []*Gossip, want map[string][]Observation) error {
	for _, g := range gs {
		for origin, w := range want {
			if err := sameView(g, origin, w); err != nil {
				return err
			}
		}
	}
	return nil
}

func TestConvergeAndChange(t *testing.T) {
	gs := cluster3(t)
	want := map[string][]Observation{}
	for _, g := range gs {
		want[g.Name()] = obsFor(g.Name(), 50, true)
		if err := g.Publish(want[g.Name()]); err != nil {
			t.Fatal(err)
		}
	}
	converged := func() error { return allHold(gs, want) }
	eventually(t, 5*time.Second, "all views converge", converged)

	// Up → Down on b for one target.
	down := want["b"][7]
	down.Up, down.Err = false, "timeout"
	want["b"][7] = down
	if err := gs[1].Publish([]Observation{down}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "Up→Down propagates", converged)
	for _, g := range gs {
		if o := g.Views()["b"][down.Target]; o.Seq != 51 {
			t.Errorf("%s: seq of changed target = %d, want 51", g.Name(), o.Seq)
		}
		if st := g.Stats(); st.BadMessages != 0 {
			t.Errorf("%s: %d bad messages", g.Name(), st.BadMessages)
		}
	}
	st := gs[1].Stats()
	if st.Published != 51 || st.StateChanges != 51 || st.BatchesSent == 0 || st.RecordsSent < 102 || st.BytesSent == 0 || st.BytesReceived == 0 {
		t.Errorf("stats of b: %+v", st)
	}
}

func TestLeaveAndRejoin(t *testing.T) {
	gs := cluster3(t)
	a, b, c := gs[0], gs[1], gs[2]
	for _, g := range gs {
		if err := g.Publish(obsFor(g.Name(), 5, true)); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 5*time.Second, "c's view everywhere", func() error {
		for _, g := range gs {
			if len(g.Views()["c"]) != 5 {
				return fmt.Errorf("%s has %d of c's targets", g.Name(), len(g.Views()["c"]))
			}
		}
		return nil
	})

	if err := c.Leave(time.Second); err != nil {
		t.Fatal(err)
	}
	c.Shutdown()
	sawLeft := map[string]bool{}
	eventually(t, 5*time.Second, "c gone from a and b", func() error {
		var errs []error
		for _, g := range []*Gossip{a, b} {
			for _, m := range g.Members() {
				if m.Name == "c" {
					if m.State == StateLeft {
						sawLeft[g.Name()] = true
					}
					errs = append(errs, fmt.Errorf("%s still lists c as %s", g.Name(), m.State))
				}
			}
			if _, ok := g.Views()["c"]; ok {
				errs = append(errs, fmt.Errorf("%s still has c's view", g.Name()))
			}
		}
		return errors.Join(errs...)
	})
	if !sawLeft["a"] || !sawLeft["b"] {
		t.Errorf("c was not listed as left on both (saw left: %v)", sawLeft)
	}

	// While c is away, a and b change; their broadcasts never reach c.
	aObs := obsFor("a", 5, false)
	a.Publish(aObs)
	bObs := obsFor("b", 8, true)
	b.Publish(bObs)
	eventually(t, 5*time.Second, "a and b agree", func() error {
		for _, g := range []*Gossip{a, b} {
			if err := sameView(g, "a", aObs); err != nil {
				return err
			}
			if err := sameView(g, "b", bObs); err != nil {
				return err
			}
		}
		return nil
	})
	// Wait until nothing is waiting to be sent, so c can only learn the
	// changes when it joins again.
	eventually(t, 5*time.Second, "nothing pending", func() error {
		for _, g := range []*Gossip{a, b} {
			if st := g.Stats(); st.Pending+st.InFlight != 0 {
				return fmt.Errorf("%s has %d pending, %d batches in flight", g.Name(), st.Pending, st.InFlight)
			}
		}
		return nil
	})

	c2 := start(t, fastConfig(t, "c", b.Addr()))
	cObs := obsFor("c", 3, true)
	c2.Publish(cObs)
	eventually(t, 5*time.Second, "rejoined c converges", func() error {
		for _, g := range []*Gossip{a, b, c2} {
			for origin, w := range map[string][]Observation{"a": aObs, "b": bObs, "c": cObs} {
				if err := sameView(g, origin, w); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if c2.Stats().StatesMerged == 0 {
		t.Error("c converged without a push/pull merge")
	}
}

func TestEncryption(t *testing.T) {
	markDone(t)
	a := start(t, fastConfig(t, "a"))
	cfg := fastConfig(t, "x")
	cfg.Key = []byte("fedcba9876543210")
	x := start(t, cfg)
	if _, err := x.Join([]string{a.Addr()}); err == nil {
		t.Error("join with a different key succeeded")
	}
	// x keeps probing nobody; make sure a never lists it.
	deadline := time.Now().Add(1500 * time.Millisecond)
	for time.Now().Before(deadline) {
		for _, m := range a.Members() {
			if m.Name == "x" {
				t.Fatalf("node with wrong key appears in members: %+v", m)
			}
		}
		for _, m := range x.Members() {
			if m.Name == "a" {
				t.Fatalf("wrong-key node sees a: %+v", m)
			}
		}
		time.Sleep(50 * time.Millisecond)
	}

	for _, key := range [][]byte{nil, []byte("short")} {
		cfg := fastConfig(t, "y")
		cfg.Key = key
		if g, err := New(cfg); !errors.Is(err, ErrConfig) {
			if g != nil {
				g.Shutdown()
			}
			t.Errorf("New with key of %d bytes: err = %v, want ErrConfig", len(key), err)
		}
	}
}

func TestPublishValidation(t *testing.T) {
	markDone(t)
	g := start(t, fastConfig(t, "a"))
	err := g.Publish([]Observation{
		{Target: ""},
		{Target: strings.Repeat("x", MaxTargetLen+1)},
		{Target: "ok", Err: strings.Repeat("e", 1000), Latency: -5},
	})
	if err == nil {
		t.Error("bad targets accepted")
	}
	o := g.Views()["a"]["ok"]
	if len(o.Err) != MaxErrLen || o.Latency != 0 || o.Seq != 1 {
		t.Errorf("stored %+v", o)
	}
	g.Shutdown()
	if err := g.Publish([]Observation{{Target: "t"}}); !errors.Is(err, ErrShutdown) {
		t.Errorf("Publish after Shutdown: %v", err)
	}
}

func TestBadMessagesCounted(t *testing.T) {
	markDone(t)
	g := start(t, fastConfig(t, "a"))
	d := (*delegate)(g)
	good := encodeDelta("z", 1, Observation{Target: "t", Seq: 1})
	for _, m := range [][]byte{
		nil, {0xff}, {2, 1}, append([]byte{9}, good[1:]...),
		good[:len(good)-1], append(good, 0), make([]byte, maxDeltaSize+1),
	} {
		d.NotifyMsg(m)
	}
	d.MergeRemoteState([]byte{1, 2, 0xff, 0xff, 0xff}, false)
	if st := g.Stats(); st.BadMessages != 8 {
		t.Errorf("bad = %d, want 8", st.BadMessages)
	}
	d.NotifyMsg(good)
	if _, ok := g.Views()["z"]["t"]; !ok {
		t.Error("good delta not applied")
	}
	// Data about ourselves from others is ignored.
	d.NotifyMsg(encodeDelta("a", 1, Observation{Target: "t", Seq: 99}))
	if _, ok := g.Views()["a"]["t"]; ok {
		t.Error("accepted a foreign claim about our own view")
	}
}

var _ io.Writer = testWriter{}

// TestStaleOrigins drives the delegate directly: views of departed nodes
// and third-party views of unknown nodes are not accepted; a new
// incarnation replaces the old view.
func TestStaleOrigins(t *testing.T) {
	markDone(t)
	g := start(t, fastConfig(t, "a"))
	d, ev := (*delegate)(g), (*events)(g)
	meta := func(epoch uint64) []byte { return (&delegate{epoch: epoch}).NodeMeta(64) }
	node := &memberlistNode{Name: "x", Addr: []byte{127, 0, 0, 1}, Port: 1, Meta: meta(10)}

	// Third-party state about a node we do not know: ignored.
	d.MergeRemoteState(encodeState([]originState{{origin: "x", epoch: 10, obs: []Observation{{Target: "t", Seq: 1}}}}), false)
	if _, ok := g.Views()["x"]; ok {
		t.Fatal("accepted a third-party view of an unknown node")
	}
	ev.NotifyJoin(node.mk())
	d.MergeRemoteState(encodeState([]originState{{origin: "x", epoch: 10, obs: []Observation{{Target: "t", Seq: 1}}}}), false)
	d.NotifyMsg(encodeDelta("x", 9, Observation{Target: "old", Seq: 5})) // previous incarnation
	if v := g.Views()["x"]; len(v) != 1 || v["t"].Seq != 1 {
		t.Fatalf("view of live x = %+v", v)
	}
	d.NotifyMsg(encodeDelta("x", 10, Observation{Target: "t", Seq: 1, Up: true})) // same seq: no change
	if g.Views()["x"]["t"].Up {
		t.Fatal("equal seq replaced an observation")
	}

	d.NotifyMsg(encodeBye("x", 10))
	ev.NotifyLeave(node.mk())
	if _, ok := g.Views()["x"]; ok {
		t.Fatal("view kept after leave")
	}
	if ms := g.Members(); !hasMember(ms, "x", StateLeft) {
		t.Fatalf("members after leave: %+v", ms)
	}
	d.NotifyMsg(encodeDelta("x", 10, Observation{Target: "t", Seq: 2}))
	if _, ok := g.Views()["x"]; ok {
		t.Fatal("late delta from a departed incarnation resurrected its view")
	}
	// A new incarnation (restart) is accepted even before its join event.
	d.NotifyMsg(encodeDelta("x", 11, Observation{Target: "n", Seq: 1}))
	if v := g.Views()["x"]; len(v) != 1 {
		t.Fatalf("new incarnation's view = %+v", v)
	}
	eventually(t, 2*time.Second, "departed member expires from Members", func() error {
		if hasMember(g.Members(), "x", StateLeft) {
			return errors.New("x still listed")
		}
		return nil
	})
}

func hasMember(ms []Member, name string, st State) bool {
	for _, m := range ms {
		if m.Name == name && m.State == st {
			return true
		}
	}
	return false
}

// TestNewIncarnationReplacesViewAtOnce drives the delegate directly: a
// restarted member's observations (a newer epoch) replace its old view as
// soon as they arrive, before memberlist reports the new meta, and this
// node owes the new incarnation its own view again; late observations of
// the old incarnation are dropped and not acknowledged; the view of a
// member wrongly declared dead comes back with it.
func TestNewIncarnationReplacesViewAtOnce(t *testing.T) {
	markDone(t)
	cfg := quiet(t, "a")
	cfg.AckTimeout = time.Hour // nothing answers the fake members: no batch times out
	g := start(t, cfg)
	d, ev := (*delegate)(g), (*events)(g)
	meta := func(epoch uint64) []byte { return (&delegate{epoch: epoch}).NodeMeta(64) }
	node := func(name string, epoch uint64) *memberlistNode {
		return &memberlistNode{Name: name, Addr: []byte{127, 0, 0, 1}, Port: 9, Meta: meta(epoch)}
	}
	targets := func(name string) string {
		var ts []string
		for t := range g.Views()[name] {
			ts = append(ts, t)
		}
		slices.Sort(ts)
		return strings.Join(ts, ",")
	}
	g.Publish(obsFor("a", 3, true))
	owedTo := func(name string) []string { // owed or in flight
		g.mu.Lock()
		defer g.mu.Unlock()
		p := g.peers[name]
		out := slices.Collect(maps.Keys(p.changes))
		out = append(out, slices.Collect(maps.Keys(p.refresh))...)
		for _, b := range p.inflight {
			out = append(out, b.changes...)
			out = append(out, b.refresh...)
		}
		slices.Sort(out)
		return out
	}

	ev.NotifyJoin(node("x", 10).mk())
	d.NotifyMsg(encodeBatch("x", 10, 1, Observation{Target: "t1", Seq: 1}, Observation{Target: "t2", Seq: 2}))
	if got := targets("x"); got != "t1,t2" {
		t.Fatalf("view of x = %s", got)
	}
	if st := g.Stats(); st.AcksSent != 1 {
		t.Fatalf("x's batch: %d acks sent, want 1", st.AcksSent)
	}

	// x restarts as epoch 11: its first batch replaces the view at once.
	d.NotifyMsg(encodeBatch("x", 11, 1, Observation{Target: "n1", Seq: 1}))
	if got := targets("x"); got != "n1" {
		t.Fatalf("after the new incarnation's batch, view of x = %s", got)
	}
	// (Owed or in flight: the sender, woken by x's join, may send them
	// at any moment.)
	g.mu.Lock()
	pe := g.peers["x"].epoch
	g.mu.Unlock()
	if pc := len(owedTo("x")); pe != 11 || pc != 3 {
		t.Fatalf("peer x: epoch %d, %d owed; want 11 and a's 3 targets again", pe, pc)
	}
	// A late batch of the dead incarnation: dropped, not acknowledged.
	acks := g.Stats().AcksSent
	d.NotifyMsg(encodeBatch("x", 10, 2, Observation{Target: "t3", Seq: 3}))
	if got, st := targets("x"), g.Stats(); got != "n1" || st.AcksSent != acks {
		t.Fatalf("late batch of the old incarnation: view %s, acks %d → %d", got, acks, st.AcksSent)
	}
	// memberlist's update with the new meta keeps the new view; a later
	// restart (epoch 12) seen first through memberlist drops it.
	ev.NotifyUpdate(node("x", 11).mk())
	if got := targets("x"); got != "n1" {
		t.Fatalf("after the meta update, view of x = %s", got)
	}
	ev.NotifyUpdate(node("x", 12).mk())
	if _, ok := g.Views()["x"]; ok {
		t.Fatal("epoch 11's view kept after x restarted as 12")
	}

	// y is wrongly declared dead and comes back as the same incarnation:
	// it does not know its view was dropped, so it is kept aside and
	// restored; as a new incarnation it is not.
	// What y lacks of ours is kept too, and what we publish meanwhile is
	// added: it is sent that, not everything again.
	ev.NotifyJoin(node("y", 5).mk())
	d.NotifyMsg(encodeBatch("y", 5, 1, Observation{Target: "y1", Seq: 1}))
	var ids []uint64
	eventually(t, 2*time.Second, "a's view sent to y", func() error {
		g.mu.Lock()
		defer g.mu.Unlock()
		p := g.peers["y"]
		if len(p.changes) > 0 || len(p.inflight) == 0 {
			return fmt.Errorf("%d owed, %d in flight", len(p.changes), len(p.inflight))
		}
		ids = slices.Collect(maps.Keys(p.inflight))
		return nil
	})
	d.NotifyMsg(encodeAcks("y", 5, g.epoch, ids, batchBytes)[0])
	if o := owedTo("y"); len(o) != 0 {
		t.Fatalf("after y acknowledged everything, it is owed %v", o)
	}
	ev.NotifyLeave(node("y", 5).mk())
	if _, ok := g.Views()["y"]; ok {
		t.Fatal("a dead member's view is visible")
	}
	g.Publish([]Observation{{Target: "while-y-was-dead", Up: false}})
	ev.NotifyJoin(node("y", 5).mk())
	if got := targets("y"); got != "y1" {
		t.Fatalf("view of y back from a wrong death = %q", got)
	}
	if o := owedTo("y"); !slices.Equal(o, []string{"while-y-was-dead"}) {
		t.Fatalf("y back from a wrong death is owed %v, want only what changed meanwhile", o)
	}
	ev.NotifyLeave(node("y", 5).mk())
	ev.NotifyJoin(node("y", 6).mk())
	if got := targets("y"); got != "" {
		t.Fatalf("a new incarnation inherited %q", got)
	}
}

// TestGarbageCountedAndRateLimited sends 2000 garbage UDP packets and 2000
// TCP connections with garbage to a gossip endpoint: each is counted in
// Stats.BadPackets, the log has a line or two, not thousands, and the
// endpoint still works.
func TestGarbageCountedAndRateLimited(t *testing.T) {
	markDone(t)
	var logged lineCounter
	cfg := quiet(t, "a")
	cfg.Logger = hclog.New(&hclog.LoggerOptions{Name: "a", Level: hclog.Debug, Output: &logged})
	a := start(t, cfg)
	rng := rand.New(rand.NewPCG(3, 4))
	garbage := func(i int) []byte {
		b := make([]byte, 1+rng.IntN(200))
		for j := range b {
			b[j] = byte(rng.Uint32())
		}
		switch i % 4 {
		case 1:
			b[0] = 244 // memberlist's label header, then garbage
		case 2:
			b[0] = 1 // memberlist's encryption version 1, garbage after
		}
		if b[0] == 10 && len(b) < 6 {
			b[0] = 0 // an "encrypted" stream cut short is closed silently: not this test
		}
		return b
	}
	const n, chunk = 2000, 100
	udp, err := net.Dial("udp", a.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	sent := 0
	for sent < n {
		for range chunk {
			if _, err := udp.Write(garbage(sent)); err != nil {
				t.Fatal(err)
			}
			sent++
		}
		// Let each chunk be read before the next, so that no packet is
		// lost to a full socket buffer.
		eventually(t, 10*time.Second, "garbage UDP counted", func() error {
			if got := a.Stats().BadPackets; got < uint64(sent) {
				return fmt.Errorf("%d of %d counted", got, sent)
			}
			return nil
		})
	}
	for i := range n {
		c, err := net.Dial("tcp", a.Addr())
		if err != nil {
			t.Fatal(err)
		}
		b := garbage(i)
		if b[0] == 10 {
			b[0] = 0
		}
		c.Write(b)
		c.Close()
		if i%chunk == chunk-1 {
			eventually(t, 10*time.Second, "garbage TCP counted", func() error {
				if got := a.Stats().BadPackets; got < uint64(n+i+1) {
					return fmt.Errorf("%d of %d counted", got, n+i+1)
				}
				return nil
			})
		}
	}
	if got := a.Stats().BadPackets; got != 2*n {
		t.Errorf("BadPackets = %d, want %d", got, 2*n)
	}
	if l := logged.lines(); len(l) == 0 || len(l) > 3 {
		t.Errorf("%d log lines for %d bad packets, want 1 to 3:\n%s", len(l), 2*n, strings.Join(l, "\n"))
	} else if !strings.Contains(l[0], "cannot be decrypted or decoded") {
		t.Errorf("first line %q", l[0])
	}
	// Still a working endpoint.
	b := start(t, quiet(t, "b", a.Addr()))
	b.Publish([]Observation{{Target: "t1", Err: "refused"}})
	eventually(t, 5*time.Second, "a has b's observation", func() error {
		if a.Views()["b"]["t1"].Err != "refused" {
			return errString("not yet")
		}
		return nil
	})
}

// lineCounter collects log lines, ignoring memberlist's debug and info
// lines about ordinary work.
type lineCounter struct {
	mu sync.Mutex
	l  []string
}

func (c *lineCounter) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, line := range strings.Split(strings.TrimRight(string(p), "\n"), "\n") {
		if !strings.Contains(line, "[DEBUG]") && !strings.Contains(line, "[INFO]") {
			c.l = append(c.l, line)
		}
	}
	return len(p), nil
}

func (c *lineCounter) lines() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.l)
}

// The rate limiter: one line for the first bad input, then at most one per
// interval with the count since the last; other lines pass unchanged;
// memberlist's echo of a failed reply is neither written nor counted.
func TestBadInputLog(t *testing.T) {
	var out lineCounter
	var count atomic.Uint64
	l := newBadInputLog(hclog.New(&hclog.LoggerOptions{Output: &out, Level: hclog.Debug}), 10*time.Second, &count)
	now := time.Unix(1000, 0)
	l.now = func() time.Time { return now }
	fmt.Fprintln(l, "[ERR] memberlist: Decrypt packet failed: no installed keys could decrypt the message from=127.0.0.1:5")
	for range 999 {
		now = now.Add(time.Millisecond)
		fmt.Fprintln(l, "[ERR] memberlist: failed to receive: encryption is configured but remote state is not encrypted from=127.0.0.1:6")
		fmt.Fprintln(l, "[ERR] memberlist: Failed to send error: write: broken pipe from=127.0.0.1:6")
	}
	fmt.Fprintln(l, "[WARN] memberlist: Refuting a suspect message (from: b)")
	got := out.lines()
	if count.Load() != 1000 || len(got) != 2 || !strings.Contains(got[0], "Decrypt packet failed") || !strings.Contains(got[1], "Refuting") {
		t.Fatalf("count %d, lines:\n%s", count.Load(), strings.Join(got, "\n"))
	}
	l.tick(now.Add(5 * time.Second)) // within the interval: nothing
	if len(out.lines()) != 2 {
		t.Fatalf("a line within the interval: %v", out.lines())
	}
	l.tick(now.Add(10 * time.Second))
	got = out.lines()
	if len(got) != 3 || !strings.Contains(got[2], "count=999") || !strings.Contains(got[2], "not encrypted") {
		t.Fatalf("summary: %v", got)
	}
	l.tick(now.Add(30 * time.Second)) // nothing held: nothing written
	now = now.Add(time.Minute)
	fmt.Fprintln(l, "[ERR] memberlist: Decrypt packet failed: again")
	if got := out.lines(); len(got) != 4 || !strings.Contains(got[3], "again") {
		t.Fatalf("after a quiet minute: %v", got)
	}
}

// TestKeyRotation: a member that encrypts with a new key and still reads
// the old one, and a member that encrypts with the old key and already
// reads the new one (the middle of a rotation, docs/operations.md) see
// each other and exchange views.
func TestKeyRotation(t *testing.T) {
	markDone(t)
	oldKey, newKey := []byte("0123456789abcdef"), []byte("fedcba9876543210")
	ca := fastConfig(t, "a")
	ca.Key, ca.ExtraKeys = oldKey, [][]byte{newKey}
	a := start(t, ca)
	cb := fastConfig(t, "b", a.Addr())
	cb.Key, cb.ExtraKeys = newKey, [][]byte{oldKey}
	b := start(t, cb)
	if err := b.Publish([]Observation{{Target: "tcp/10.0.0.1:80", Up: true}}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "both members and b's view at a", func() error {
		if alive(a) != "a,b" || alive(b) != "a,b" {
			return fmt.Errorf("a sees %q, b sees %q", alive(a), alive(b))
		}
		if _, ok := a.Views()["b"]["tcp/10.0.0.1:80"]; !ok {
			return fmt.Errorf("a has no view from b")
		}
		return nil
	})
	// A member with only the new key cannot join one with only the old.
	co := fastConfig(t, "o")
	co.Key = oldKey
	o := start(t, co)
	cn := fastConfig(t, "n")
	cn.Key = newKey
	n := start(t, cn)
	if _, err := n.Join([]string{o.Addr()}); err == nil {
		t.Fatal("joined with a key the other cannot read")
	}
}
