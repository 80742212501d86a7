package agent

import (
	"testing"

	"github.com/raftlb/raftlb/fsm"
	"github.com/raftlb/raftlb/health"
	"github.com/raftlb/raftlb/model"
)

func weightPtr(w int) *int { return &w }

// declareWeights registers every director of e again with HealthWeights.
func (e *coreEnv) declareWeights() {
	for _, n := range e.tf.f.Nodes() {
		n.HealthWeights = true
		e.tf.must(&fsm.RegisterNode{Node: n})
	}
}

// TestHealthDynamicWeightCommitted: a script's weight goes from the
// prober's event into the published observation; the leader commits the
// median of the views' weights only once every registered director reads
// weights (before that it commits none and keeps the committed one); a
// weight change alone is committed; the report shows the decision's and
// each view's weight.
func TestHealthDynamicWeightCommitted(t *testing.T) {
	e := newCoreEnv(t, "d1")
	script := &model.Check{Type: "script", Script: &model.ScriptCheck{Path: "/bin/true", Dynamic: true}}
	e.tf.must(checkedService("web", "192.0.2.1", script, "", "10.0.1.1:80"))
	e.g.setMembers("d1", "d2", "d3")
	tg := targetOf(t, "10.0.1.1:80", *script)

	// The prober's event: a weight change alone is published.
	e.core.syncTargets()
	k := e.p.last()[0].Key()
	ev := func(w *int) health.Event {
		return health.Event{State: health.State{Key: k, Up: true, Checked: true, Weight: w}}
	}
	e.core.onEvent(ev(weightPtr(10)))
	e.core.onEvent(ev(weightPtr(10)))
	e.core.onEvent(ev(weightPtr(5)))
	e.core.onEvent(ev(nil))
	p := e.g.published()
	if len(p) != 3 || *p[0].Weight != 10 || *p[1].Weight != 5 || p[2].Weight != nil {
		t.Fatalf("published %+v, want weights 10, 5, configured", p)
	}

	for _, d := range []string{"d1", "d2", "d3"} {
		e.g.seeWeight(d, tg, true, "", weightPtr(10))
	}
	real := func() model.RealServer { r, _, _ := e.tf.f.Real("web", "10.0.1.1:80"); return r }
	e.core.pass()
	if r := real(); r.Health != nil {
		t.Fatalf("weights committed while the directors have not declared them: %+v", r.Health)
	}
	e.declareWeights()
	e.core.pass()
	r := real()
	if r.Health == nil || !r.Health.Up || r.Health.Weight == nil || *r.Health.Weight != 10 ||
		r.Health.Reason != "up: d1,d2,d3 of 3 see it up; weight 10 (median of d1:10 d2:10 d3:10)" {
		t.Fatalf("decision %+v", r.Health)
	}
	since := r.Health.Since
	if w, ok := (model.ServiceSpec{}).EffectiveWeight(r); w != 10 || !ok {
		t.Fatalf("effective weight %d %v, want 10", w, ok)
	}

	// Two of three move to 5: a weight change alone, committed.
	e.g.seeWeight("d1", tg, true, "", weightPtr(5))
	e.g.seeWeight("d2", tg, true, "", weightPtr(5))
	e.core.pass()
	if r := real(); *r.Health.Weight != 5 || r.Health.Since != since {
		t.Fatalf("after a majority moved to 5: %+v (want up since %d)", r.Health, since)
	}
	if st := e.core.healthStats().Decider; st.Commits != 2 || st.Transitions != 2 {
		t.Fatalf("decider %+v", st)
	}

	rep := e.core.report("web")
	rr := rep.Services[0].Reals[0]
	if rr.Weight == nil || *rr.Weight != 5 || len(rr.Views) != 3 || rr.Views[2].Weight == nil || *rr.Views[2].Weight != 10 {
		t.Fatalf("report %+v", rr)
	}

	// A director registered later without the capability (an older
	// release): nothing more is committed about weights, the committed
	// one stays.
	e.tf.must(&fsm.RegisterNode{Node: model.Node{ID: "d4", RaftAddr: "10.0.0.4:7481", APIAddr: "10.0.0.4:7480", APIScheme: "http"}})
	for _, d := range []string{"d1", "d2", "d3"} {
		e.g.seeWeight(d, tg, true, "", weightPtr(1))
	}
	e.core.pass()
	if r := real(); r.Health.Weight == nil || *r.Health.Weight != 5 {
		t.Fatalf("with d4 of an older release: %+v, want weight 5 kept", r.Health)
	}
}

// A director declares HealthWeights only once every registered director
// is a live gossip member that reads weights, and keeps it.
func TestMayDeclareWeights(t *testing.T) {
	e := newCoreEnv(t, "d1")
	e.g.older = map[string]bool{"d3": true}
	e.g.setMembers("d1", "d2", "d3")
	if e.core.mayDeclareWeights() {
		t.Fatal("d3 runs an older release")
	}
	e.g.older = nil
	e.g.setMembers("d1", "d2")
	if e.core.mayDeclareWeights() {
		t.Fatal("d3 is not a live member: its release is unknown")
	}
	e.g.setMembers("d1", "d2", "d3")
	if !e.core.mayDeclareWeights() {
		t.Fatal("every registered director reads weights")
	}
	e.declareWeights()
	e.g.setMembers("d1")
	if !e.core.mayDeclareWeights() {
		t.Fatal("declared once, kept")
	}
}
