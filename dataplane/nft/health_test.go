package nft

import (
	"testing"

	"github.com/hashicorp/raft"
	"github.com/raftlb/raftlb/dataplane"
	"github.com/raftlb/raftlb/fsm"
	"github.com/raftlb/raftlb/internal/netlab"
	"github.com/raftlb/raftlb/model"
)

// fsmDirector is one director's replicated state and dataplane: commands
// go through fsm.Apply as raft would apply them, and the reconciler follows
// the FSM incrementally (FSMSource.DesiredSince → FromFSMService → Diff →
// Backend), as the agent's does.
type fsmDirector struct {
	t   *testing.T
	f   *fsm.FSM
	idx uint64
	src *dataplane.FSMSource
	r   *dataplane.Reconciler
	b   *Backend
}

func newFSMDirector(t *testing.T, b *Backend) *fsmDirector {
	d := &fsmDirector{t: t, f: fsm.New(nil), b: b}
	d.src = dataplane.NewFSMSource(d.f, func() bool { return true })
	d.r = dataplane.NewReconciler(b, dataplane.Options{})
	d.r.FullPass(d.src.Desired())
	return d
}

// apply commits c and syncs the dataplane; the kernel must then hold
// exactly what a full rebuild from the FSM says.
func (d *fsmDirector) apply(c fsm.Command) {
	d.t.Helper()
	data, err := fsm.Encode(c)
	if err != nil {
		d.t.Fatal(err)
	}
	d.idx++
	if res := d.f.Apply(&raft.Log{Index: d.idx, Term: 1, Type: raft.LogCommand, Data: data}).(*fsm.Result); res.Err != nil {
		d.t.Fatalf("apply %T: %v", c, res.Err)
	}
	delta, ok := d.src.DesiredSince(d.idx - 1)
	if !ok {
		d.t.Fatal("the FSM could not answer incrementally")
	}
	d.r.SyncDelta(delta)
	if errs := d.r.Status().Errors; len(errs) > 0 {
		d.t.Fatalf("dataplane errors: %+v", errs)
	}
	want, _ := dataplane.FromFSM(d.f.Services())
	if diff := tableDiff(mustDump(d.t, d.b), want); diff != "" {
		d.t.Fatalf("kernel differs from the FSM:\n%s", diff)
	}
}

// setHealth commits the leader's decision for one real server.
func (d *fsmDirector) setHealth(service, key string, up bool) {
	d.t.Helper()
	d.apply(&fsm.SetHealth{Changes: []fsm.HealthChange{{Service: service, Key: key, Up: up, Reason: "test"}}})
}

// weightsOf returns the kernel's destination weights of service key.
func weightsOf(t *testing.T, b *Backend, key string) map[string]int {
	t.Helper()
	out := map[string]int{}
	for k, d := range mustDump(t, b)[key].Dests {
		out[k] = d.Weight
	}
	return out
}

// TestTrafficFollowsHealthDecisions: the replicated health decisions, through
// the FSM and the reconciler, steer real HTTP traffic: a real server decided
// down leaves rotation; with inhibit_on_failure it stays at weight 0, keeps
// its established connection and gets no new one; when the quorum is lost
// every new connection goes to the sorry server, and with hysteresis the
// real servers come back only once enough weight is healthy again.
func TestTrafficFollowsHealthDecisions(t *testing.T) {
	l := newLVSLab(t)
	// The sorry server: a third host on the real servers' network.
	sorry := l.lab.Netns("sorry")
	l.lab.Attach(sorry, "eth0", netlab.Name("sw"), "back", "psorry")
	l.lab.Addr(sorry, "eth0", "10.20.0.13/24")
	l.lab.MustRun(sorry, "ip", "route", "add", "default", "via", "10.20.0.1")
	l.lab.Serve(sorry, ":80", "sorry")

	d := newFSMDirector(t, l.b)
	web := model.NewServiceSpec()
	web.Name, web.Protocol, web.Address, web.Port, web.Scheduler = "web", "tcp", vip4, 80, "rr"
	web.Check = &model.Check{Type: model.CheckTCP}
	web.Quorum, web.Hysteresis = 3, 1 // lost below 2, back at 4 or more
	web.SorryServer = &model.SorryServer{Address: "10.20.0.13"}
	names := model.NewServiceSpec()
	names.Name, names.Protocol, names.Address, names.Port, names.Scheduler = "names", "tcp", vip4, 7000, "rr"
	names.Check, names.InhibitOnFailure = &model.Check{Type: model.CheckTCP}, true
	for _, s := range []struct {
		spec model.ServiceSpec
		port int
	}{{web, 80}, {names, 7000}} {
		c := &fsm.CreateService{Service: s.spec}
		for _, rs := range []string{"rs1", "rs2"} {
			c.Reals = append(c.Reals, model.RealServer{Address: l.rsAddr4[rs], Port: s.port, Weight: 2, State: model.StateEnabled})
		}
		d.apply(c)
	}
	webKey, namesKey := "tcp/"+vip4+":80", "tcp/"+vip4+":7000"
	rs1, rs2 := l.rsAddr4["rs1"]+":80", l.rsAddr4["rs2"]+":80"
	url := "http://" + vip4 + "/"
	lost := func() bool { s, _ := d.f.Service("web"); return s.QuorumLost }

	t.Run("no decision: both serve", func(t *testing.T) {
		if err := alternates(l.get(url, 6)); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("decided down: leaves rotation", func(t *testing.T) {
		d.setHealth("web", rs2, false)
		if w := weightsOf(t, l.b, webKey); len(w) != 1 || w[rs1] != 2 {
			t.Fatalf("kernel destinations %v, want only %s", w, rs1)
		}
		if c := count(l.get(url, 6)); c["rs1"] != 6 {
			t.Fatalf("counts %v, want all on rs1", c)
		}
	})
	t.Run("inhibit: weight 0, the open connection stays, no new ones", func(t *testing.T) {
		ask, closeConn := l.dialNames(vip4 + ":7000")
		defer closeConn()
		first, err := ask()
		if err != nil {
			t.Fatal(err)
		}
		other := map[string]string{"rs1": "rs2", "rs2": "rs1"}[first]
		key := l.rsAddr4[first] + ":7000"
		d.setHealth("names", key, false)
		if w := weightsOf(t, l.b, namesKey); len(w) != 2 || w[key] != 0 || w[l.rsAddr4[other]+":7000"] != 2 {
			t.Fatalf("kernel destinations %v, want %s at weight 0 and %s at 2", w, key, other)
		}
		for range 3 {
			if got, err := ask(); err != nil || got != first {
				t.Fatalf("established connection after the decision: %q, %v; want %s", got, err, first)
			}
		}
		for range 4 {
			ask2, close2 := l.dialNames(vip4 + ":7000")
			got, err := ask2()
			close2()
			if err != nil || got != other {
				t.Fatalf("new connection: %q, %v; want %s", got, err, other)
			}
		}
	})
	t.Run("quorum lost: the sorry server takes everything", func(t *testing.T) {
		d.setHealth("web", rs1, false) // healthy weight 0 < 3-1
		if !lost() {
			t.Fatal("the FSM did not declare the quorum lost")
		}
		if w := weightsOf(t, l.b, webKey); len(w) != 1 || w["10.20.0.13:80"] != 1 {
			t.Fatalf("kernel destinations %v, want only the sorry server", w)
		}
		if c := count(l.get(url, 6)); c["sorry"] != 6 {
			t.Fatalf("counts %v, want all on the sorry server", c)
		}
	})
	t.Run("hysteresis: one server back is not enough", func(t *testing.T) {
		d.setHealth("web", rs1, true) // weight 2 < 3+1
		if !lost() {
			t.Fatal("quorum regained below quorum+hysteresis")
		}
		if c := count(l.get(url, 6)); c["sorry"] != 6 {
			t.Fatalf("counts %v, want all still on the sorry server", c)
		}
	})
	t.Run("quorum back: the real servers again", func(t *testing.T) {
		d.setHealth("web", rs2, true) // weight 4
		if lost() {
			t.Fatal("quorum still lost at quorum+hysteresis")
		}
		if w := weightsOf(t, l.b, webKey); len(w) != 2 || w[rs1] != 2 || w[rs2] != 2 {
			t.Fatalf("kernel destinations %v, want rs1 and rs2 at weight 2", w)
		}
		got := l.get(url, 6)
		if err := alternates(got); err != nil || count(got)["sorry"] != 0 {
			t.Fatalf("%v (%v), want rs1 and rs2 alternating", got, err)
		}
	})
	if t.Failed() {
		out, _ := l.lab.Run(l.director, "nft", "list", "ruleset")
		t.Log(out)
	}
}
