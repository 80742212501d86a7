package agent

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/raftlb/raftlb/api/client"
	"github.com/raftlb/raftlb/api/wire"
	"github.com/raftlb/raftlb/cluster/gossip"
	"github.com/raftlb/raftlb/fsm"
	"github.com/raftlb/raftlb/health"
	"github.com/raftlb/raftlb/internal/testaddr"
	"github.com/raftlb/raftlb/model"
)

// ---- fakes ----

// fakeGossip is an in-memory gossip endpoint: the test sets the other
// directors' views and the membership.
type fakeGossip struct {
	mu      sync.Mutex
	self    string
	seq     uint64
	views   map[string]map[string]gossip.Observation
	members []gossip.Member
	pubs    []gossip.Observation
	joins   [][]string
	older   map[string]bool // members of an older release (Member.Weights false)
}

func newFakeGossip(self string) *fakeGossip {
	return &fakeGossip{self: self, views: map[string]map[string]gossip.Observation{self: {}},
		members: []gossip.Member{{Name: self, State: gossip.StateAlive}}}
}

func (g *fakeGossip) Publish(obs []gossip.Observation) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, o := range obs {
		g.seq++
		o.Seq = g.seq
		g.views[g.self][o.Target] = o
		g.pubs = append(g.pubs, o)
	}
	return nil
}

func (g *fakeGossip) Views() map[string]map[string]gossip.Observation {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := map[string]map[string]gossip.Observation{}
	for d, m := range g.views {
		out[d] = map[string]gossip.Observation{}
		for t, o := range m {
			out[d][t] = o
		}
	}
	return out
}

func (g *fakeGossip) Members() []gossip.Member {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.members)
}

func (g *fakeGossip) Join(addrs []string) (int, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.joins = append(g.joins, slices.Clone(addrs))
	return 0, fmt.Errorf("fake: nobody there")
}

func (g *fakeGossip) Addr() string        { return "127.0.0.1:7482" }
func (g *fakeGossip) Stats() gossip.Stats { return gossip.Stats{} }

// see sets director d's view of target t.
func (g *fakeGossip) see(d, t string, up bool, err string) { g.seeWeight(d, t, up, err, nil) }

// seeWeight sets director d's view of target t with a dynamic weight.
func (g *fakeGossip) seeWeight(d, t string, up bool, err string, w *int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.views[d] == nil {
		g.views[d] = map[string]gossip.Observation{}
	}
	g.seq++
	g.views[d][t] = gossip.Observation{Target: t, Up: up, Err: err, Seq: g.seq, Latency: time.Millisecond, Weight: w}
}

func (g *fakeGossip) setMembers(names ...string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.members = nil
	for _, n := range names {
		g.members = append(g.members, gossip.Member{Name: n, State: gossip.StateAlive, Weights: !g.older[n]})
	}
}

func (g *fakeGossip) published() []gossip.Observation {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.pubs)
}

type fakeProber struct {
	mu   sync.Mutex
	sets [][]health.Target
}

func (p *fakeProber) SetTargets(ts []health.Target) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.sets = append(p.sets, slices.Clone(ts))
	return nil
}
func (p *fakeProber) Snapshot() []health.State { return nil }
func (p *fakeProber) Stats() health.Stats      { return health.Stats{} }
func (p *fakeProber) last() []health.Target {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.sets) == 0 {
		return nil
	}
	return p.sets[len(p.sets)-1]
}

// testFSM applies commands to a real FSM at increasing indexes.
type testFSM struct {
	t   *testing.T
	mu  sync.Mutex
	f   *fsm.FSM
	idx uint64
}

func (tf *testFSM) apply(c fsm.Command) error {
	tf.mu.Lock()
	defer tf.mu.Unlock()
	b, err := fsm.Encode(c)
	if err != nil {
		return err
	}
	tf.idx++
	res := tf.f.Apply(&raft.Log{Index: tf.idx, Type: raft.LogCommand, Data: b}).(*fsm.Result)
	if res.Err != nil {
		return res.Err
	}
	return nil
}

func (tf *testFSM) must(c fsm.Command) {
	tf.t.Helper()
	if err := tf.apply(c); err != nil {
		tf.t.Fatalf("%T: %v", c, err)
	}
}

func checkedService(name, vip string, check *model.Check, policy string, reals ...string) *fsm.CreateService {
	s := model.NewServiceSpec()
	s.Name, s.Protocol, s.Address, s.Port, s.Scheduler = name, "tcp", vip, 80, "rr"
	s.Check, s.HealthPolicy = check, policy
	c := &fsm.CreateService{Service: s}
	for _, r := range reals {
		ap := netip.MustParseAddrPort(r)
		rs := model.NewRealServer()
		rs.Address, rs.Port = ap.Addr().String(), int(ap.Port())
		c.Reals = append(c.Reals, rs)
	}
	return c
}

func targetOf(t *testing.T, addr string, spec model.Check) string {
	t.Helper()
	s, err := model.NormalizeCheck(spec)
	if err != nil {
		t.Fatal(err)
	}
	return health.TargetName(health.Target{Addr: netip.MustParseAddrPort(addr), Spec: s}.Key())
}

type coreEnv struct {
	tf     *testFSM
	g      *fakeGossip
	p      *fakeProber
	core   *healthCore
	leader bool
	mu     sync.Mutex
}

func newCoreEnv(t *testing.T, self string) *coreEnv {
	e := &coreEnv{tf: &testFSM{t: t, f: fsm.New(nil)}, g: newFakeGossip(self), p: &fakeProber{}, leader: true}
	e.core = newHealthCore(self, quietLog(), e.tf.f, func() bool { e.mu.Lock(); defer e.mu.Unlock(); return e.leader }, nil, e.tf.apply, 0)
	e.core.g, e.core.p = e.g, e.p
	for _, d := range []string{"d1", "d2", "d3"} {
		e.tf.must(&fsm.RegisterNode{Node: model.Node{ID: d, RaftAddr: "10.0.0.1:7481", APIAddr: "10.0.0.1:7480", APIScheme: "http",
			GossipAddr: "10.0.0." + d[1:] + ":7482"}})
	}
	return e
}

// ---- tests ----

func TestHealthTargetsDedupedAndWithdrawn(t *testing.T) {
	e := newCoreEnv(t, "d1")
	tcp := &model.Check{Type: "tcp", Interval: model.Duration(time.Second)}
	e.tf.must(checkedService("web", "192.0.2.1", tcp, "", "10.0.1.1:80", "10.0.1.2:80"))
	e.tf.must(checkedService("web2", "192.0.2.2", tcp, "any", "10.0.1.1:80"))                     // shares 10.0.1.1:80
	e.tf.must(checkedService("plain", "192.0.2.3", nil, "", "10.0.1.3:80"))                       // not checked
	e.tf.must(checkedService("none", "192.0.2.4", &model.Check{Type: "none"}, "", "10.0.1.4:80")) // type none
	e.core.syncTargets()
	var got []string
	for _, tg := range e.p.last() {
		got = append(got, health.TargetName(tg.Key()))
	}
	slices.Sort(got)
	want := []string{targetOf(t, "10.0.1.1:80", *tcp), targetOf(t, "10.0.1.2:80", *tcp)}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("targets %v, want %v", got, want)
	}
	n := len(e.p.sets)
	e.core.syncTargets() // nothing changed: the prober is not touched
	if len(e.p.sets) != n {
		t.Fatal("SetTargets called without a change")
	}

	// A completed check is published once per change of up/err.
	var k health.Key
	for _, tg := range e.p.last() {
		if tg.Addr.String() == "10.0.1.2:80" {
			k = tg.Key()
		}
	}
	ev := func(up bool, err string) health.Event {
		return health.Event{State: health.State{Key: k, Up: up, Checked: true, LastErr: err, LastLatency: time.Millisecond}}
	}
	e.core.onEvent(ev(true, ""))
	e.core.onEvent(ev(true, ""))
	e.core.onEvent(ev(true, "connection refused"))
	e.core.onEvent(ev(false, "connection refused"))
	e.core.onEvent(ev(false, "connection refused"))
	if p := e.g.published(); len(p) != 3 {
		t.Fatalf("published %d observations, want 3 (up, up with an error, down): %+v", len(p), p)
	}

	// The service goes: its probe is withdrawn, and later events of it are
	// not published.
	e.tf.must(&fsm.DeleteService{Name: "web"})
	e.core.syncTargets()
	if len(e.p.last()) != 1 {
		t.Fatalf("after delete: %d targets, want 1 (web2's)", len(e.p.last()))
	}
	p := e.g.published()
	wd := p[len(p)-1]
	if wd.Err != withdrawnErr || wd.Target != health.TargetName(k) {
		t.Fatalf("last publish %+v, want a withdrawal", wd)
	}
	if _, ok := decisionViews(e.g.Views(), true)["d1"][wd.Target]; ok {
		t.Fatal("a withdrawn observation counts in the decision")
	}
}

func TestHealthDecisionCommitted(t *testing.T) {
	e := newCoreEnv(t, "d1")
	tcp := &model.Check{Type: "tcp"}
	e.tf.must(checkedService("web", "192.0.2.1", tcp, "", "10.0.1.1:80", "10.0.1.2:80"))
	e.tf.must(checkedService("web2", "192.0.2.2", tcp, "all", "10.0.1.1:80"))
	e.g.setMembers("d1", "d2", "d3")
	t1 := targetOf(t, "10.0.1.1:80", *tcp)
	t2 := targetOf(t, "10.0.1.2:80", *tcp)
	for _, d := range []string{"d1", "d2", "d3"} {
		e.g.see(d, t2, true, "")
	}
	e.g.see("d1", t1, true, "")
	e.g.see("d2", t1, false, "connection refused")
	e.g.see("d3", t1, false, "connection refused")

	// A follower decides nothing.
	e.mu.Lock()
	e.leader = false
	e.mu.Unlock()
	e.core.pass()
	if r, _, _ := e.tf.f.Real("web", "10.0.1.1:80"); r.Health != nil {
		t.Fatalf("a follower committed %+v", r.Health)
	}
	e.mu.Lock()
	e.leader = true
	e.mu.Unlock()
	e.core.pass()
	r, _, _ := e.tf.f.Real("web", "10.0.1.1:80")
	if r.Health == nil || r.Health.Up || r.Health.Reason != "down: d2,d3 of 3 see it down: connection refused" {
		t.Fatalf("web 10.0.1.1 health %+v", r.Health)
	}
	if r, _, _ := e.tf.f.Real("web2", "10.0.1.1:80"); r.Health != nil {
		t.Fatalf("web2 (policy all) decided %+v; d1 still sees it up", r.Health)
	}
	if r, _, _ := e.tf.f.Real("web", "10.0.1.2:80"); r.Health != nil {
		t.Fatalf("an up real server got a transition: %+v", r.Health)
	}
	st := e.core.healthStats().Decider
	if st.Commits != 1 || st.Transitions != 1 {
		t.Fatalf("decider stats %+v", st)
	}
	e.core.pass() // nothing new: no commit
	if st := e.core.healthStats().Decider; st.Commits != 1 {
		t.Fatalf("a pass without news committed: %+v", st)
	}

	// d3 leaves gossip: 1 up, 1 down is a tie; nothing changes. d2 is a
	// witness now: only d1 counts, and it sees it up.
	e.g.setMembers("d1", "d2")
	e.core.pass()
	if r, _, _ := e.tf.f.Real("web", "10.0.1.1:80"); r.Health == nil || r.Health.Up {
		t.Fatalf("a tie changed the decision: %+v", r.Health)
	}
	e.tf.must(&fsm.RegisterNode{Node: model.Node{ID: "d2", RaftAddr: "10.0.0.2:7481", APIAddr: "10.0.0.2:7480", APIScheme: "http", Witness: true}})
	e.core.pass()
	r, _, _ = e.tf.f.Real("web", "10.0.1.1:80")
	if r.Health == nil || !r.Health.Up || r.Health.Reason != "up: d1 of 1 sees it up" {
		t.Fatalf("after d2 became a witness: %+v", r.Health)
	}

	// The report shows the decision and each view.
	rep := e.core.report("web")
	if len(rep.Services) != 1 || rep.Services[0].Name != "web" || len(rep.Services[0].Reals) != 2 {
		t.Fatalf("report services %+v", rep.Services)
	}
	rr := rep.Services[0].Reals[0]
	if rr.Key != "10.0.1.1:80" || rr.Decision != "up" || rr.Target != t1 || len(rr.Views) != 3 {
		t.Fatalf("report real %+v", rr)
	}
	live := map[string]bool{}
	for _, v := range rr.Views {
		live[v.Director] = v.Live
	}
	if !live["d1"] || live["d2"] || live["d3"] {
		t.Fatalf("live flags %v, want d1 only (d2 witness, d3 gone)", live)
	}
	var ids []string
	for _, d := range rep.Directors {
		ids = append(ids, fmt.Sprintf("%s:%v:%s", d.ID, d.Live, d.Gossip))
	}
	if strings.Join(ids, " ") != "d1:true:alive d2:false:alive d3:false:unknown" {
		t.Fatalf("directors %v", ids)
	}
}

// A check spec change makes old observations stale: they do not count
// for the new check.
func TestHealthStaleCheckHash(t *testing.T) {
	e := newCoreEnv(t, "d1")
	old := &model.Check{Type: "tcp"}
	e.tf.must(checkedService("web", "192.0.2.1", old, "", "10.0.1.1:80"))
	e.g.setMembers("d1", "d2", "d3")
	for _, d := range []string{"d1", "d2", "d3"} {
		e.g.see(d, targetOf(t, "10.0.1.1:80", *old), false, "refused")
	}
	spec, _ := e.tf.f.ServiceSpec("web")
	spec.Check = &model.Check{Type: "http"}
	e.tf.must(&fsm.UpdateService{Name: "web", Spec: spec})
	e.core.pass()
	if r, _, _ := e.tf.f.Real("web", "10.0.1.1:80"); r.Health != nil {
		t.Fatalf("decided on observations of the old check: %+v", r.Health)
	}
}

func TestHealthJoinsMissingDirectors(t *testing.T) {
	e := newCoreEnv(t, "d1")
	e.g.setMembers("d1", "d2")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { e.core.joinLoop(ctx); close(done) }()
	deadline := time.Now().Add(5 * time.Second)
	for {
		e.g.mu.Lock()
		n := len(e.g.joins)
		var first []string
		if n > 0 {
			first = e.g.joins[0]
		}
		e.g.mu.Unlock()
		if n > 0 {
			if !slices.Equal(first, []string{"10.0.0.3:7482"}) {
				t.Fatalf("joined %v, want d3's address only", first)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no join attempt")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
}

func TestGossipKey(t *testing.T) {
	k1, err := DeriveGossipKey("token-a")
	if err != nil || len(k1) != 32 {
		t.Fatalf("derive: %v, %d bytes", err, len(k1))
	}
	k2, _ := DeriveGossipKey("token-a")
	k3, _ := DeriveGossipKey("token-b")
	if string(k1) != string(k2) || string(k1) == string(k3) {
		t.Fatal("derivation is not a function of the token")
	}
	for _, n := range []int{16, 24, 32} {
		raw := make([]byte, n)
		raw[0] = byte(n)
		got, err := ParseGossipKey(base64.StdEncoding.EncodeToString(raw) + "\n")
		if err != nil || string(got) != string(raw) {
			t.Fatalf("%d bytes: %v", n, err)
		}
	}
	if _, err := ParseGossipKey(base64.StdEncoding.EncodeToString(make([]byte, 20))); err == nil {
		t.Fatal("a 20-byte key was accepted")
	}
	if _, err := ParseGossipKey("not base64 !"); err == nil {
		t.Fatal("garbage was accepted")
	}
}

func TestGossipAddrDefaults(t *testing.T) {
	for _, tc := range []struct {
		cfg       Config
		bind, adv string
		explicit  bool
	}{
		{Config{RaftAddr: "10.0.0.1:7481"}, "10.0.0.1:7482", "", false},
		{Config{RaftAddr: "127.0.0.1:0"}, "127.0.0.1:0", "", false},
		{Config{RaftAddr: "0.0.0.0:7481", RaftAdvertise: "10.0.0.1:7481"}, "0.0.0.0:7482", "10.0.0.1:7482", false},
		{Config{RaftAddr: "10.0.0.1:7481", GossipAddr: "10.0.0.1:9000"}, "10.0.0.1:9000", "", true},
		{Config{RaftAddr: "10.0.0.1:7481", GossipAddr: "10.0.0.1:9000", GossipAdvertise: "192.0.2.1:9000"}, "10.0.0.1:9000", "192.0.2.1:9000", true},
	} {
		a := &Agent{cfg: tc.cfg}
		bind, adv, explicit, err := a.gossipAddrs()
		if err != nil || bind != tc.bind || adv != tc.adv || explicit != tc.explicit {
			t.Errorf("%+v: got %q %q %v %v", tc.cfg, bind, adv, explicit, err)
		}
	}
}

// ---- real agents on loopback ----

// tcpServer is a loopback TCP listener that can be stopped and started.
type tcpServer struct {
	t    *testing.T
	addr string
	mu   sync.Mutex
	ln   net.Listener
}

func (s *tcpServer) start() {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	ln, err := net.Listen("tcp", s.addr)
	if err != nil {
		s.t.Fatal(err)
	}
	s.ln = ln
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
}

func (s *tcpServer) stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln != nil {
		s.ln.Close()
		s.ln = nil
	}
}

func newTCPServer(t *testing.T) *tcpServer {
	s := &tcpServer{t: t, addr: testaddr.Loopback(t)}
	s.start()
	t.Cleanup(s.stop)
	return s
}

func waitHealth(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	waitMass(t, what, d, func() error {
		if !cond() {
			return errors.New("not yet")
		}
		return nil
	})
}

func addCheckedService(t *testing.T, a *Agent, name string, spec model.Check, reals ...string) {
	t.Helper()
	c := checkedService(name, "192.0.2.10", &spec, "", reals...)
	b, err := fsm.Encode(c)
	if err != nil {
		t.Fatal(err)
	}
	waitHealth(t, "the leader to apply", 10*time.Second, func() bool {
		_, resp, err := a.node.Apply(b, 5*time.Second)
		if err != nil {
			return false
		}
		if r := resp.(*fsm.Result); r.Err != nil {
			t.Fatal(r.Err)
		}
		return true
	})
}

func decisionOf(a *Agent, svc, key string) *model.RealHealth {
	r, _, _ := a.FSM().Real(svc, key)
	return r.Health
}

// -dev: the one director probes, gossips to itself and decides alone.
func TestHealthDevDirectorDecidesAlone(t *testing.T) {
	a, err := Start(context.Background(), Config{Dev: true, APIAddr: "127.0.0.1:0", Log: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.close() })
	if err := a.WaitReady(ctxT(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	srv := newTCPServer(t)
	spec := model.Check{Type: "tcp", Interval: model.Duration(50 * time.Millisecond), Rise: 1, Fall: 2}
	addCheckedService(t, a, "web", spec, srv.addr)
	waitHealth(t, "dev's own view", 5*time.Second, func() bool {
		rep := a.healthReport("web")
		return len(rep.Services) == 1 && len(rep.Services[0].Reals[0].Views) == 1 && rep.Services[0].Reals[0].Views[0].Up
	})
	srv.stop()
	waitHealth(t, "the decision down", 5*time.Second, func() bool {
		h := decisionOf(a, "web", srv.addr)
		return h != nil && !h.Up && strings.HasPrefix(h.Reason, "down: dev of 1 sees it down")
	})
	srv.start()
	waitHealth(t, "the decision up", 5*time.Second, func() bool {
		h := decisionOf(a, "web", srv.addr)
		return h != nil && h.Up
	})
	if n, ok := a.FSM().Node("dev"); !ok || n.GossipAddr == "" {
		t.Fatalf("dev's registration has no gossip address: %+v", n)
	}

	// Through the API and the Go client.
	c, err := client.New(client.Options{Addr: a.APIURL()})
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t, 10*time.Second)
	rep, err := c.Health(ctx, "web", client.ReadOpts{})
	if err != nil || rep.NodeID != "dev" || !rep.Leader || len(rep.Services) != 1 || rep.Services[0].Reals[0].Decision != "up" ||
		rep.Decider.Transitions < 2 || rep.Gossip == nil || len(rep.Gossip.Members) != 1 {
		t.Fatalf("GET /v1/health: %+v, %v", rep, err)
	}
	if _, err := c.Health(ctx, "nope", client.ReadOpts{}); !client.IsCode(err, model.CodeNotFound) {
		t.Fatalf("health of a missing service: %v", err)
	}
	st, err := c.Status(ctx)
	if err != nil || st.Gossip == nil || st.Health == nil {
		t.Fatalf("status without gossip or health: %+v, %v", st, err)
	}
}

// Three directors in one process: real gossip on loopback, each probing;
// a stopped server is decided down with three views; one director
// leaving gossip leaves the live set.
func TestHealthThreeDirectors(t *testing.T) {
	tc := newCluster(t, 3, "peers")
	tc.startAll()
	ld := -1
	waitHealth(t, "a leader", 10*time.Second, func() bool {
		for i, d := range tc.dirs {
			if d.a.node.IsLeader() {
				ld = i
				return true
			}
		}
		return false
	})
	waitHealth(t, "gossip among the three", 15*time.Second, func() bool {
		for _, d := range tc.dirs {
			rep := d.a.healthReport("")
			n := 0
			for _, dd := range rep.Directors {
				if dd.Live {
					n++
				}
			}
			if n != 3 {
				return false
			}
		}
		return true
	})
	srv := newTCPServer(t)
	spec := model.Check{Type: "tcp", Interval: model.Duration(50 * time.Millisecond), Rise: 1, Fall: 2}
	addCheckedService(t, tc.dirs[ld].a, "web", spec, srv.addr)
	views := func(i int) []wire.DirectorView {
		rep := tc.dirs[i].a.healthReport("web")
		if len(rep.Services) != 1 || len(rep.Services[0].Reals) != 1 {
			return nil
		}
		return rep.Services[0].Reals[0].Views
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		ok, last := true, ""
		for i := range tc.dirs {
			v := views(i)
			st := tc.dirs[i].a.health.gossip.Stats()
			last += fmt.Sprintf("d%d: %+v\n   %+v\n", i+1, v, st)
			if len(v) != 3 || !v[0].Up || !v[1].Up || !v[2].Up {
				ok = false
			}
		}
		if ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for three views up on every director:\n%s", last)
		}
		time.Sleep(20 * time.Millisecond)
	}
	srv.stop()
	waitHealth(t, "the decision down on every director", 10*time.Second, func() bool {
		for _, d := range tc.dirs {
			if h := decisionOf(d.a, "web", srv.addr); h == nil || h.Up {
				return false
			}
		}
		return true
	})
	h := decisionOf(tc.dirs[0].a, "web", srv.addr)
	if !strings.Contains(h.Reason, "of 3 see it down: ") || !strings.Contains(h.Reason, "connection refused") {
		t.Fatalf("reason %q", h.Reason)
	}

	// A follower shuts down: it leaves gossip, its view leaves the live set.
	f := (ld + 1) % 3
	id := tc.dirs[f].cfg.NodeID
	if err := tc.dirs[f].a.Shutdown(ctxT(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	tc.dirs[f].a = nil
	waitHealth(t, "the stopped director out of the live set", 10*time.Second, func() bool {
		for _, v := range views(ld) {
			if v.Director == id {
				return false // its view is dropped with it
			}
		}
		rep := tc.dirs[ld].a.healthReport("")
		for _, d := range rep.Directors {
			if d.ID == id {
				return !d.Live && d.Gossip == "left"
			}
		}
		return false
	})
	srv.start()
	waitHealth(t, "up again with two directors", 10*time.Second, func() bool {
		h := decisionOf(tc.dirs[ld].a, "web", srv.addr)
		return h != nil && h.Up && strings.Contains(h.Reason, "of 2 see it up")
	})
}

// health.Policy* mirror fsm.HealthPolicy* (fsm imports health).
func TestHealthPoliciesMirrorFSM(t *testing.T) {
	if health.PolicyMajority != model.HealthPolicyMajority || health.PolicyAny != model.HealthPolicyAny || health.PolicyAll != model.HealthPolicyAll {
		t.Fatal("health and fsm disagree on the policy names")
	}
}

// targetsOf computes a service's key hash once; its keys are Target.Key's,
// also with a check port that replaces the real servers' ports.
func TestTargetsOfMatchesTargetKey(t *testing.T) {
	for _, port := range []int{0, 8080} {
		spec, err := model.NormalizeCheck(model.Check{Type: "tcp", Port: port})
		if err != nil {
			t.Fatal(err)
		}
		c := checkedService("web", "192.0.2.1", &spec, "", "10.0.1.1:80", "10.0.1.2:81", "[2001:db8::1]:82")
		s := model.Service{ServiceSpec: c.Service}
		for _, r := range c.Reals {
			r.Port = max(r.Port, 80)
			s.Reals = append(s.Reals, r)
		}
		s.Reals = append(s.Reals, model.RealServer{Address: "not an address"})
		target := targetsOf(s)
		for _, r := range s.Reals {
			tg, k, ok := target(r)
			if r.Address == "not an address" {
				if ok {
					t.Fatal("a bad address gave a target")
				}
				continue
			}
			if !ok || k != tg.Key() {
				t.Fatalf("port %d, %s: key %v, Target.Key %v", port, r.Key(), k, tg.Key())
			}
		}
	}
}
