package model

import "testing"

// TestWeights: the one place the dataplane weight and the quorum's
// healthy weight are derived (the FSM, the dataplane and the CLI used to
// compute them each).
func TestWeights(t *testing.T) {
	ptr := func(w int) *int { return &w }
	dyn := func(w int) *RealHealth { return &RealHealth{Up: true, Weight: ptr(w)} }
	down := &RealHealth{Up: false}
	up := &RealHealth{Up: true}
	for _, tc := range []struct {
		name       string
		r          RealServer
		inhibit    bool
		w          int
		programmed bool
		healthy    int
	}{
		{"enabled", RealServer{Weight: 3, State: StateEnabled}, false, 3, true, 3},
		{"enabled, decided up", RealServer{Weight: 3, State: StateEnabled, Health: up}, false, 3, true, 3},
		{"draining", RealServer{Weight: 3, State: StateDrain}, false, 0, true, 0},
		{"disabled", RealServer{Weight: 3, State: StateDisabled}, false, 0, false, 0},
		{"down", RealServer{Weight: 3, State: StateEnabled, Health: down}, false, 0, false, 0},
		{"down, inhibited", RealServer{Weight: 3, State: StateEnabled, Health: down}, true, 0, true, 0},
		{"disabled, inhibited", RealServer{Weight: 3, State: StateDisabled}, true, 0, false, 0},
		{"weight 0", RealServer{Weight: 0, State: StateEnabled}, false, 0, true, 0},
		{"dynamic weight", RealServer{Weight: 3, State: StateEnabled, Health: dyn(10)}, false, 10, true, 10},
		{"dynamic weight 0: no new connections, like drain", RealServer{Weight: 3, State: StateEnabled, Health: dyn(0)}, false, 0, true, 0},
		{"dynamic weight, draining", RealServer{Weight: 3, State: StateDrain, Health: dyn(10)}, false, 0, true, 0},
		{"dynamic weight, disabled", RealServer{Weight: 3, State: StateDisabled, Health: dyn(10)}, false, 0, false, 0},
		{"a weight on a down decision does not count", RealServer{Weight: 3, State: StateEnabled, Health: &RealHealth{Weight: ptr(10)}}, true, 0, true, 0},
	} {
		s := ServiceSpec{InhibitOnFailure: tc.inhibit}
		w, p := s.EffectiveWeight(tc.r)
		if w != tc.w || p != tc.programmed || tc.r.HealthyWeight() != tc.healthy {
			t.Errorf("%s: weight %d programmed %v healthy %d; want %d %v %d", tc.name, w, p, tc.r.HealthyWeight(), tc.w, tc.programmed, tc.healthy)
		}
	}
	if got := HealthyWeight([]RealServer{{Weight: 2, State: StateEnabled}, {Weight: 5, State: StateDrain}, {Weight: 1, State: StateEnabled}}); got != 3 {
		t.Fatalf("healthy weight %d, want 3", got)
	}
	// The quorum counts the dynamic weight, as keepalived's does.
	if got := HealthyWeight([]RealServer{{Weight: 2, State: StateEnabled, Health: dyn(7)}, {Weight: 1, State: StateEnabled}}); got != 8 {
		t.Fatalf("healthy weight with a dynamic weight %d, want 8", got)
	}
}
