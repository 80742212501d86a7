package fsm

import (
	"strings"
	"testing"

	"github.com/raftlb/raftlb/model"
)

func ptrWeight(w int) *int { return &w }

// Dynamic weights are encoding version 3; everything without one is
// written as before, and a version-2 body may not carry them.
func TestWeightEncodingVersion(t *testing.T) {
	for _, tc := range []struct {
		name string
		c    Command
		want byte
	}{
		{"a decision without a weight", &SetHealth{Changes: []HealthChange{{Service: "web", Key: "k", Up: true}}}, 2},
		{"a decision with a weight", &SetHealth{Changes: []HealthChange{{Service: "web", Key: "k", Up: true}, {Service: "web", Key: "l", Up: true, Weight: ptrWeight(0)}}}, 3},
		{"a director without the capability", &RegisterNode{Node: model.Node{ID: "d1", GossipAddr: "10.0.0.1:7482"}}, 2},
		{"a director that reads weights", &RegisterNode{Node: model.Node{ID: "d1", HealthWeights: true}}, 3},
		{"a real server with a decision", &CreateReal{Service: "web", Real: model.RealServer{Health: &model.RealHealth{Up: true}}}, 2},
		{"a real server with a weight", &UpdateReal{Service: "web", Real: model.RealServer{Health: &model.RealHealth{Up: true, Weight: ptrWeight(3)}}}, 3},
		{"a service with a weighted real server", &CreateService{Service: webSpec(), Reals: []model.RealServer{{Health: &model.RealHealth{Up: true, Weight: ptrWeight(3)}}}}, 3},
	} {
		b, err := encode(tc.c, false)
		if err != nil {
			t.Fatal(err)
		}
		if b[1] != tc.want {
			t.Errorf("%s: encoding version %d, want %d", tc.name, b[1], tc.want)
		}
		if c, err := Decode(b); err != nil || encodingVersion(c) != tc.want {
			t.Errorf("%s: decode %v", tc.name, err)
		}
		if tc.want == 3 {
			forged := append([]byte{b[0], 2}, b[2:]...)
			if _, err := Decode(forged); err == nil || !strings.Contains(err.Error(), "fields of encoding version 3 in a version 2 body") {
				t.Errorf("%s: version-3 fields in a version-2 body: %v", tc.name, err)
			}
		}
	}
}

// TestSetHealthWeights: a weight change alone is committed (up since the
// same index), the same weight again is no transition, a down decision has
// no weight, a weight out of range refuses the whole batch, and the quorum
// counts the dynamic weight.
func TestSetHealthWeights(t *testing.T) {
	f := New(nil)
	spec := webSpec()
	spec.Check = &model.Check{Type: "script", Script: &model.ScriptCheck{Path: "/bin/true", Dynamic: true}}
	spec.Quorum = 4 // two real servers of weight 3
	checkedService(t, f, spec, realAt("192.0.2.10", 3), realAt("192.0.2.11", 3))
	svc, _ := f.Service("web")
	hash := svc.Check.Hash()
	const k = "192.0.2.10:80"
	set := func(up bool, w *int) (int, uint64) {
		t.Helper()
		idx := f.Index() + 1
		r := applyCmd(t, f, idx, &SetHealth{Changes: []HealthChange{{Service: "web", Key: k, Up: up, Check: hash, Reason: "r", Weight: w}}})
		if r.Err != nil {
			t.Fatal(r.Err)
		}
		return r.Object.(int), idx
	}
	health := func() model.RealHealth {
		t.Helper()
		r, _, _ := f.Real("web", k)
		if r.Health == nil {
			t.Fatal("no decision")
		}
		return *r.Health
	}
	lost := func() bool { s, _ := f.Service("web"); return s.QuorumLost }

	n, first := set(true, ptrWeight(10))
	if h := health(); n != 1 || !h.Up || h.Since != first || h.Weight == nil || *h.Weight != 10 {
		t.Fatalf("first decision with weight 10: %d, %+v", n, h)
	}
	if n, _ := set(true, ptrWeight(10)); n != 0 {
		t.Fatal("the same weight again is not a transition")
	}
	if n, _ := set(true, ptrWeight(0)); n != 1 || health().Since != first || *health().Weight != 0 {
		t.Fatalf("a weight change alone: %d, %+v (want up since %d)", n, health(), first)
	}
	if !lost() {
		t.Fatal("dynamic weight 0 + 3 < quorum 4: the quorum counts the dynamic weight, it must be lost")
	}
	if n, _ := set(true, nil); n != 1 || health().Weight != nil || lost() {
		t.Fatalf("back to the configured weight: %d, %+v, quorum lost %v", n, health(), lost())
	}
	if n, idx := set(false, ptrWeight(7)); n != 1 || health().Up || health().Weight != nil || health().Since != idx {
		t.Fatalf("a down decision keeps no weight: %d, %+v", n, health())
	}
	if n, _ := set(false, nil); n != 0 {
		t.Fatal("down again is not a transition")
	}
	before := health()
	r := applyCmd(t, f, f.Index()+1, &SetHealth{Changes: []HealthChange{
		{Service: "web", Key: "192.0.2.11:80", Up: false, Check: hash},
		{Service: "web", Key: k, Up: true, Check: hash, Weight: ptrWeight(model.MaxWeight + 1)}}})
	if r.Err == nil || r.Err.Field != "changes[1].weight" {
		t.Fatalf("a weight out of range: %v", r.Err)
	}
	if h := health(); h != before {
		t.Fatalf("a refused batch changed %+v to %+v", before, h)
	}
	if r, _, _ := f.Real("web", "192.0.2.11:80"); r.Health != nil {
		t.Fatal("a refused batch applied its other changes")
	}
}

// HealthWeights: true once every registered director declares it.
func TestHealthWeightsCapability(t *testing.T) {
	f := New(nil)
	if !f.HealthWeights() {
		t.Fatal("no director registered: a new cluster")
	}
	reg := func(id string, weights bool) {
		t.Helper()
		n := model.Node{ID: id, RaftAddr: "127.0.0.1:1", APIAddr: "127.0.0.1:2", HealthWeights: weights}
		if r := applyCmd(t, f, f.Index()+1, &RegisterNode{Node: n}); r.Err != nil {
			t.Fatal(r.Err)
		}
	}
	reg("d1", true)
	reg("d2", false)
	if f.HealthWeights() {
		t.Fatal("d2 does not read dynamic weights")
	}
	reg("d2", true)
	if !f.HealthWeights() {
		t.Fatal("every director reads them")
	}
}
