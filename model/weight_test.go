package model

import "testing"

// TestWeights: the one place the dataplane weight and the quorum's
// healthy weight are derived (the FSM, the dataplane and the CLI used to
// compute them each).
func TestWeights(t *testing.T) {
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
}
