package dataplane

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"

	"github.com/hashicorp/raft"
	"github.com/raftlb/raftlb/fsm"
	"github.com/raftlb/raftlb/model"
)

type fsmLog struct {
	f   *fsm.FSM
	idx uint64
}

func (l *fsmLog) apply(tb testing.TB, c fsm.Command) *fsm.Result {
	tb.Helper()
	b, err := fsm.Encode(c)
	if err != nil {
		tb.Fatal(err)
	}
	l.idx++
	return l.f.Apply(&raft.Log{Index: l.idx, Type: raft.LogCommand, Data: b}).(*fsm.Result)
}

func spec(name, addr string, port int) model.ServiceSpec {
	s := model.NewServiceSpec()
	s.Name, s.Protocol, s.Address, s.Port, s.Scheduler = name, "tcp", addr, port, "wrr"
	return s
}

// healthSpec is spec with random health fields: a check (sometimes
// starting down), inhibit on failure, a quorum with hysteresis and a sorry
// server (sometimes at the address of a real server).
func healthSpec(rnd *rand.Rand, name, addr string, port int) model.ServiceSpec {
	s := spec(name, addr, port)
	if rnd.IntN(4) == 0 {
		return s
	}
	if rnd.IntN(4) != 0 {
		s.Check = &model.Check{Type: "tcp", StartDown: rnd.IntN(3) == 0, Rise: 1 + rnd.IntN(2)} // Rise changes the check's hash
	}
	s.InhibitOnFailure = rnd.IntN(2) == 0
	s.Quorum = rnd.IntN(5)
	s.Hysteresis = rnd.IntN(min(s.EffectiveQuorum(), 2) + 1)
	if rnd.IntN(3) != 0 {
		s.SorryServer = &model.SorryServer{Address: []string{"10.0.0.9", "10.0.0.1"}[rnd.IntN(2)], Port: []int{0, 8080}[rnd.IntN(2)]}
	}
	return s
}

// TestIncrementalEqualsFull drives random changes through a real FSM and
// checks that following them incrementally keeps the kernel equal to a
// full rebuild, including services whose key changes, deletions and
// re-creations under the same name, health decisions (SetHealth), inhibit
// on failure, and quorum lost and regained with a sorry server.
func TestIncrementalEqualsFull(t *testing.T) {
	rnd := rand.New(rand.NewPCG(7, 7))
	log := &fsmLog{f: fsm.New(nil)}
	src := NewFSMSource(log.f, func() bool { return true })
	fb := newFake()
	r := NewReconciler(fb, Options{})
	r.FullPass(src.Desired())
	names := []string{"a", "b", "c", "d"}
	addrs := []string{"192.0.2.1", "192.0.2.2", "192.0.2.3"}
	realKey := func() string { return fmt.Sprintf("10.0.0.%d:8080", 1+rnd.IntN(5)) }
	incremental := 0
	var seen struct{ down, inhibited, sorry, applied int }
	for step := range 4000 {
		n := names[rnd.IntN(len(names))]
		switch rnd.IntN(8) {
		case 0:
			log.apply(t, &fsm.CreateService{Service: healthSpec(rnd, n, addrs[rnd.IntN(3)], 80+rnd.IntN(2))})
		case 1:
			log.apply(t, &fsm.UpdateService{Name: n, Spec: healthSpec(rnd, n, addrs[rnd.IntN(3)], 80+rnd.IntN(2))})
		case 2:
			log.apply(t, &fsm.DeleteService{Name: n})
		case 3, 4:
			rs := model.NewRealServer()
			rs.Address, rs.Port, rs.Weight = fmt.Sprintf("10.0.0.%d", 1+rnd.IntN(5)), 8080, rnd.IntN(4)
			rs.State = []string{"enabled", "drain", "disabled"}[rnd.IntN(3)]
			if rnd.IntN(2) == 0 {
				log.apply(t, &fsm.CreateReal{Service: n, Real: rs})
			} else {
				log.apply(t, &fsm.UpdateReal{Service: n, Key: rs.Key(), Real: rs})
			}
		case 5, 6:
			// The leader's decisions, in a batch over several services;
			// some for a check spec that changed since (skipped).
			var c fsm.SetHealth
			for range 1 + rnd.IntN(4) {
				ch := fsm.HealthChange{Service: names[rnd.IntN(len(names))], Key: realKey(), Up: rnd.IntN(2) == 0, Reason: "test"}
				if svc, ok := log.f.Service(ch.Service); ok && len(svc.Reals) > 0 && rnd.IntN(4) != 0 {
					ch.Key = svc.Reals[rnd.IntN(len(svc.Reals))].Key() // mostly real servers that exist
				}
				if sp, ok := log.f.ServiceSpec(ch.Service); ok && sp.Check != nil && rnd.IntN(4) != 0 {
					ch.Check = sp.Check.Hash()
				} else if rnd.IntN(2) == 0 {
					ch.Check = "stale"
				}
				c.Changes = append(c.Changes, ch)
			}
			res := log.apply(t, &c)
			if res.Err != nil {
				t.Fatal(res.Err)
			}
			seen.applied += res.Object.(int)
		default:
			log.apply(t, &fsm.DeleteReal{Service: n, Key: realKey()})
		}
		if rnd.IntN(3) == 0 {
			continue // several FSM changes per pass, as when writes arrive together
		}
		if _, ok := src.DesiredSince(r.since); ok {
			incremental++
		}
		r.syncFrom(src)
		services := log.f.Services()
		want, _ := FromFSM(services)
		if got := fb.snapshot(); !reflect.DeepEqual(got, want) {
			t.Fatalf("step %d: kernel differs from a full rebuild:\n got %v\nwant %v", step, got, want)
		}
		for _, s := range services {
			if s.QuorumLost && s.SorryServer != nil {
				seen.sorry++
			}
			for _, rs := range s.Reals {
				if !rs.Healthy() && rs.State != model.StateDisabled {
					seen.down++
					if s.InhibitOnFailure {
						seen.inhibited++
					}
				}
			}
		}
	}
	if incremental < 1000 {
		t.Fatalf("only %d passes were incremental", incremental)
	}
	if seen.applied < 100 || seen.down < 100 || seen.inhibited < 50 || seen.sorry < 50 {
		t.Fatalf("the health paths were hardly exercised: %+v", seen)
	}
	t.Logf("%d incremental passes; health: %+v", incremental, seen)
}

// TestIncrementalTouchesOnlyTheChange: one real server added to a large
// table reaches the backend as one change.
func TestIncrementalTouchesOnlyTheChange(t *testing.T) {
	log := &fsmLog{f: fsm.New(nil)}
	for i := range 20 {
		c := &fsm.CreateService{Service: spec(fmt.Sprintf("s%d", i), fmt.Sprintf("192.0.2.%d", i+1), 80)}
		for j := range 50 {
			c.Reals = append(c.Reals, model.RealServer{Address: fmt.Sprintf("10.%d.0.%d", i, j+1), Weight: 1})
		}
		if res := log.apply(t, c); res.Err != nil {
			t.Fatal(res.Err)
		}
	}
	src := NewFSMSource(log.f, func() bool { return true })
	fb := newFake()
	r := NewReconciler(fb, Options{})
	r.FullPass(src.Desired())
	fb.takeApplied()
	log.apply(t, &fsm.CreateReal{Service: "s7", Real: model.RealServer{Address: "10.7.1.1", Weight: 2}})
	r.syncFrom(src)
	if got := fb.takeApplied(); len(got) != 1 || got[0].Op != AddDest {
		t.Fatalf("got %v", got)
	}
}

// BenchmarkIncrementalChangeAt100k is BenchmarkChangeAt100k through the
// FSM's change tracking: only the changed service is rebuilt and diffed.
func BenchmarkIncrementalChangeAt100k(b *testing.B) {
	log := &fsmLog{f: fsm.New(nil)}
	for i := range 100 {
		c := &fsm.CreateService{Service: spec(fmt.Sprintf("s%d", i), fmt.Sprintf("192.0.%d.%d", i/250, i%250+1), 80)}
		for j := range 1000 {
			c.Reals = append(c.Reals, model.RealServer{Address: fmt.Sprintf("10.%d.%d.%d", i, j/250, j%250+1), Weight: 1})
		}
		if res := log.apply(b, c); res.Err != nil {
			b.Fatal(res.Err)
		}
	}
	src := NewFSMSource(log.f, func() bool { return true })
	fb := newFake()
	r := NewReconciler(fb, Options{})
	r.FullPass(src.Desired())
	fb.takeApplied()
	key := "10.7.0.4:80"
	b.ResetTimer()
	for i := range b.N {
		log.apply(b, &fsm.UpdateReal{Service: "s7", Key: key, Real: model.RealServer{Address: "10.7.0.4", Port: 80, Weight: 2 + i%2}})
		r.syncFrom(src)
	}
	b.StopTimer()
	if got := len(fb.takeApplied()); got != b.N {
		b.Fatalf("%d kernel ops for %d changes", got, b.N)
	}
}
