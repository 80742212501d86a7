package dataplane

import (
	"maps"
	"net/netip"
	"slices"
	"testing"

	"github.com/raftlb/raftlb/fsm"
	"github.com/raftlb/raftlb/model"
)

// checkedWeb is a checked service with three real servers: .1 up (no
// decision), .2 decided down, .3 decided up again; .4 down and draining,
// .5 down and disabled.
func checkedWeb() model.Service {
	s := model.Service{ServiceSpec: spec("web", "192.0.2.10", 80)}
	s.Family = model.FamilyInet
	s.Check = &model.Check{Type: "tcp"}
	rs := func(host string, w int, state string, h *model.RealHealth) model.RealServer {
		return model.RealServer{Address: "10.0.0." + host, Port: 8080, Weight: w, State: state, Health: h}
	}
	down, up := &model.RealHealth{Up: false, Since: 7, Reason: "connection refused"}, &model.RealHealth{Up: true, Since: 9}
	s.Reals = []model.RealServer{
		rs("1", 3, model.StateEnabled, nil),
		rs("2", 2, model.StateEnabled, down),
		rs("3", 1, model.StateEnabled, up),
		rs("4", 5, model.StateDrain, down),
		rs("5", 5, model.StateDisabled, down),
	}
	return s
}

// weights returns a destination key → weight map of vs.
func weights(vs VirtualService) map[string]int {
	out := map[string]int{}
	for k, d := range vs.Dests {
		out[k] = d.Weight
	}
	return out
}

func TestFromFSMServiceHealth(t *testing.T) {
	for _, tc := range []struct {
		name string
		mut  func(*model.Service)
		want map[string]int
	}{
		{"a real server decided down leaves", func(*model.Service) {},
			map[string]int{"10.0.0.1:8080": 3, "10.0.0.3:8080": 1}},
		{"inhibit keeps it with weight 0", func(s *model.Service) { s.InhibitOnFailure = true },
			map[string]int{"10.0.0.1:8080": 3, "10.0.0.2:8080": 0, "10.0.0.3:8080": 1, "10.0.0.4:8080": 0}},
		{"quorum lost without a sorry server: the healthy ones keep serving", func(s *model.Service) { s.QuorumLost = true },
			map[string]int{"10.0.0.1:8080": 3, "10.0.0.3:8080": 1}},
		{"quorum lost: only the sorry server takes connections", func(s *model.Service) {
			s.QuorumLost, s.SorryServer = true, &model.SorryServer{Address: "10.0.0.99", Port: 80}
		}, map[string]int{"10.0.0.99:80": 1}},
		{"quorum lost with inhibit: weight-0 destinations keep their connections", func(s *model.Service) {
			s.QuorumLost, s.InhibitOnFailure, s.SorryServer = true, true, &model.SorryServer{Address: "10.0.0.99", Port: 80}
		}, map[string]int{"10.0.0.2:8080": 0, "10.0.0.4:8080": 0, "10.0.0.99:80": 1}},
		{"a sorry server at a real server's address replaces it", func(s *model.Service) {
			s.QuorumLost, s.InhibitOnFailure, s.SorryServer = true, true, &model.SorryServer{Address: "10.0.0.2", Port: 8080}
		}, map[string]int{"10.0.0.2:8080": 1, "10.0.0.4:8080": 0}},
		{"a sorry server while the quorum holds is not used", func(s *model.Service) {
			s.SorryServer = &model.SorryServer{Address: "10.0.0.99", Port: 80}
		}, map[string]int{"10.0.0.1:8080": 3, "10.0.0.3:8080": 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := checkedWeb()
			tc.mut(&s)
			if got := weights(FromFSMService(s)); !maps.Equal(got, tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestSorryServerDestination(t *testing.T) {
	s := checkedWeb()
	s.Forward, s.QuorumLost = model.ForwardDR, true
	s.SorryServer = &model.SorryServer{Address: "10.0.0.99"} // port and forwarding from the service
	vs := FromFSMService(s)
	want := Destination{Address: netip.MustParseAddr("10.0.0.99"), Port: 80, Weight: 1, Forward: model.ForwardDR}
	if d, ok := vs.Dests[want.Key()]; !ok || d != want {
		t.Fatalf("sorry server %+v, want %+v (dests %v)", d, want, slices.Collect(maps.Keys(vs.Dests)))
	}
	s.SorryServer = &model.SorryServer{Address: "10.0.0.99", Port: 8080, Forward: model.ForwardNAT}
	want.Port, want.Forward = 8080, model.ForwardNAT
	if d := FromFSMService(s).Dests[want.Key()]; d != want {
		t.Fatalf("sorry server %+v, want %+v", d, want)
	}
}

// TestHealthThroughTheFSM follows a service through real FSM commands: a
// decision takes a real server out, inhibit keeps it at weight 0, the
// quorum is lost and regained with hysteresis, and a check removed forgets
// the decisions.
func TestHealthThroughTheFSM(t *testing.T) {
	log := &fsmLog{f: fsm.New(nil)}
	sp := spec("web", "192.0.2.10", 80)
	sp.Check = &model.Check{Type: "tcp"}
	sp.Quorum, sp.Hysteresis = 3, 1 // lost below 2, back at 4
	sp.SorryServer = &model.SorryServer{Address: "10.0.0.99"}
	c := &fsm.CreateService{Service: sp}
	for _, a := range []string{"10.0.0.1", "10.0.0.2"} {
		c.Reals = append(c.Reals, model.RealServer{Address: a, Port: 8080, Weight: 2})
	}
	if res := log.apply(t, c); res.Err != nil {
		t.Fatal(res.Err)
	}
	src := NewFSMSource(log.f, func() bool { return true })
	fb := newFake()
	r := NewReconciler(fb, Options{})
	r.FullPass(src.Desired())
	step := func(what string, cmd fsm.Command, want map[string]int) {
		t.Helper()
		if res := log.apply(t, cmd); res.Err != nil {
			t.Fatalf("%s: %v", what, res.Err)
		}
		r.syncFrom(src)
		got := map[string]int{}
		for _, vs := range fb.snapshot() {
			got = weights(vs)
		}
		if !maps.Equal(got, want) {
			t.Fatalf("%s: kernel %v, want %v", what, got, want)
		}
	}
	set := func(key string, up bool) *fsm.SetHealth {
		return &fsm.SetHealth{Changes: []fsm.HealthChange{{Service: "web", Key: key, Up: up}}}
	}
	step("one down (weight 2: not below 2)", set("10.0.0.1:8080", false), map[string]int{"10.0.0.2:8080": 2})
	sp.InhibitOnFailure = true
	step("inhibit", &fsm.UpdateService{Name: "web", Spec: sp}, map[string]int{"10.0.0.1:8080": 0, "10.0.0.2:8080": 2})
	step("both down: quorum lost", set("10.0.0.2:8080", false), map[string]int{"10.0.0.1:8080": 0, "10.0.0.2:8080": 0, "10.0.0.99:80": 1})
	step("one back: still lost (hysteresis)", set("10.0.0.1:8080", true), map[string]int{"10.0.0.2:8080": 0, "10.0.0.99:80": 1})
	step("both back: quorum regained", set("10.0.0.2:8080", true), map[string]int{"10.0.0.1:8080": 2, "10.0.0.2:8080": 2})
	step("down again", set("10.0.0.2:8080", false), map[string]int{"10.0.0.1:8080": 2, "10.0.0.2:8080": 0})
	sp.Check = nil
	step("check removed: decisions forgotten", &fsm.UpdateService{Name: "web", Spec: sp}, map[string]int{"10.0.0.1:8080": 2, "10.0.0.2:8080": 2})
}
