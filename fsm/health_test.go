package fsm

import (
	"io"
	"strings"
	"testing"

	"github.com/hashicorp/raft"
	"github.com/raftlb/raftlb/model"
)

func checkedService(t *testing.T, f *FSM, spec model.ServiceSpec, reals ...model.RealServer) {
	t.Helper()
	if r := applyCmd(t, f, f.Index()+1, &CreateService{Service: spec, Reals: reals}); r.Err != nil {
		t.Fatal(r.Err)
	}
}

func realAt(addr string, w int) model.RealServer {
	r := model.NewRealServer()
	r.Address, r.Weight = addr, w
	return r
}

func webSpec() model.ServiceSpec {
	s := model.NewServiceSpec()
	s.Name, s.Protocol, s.Address, s.Port = "web", "tcp", "192.0.2.1", 80
	return s
}

func TestEncodingVersions(t *testing.T) {
	plain, _ := Encode(&CreateService{Service: webSpec()})
	if v := plain[1] &^ checksumFlag; v != 1 {
		t.Fatalf("a service without health fields is written as version %d, want 1 (older directors read it)", v)
	}
	spec := webSpec()
	spec.Check = &model.Check{Type: "http"}
	checked, _ := encode(&CreateService{Service: spec}, false)
	if checked[1] != 2 {
		t.Fatalf("a service with a check is written as version %d, want 2", checked[1])
	}
	// A version-1 body may not carry version-2 fields.
	forged := append([]byte{checked[0], 1}, checked[2:]...)
	if _, err := Decode(forged); err == nil || !strings.Contains(err.Error(), "version 2") {
		t.Fatalf("v2 fields in a v1 body: %v", err)
	}
	legacy, _ := encode(&CreateService{Service: webSpec()}, false)
	if _, err := Decode(append([]byte{legacy[0], 4}, legacy[2:]...)); err == nil {
		t.Fatal("version 4 accepted")
	}
	rel, _ := Encode(&ReleaseLease{Node: "d1"})
	if CommandType(rel[0])&IgnorableFlag == 0 {
		t.Fatal("ReleaseLease must be ignorable: a director that does not know it only waits for the lease")
	}
}

func TestHealthValidationNamesTheField(t *testing.T) {
	for _, tc := range []struct {
		mut   func(*model.ServiceSpec)
		field string
	}{
		{func(s *model.ServiceSpec) { s.Check = &model.Check{Type: "http", HTTP: &model.HTTPCheck{Status: "99"}} }, "check.http.status"},
		{func(s *model.ServiceSpec) { s.Check = &model.Check{Rise: -1} }, "check.rise"},
		{func(s *model.ServiceSpec) { s.HealthPolicy = "most" }, "health_policy"},
		{func(s *model.ServiceSpec) { s.Quorum = -2 }, "quorum"},
		{func(s *model.ServiceSpec) { s.Quorum, s.Hysteresis = 2, 3 }, "hysteresis"},
		{func(s *model.ServiceSpec) { s.SorryServer = &model.SorryServer{Address: "nope"} }, "sorry_server.address"},
		{func(s *model.ServiceSpec) { s.SorryServer = &model.SorryServer{Address: "2001:db8::1"} }, "sorry_server.address"},
		{func(s *model.ServiceSpec) {
			s.Forward = "dr"
			s.SorryServer = &model.SorryServer{Address: "192.0.2.9", Port: 81}
		}, "sorry_server.port"},
	} {
		s := webSpec()
		tc.mut(&s)
		_, err := model.NormalizeService(s)
		if e := model.AsError(err); e == nil || e.Field != tc.field || e.Code != model.CodeInvalid {
			t.Errorf("want invalid %s, got %v", tc.field, err)
		}
	}
	s := webSpec()
	s.Check, s.HealthPolicy, s.SorryServer = &model.Check{Type: "HTTP"}, "majority", &model.SorryServer{Address: "192.0.2.9"}
	n, err := model.NormalizeService(s)
	if err != nil {
		t.Fatal(err)
	}
	if n.Check.Type != "http" || n.Check.Fall != model.DefaultFall || n.HealthPolicy != "" || n.SorryServer.Port != 80 {
		t.Fatalf("not canonical: %+v %+v %+v", n.Check, n.HealthPolicy, n.SorryServer)
	}
}

// TestHealthDecisionsAndQuorum: SetHealth commits transitions only, skips
// stale and unknown targets, survives operator updates of the real server,
// and moves the quorum with keepalived's hysteresis.
func TestHealthDecisionsAndQuorum(t *testing.T) {
	f := New(nil)
	spec := webSpec()
	spec.Check = &model.Check{Type: "tcp"}
	spec.Quorum, spec.Hysteresis = 3, 1 // lost below 2, back at 4 or more
	spec.SorryServer = &model.SorryServer{Address: "192.0.2.99"}
	checkedService(t, f, spec, realAt("192.0.2.10", 2), realAt("192.0.2.11", 2))
	svc, _ := f.Service("web")
	hash := svc.Check.Hash()
	set := func(key string, up bool, check string) int {
		t.Helper()
		r := applyCmd(t, f, f.Index()+1, &SetHealth{Changes: []HealthChange{{Service: "web", Key: key, Up: up, Check: check, Reason: "r"}}})
		if r.Err != nil {
			t.Fatal(r.Err)
		}
		return r.Object.(int)
	}
	lost := func() bool { s, _ := f.Service("web"); return s.QuorumLost }
	if set("192.0.2.10:80", false, hash) != 1 || lost() {
		t.Fatal("one of two down: weight 2 is not below quorum-hysteresis 2")
	}
	if set("192.0.2.10:80", false, hash) != 0 {
		t.Fatal("a repeated decision is not a transition")
	}
	if set("192.0.2.11:80", false, "stale") != 0 {
		t.Fatal("a decision for another check spec applied")
	}
	if set("192.0.2.99:80", false, "") != 0 {
		t.Fatal("a decision for an unknown real server applied")
	}
	set("192.0.2.11:80", false, hash)
	if !lost() {
		t.Fatal("weight 0 < 2: quorum must be lost")
	}
	set("192.0.2.11:80", true, hash)
	if !lost() {
		t.Fatal("weight 2 < quorum+hysteresis 4: still lost (hysteresis)")
	}
	// An operator update keeps the cluster's decision.
	r, _, _ := f.Real("web", "192.0.2.10:80")
	r.Weight = 5
	r.Health = &model.RealHealth{Up: true}
	if res := applyCmd(t, f, f.Index()+1, &UpdateReal{Service: "web", Key: r.Key(), Real: r}); res.Err != nil {
		t.Fatal(res.Err)
	}
	if r, _, _ := f.Real("web", "192.0.2.10:80"); r.Healthy() {
		t.Fatal("an operator write overrode the health decision")
	}
	set("192.0.2.10:80", true, hash)
	if lost() {
		t.Fatal("weight 7 ≥ 4: quorum must be back")
	}
	// Removing the check forgets the decisions.
	set("192.0.2.10:80", false, hash)
	spec2, _ := f.ServiceSpec("web")
	spec2.Check = nil
	if res := applyCmd(t, f, f.Index()+1, &UpdateService{Name: "web", Spec: spec2}); res.Err != nil {
		t.Fatal(res.Err)
	}
	if r, _, _ := f.Real("web", "192.0.2.10:80"); r.Health != nil {
		t.Fatalf("decision kept after the check was removed: %+v", r.Health)
	}
}

func TestStartDown(t *testing.T) {
	f := New(nil)
	spec := webSpec()
	spec.Check = &model.Check{Type: "tcp", StartDown: true}
	checkedService(t, f, spec, realAt("192.0.2.10", 1))
	if r, _, _ := f.Real("web", "192.0.2.10:80"); r.Healthy() {
		t.Fatal("start_down: a new real server must start down")
	}
	if s, _ := f.Service("web"); !s.QuorumLost {
		t.Fatal("no healthy weight: quorum lost")
	}
}

func TestReleaseLeaseRecordsTheEntrysTerm(t *testing.T) {
	f := New(nil)
	b, _ := Encode(&ReleaseLease{Node: "d1"})
	f.Apply(&raft.Log{Index: 7, Term: 4, Type: raft.LogCommand, Data: b})
	r := f.LastRelease()
	if r == nil || r.Term != 4 || r.Index != 7 || r.Node != "d1" {
		t.Fatalf("release %+v", r)
	}
	// Survives a snapshot.
	g := New(nil)
	if err := g.Restore(io.NopCloser(strings.NewReader(string(snapshotBytes(t, f))))); err != nil {
		t.Fatal(err)
	}
	if r := g.LastRelease(); r == nil || r.Term != 4 {
		t.Fatalf("after restore: %+v", r)
	}
	b, _ = Encode(&ReleaseLease{Node: "d1", Cancel: true})
	f.Apply(&raft.Log{Index: 8, Term: 4, Type: raft.LogCommand, Data: b})
	if f.LastRelease() != nil {
		t.Fatal("cancel did not clear the release")
	}
}

func TestNodeLeadershipFields(t *testing.T) {
	n := model.Node{ID: "d1", RaftAddr: "127.0.0.1:1", APIAddr: "127.0.0.1:2"}
	for _, tc := range []struct {
		mut   func(*model.Node)
		field string
	}{
		{func(n *model.Node) { n.Priority = 256 }, "priority"},
		{func(n *model.Node) { n.PreemptDelay = "soon" }, "preempt_delay"},
		{func(n *model.Node) { n.GossipAddr = "x" }, "gossip_addr"},
	} {
		m := n
		tc.mut(&m)
		if _, err := model.NormalizeNode(m); model.AsError(err) == nil || model.AsError(err).Field != tc.field {
			t.Errorf("want %s, got %v", tc.field, err)
		}
	}
	if n.EffectivePriority() != model.DefaultPriority {
		t.Fatal("default priority")
	}
}

func TestSorryServerForwardMustBeExpressible(t *testing.T) {
	f := New(nil)
	n := model.Node{ID: "d1", RaftAddr: "10.0.0.1:7481", APIAddr: "10.0.0.1:7480", Dataplane: "nft",
		Caps: &model.DataplaneCaps{Schedulers: model.Schedulers, Forwards: []string{model.ForwardNAT}}}
	if r := applyCmd(t, f, 1, &RegisterNode{Node: n}); r.Err != nil {
		t.Fatal(r.Err)
	}
	spec := webSpec()
	spec.SorryServer = &model.SorryServer{Address: "192.0.2.9", Forward: model.ForwardDR}
	r := applyCmd(t, f, 2, &CreateService{Service: spec})
	if r.Err == nil || r.Err.Field != "sorry_server.forward" {
		t.Fatalf("want sorry_server.forward refused, got %v", r.Err)
	}
}
