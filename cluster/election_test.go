package cluster

import (
	"fmt"
	"slices"
	"testing"
)

func TestElectionSlot(t *testing.T) {
	for _, tc := range []struct {
		order  []string
		quorum int
		want   map[string]int
	}{
		// Three voters, leader lost: the preferred successor goes second, so
		// the first has forgotten the leader and grants its pre-vote.
		{[]string{"b", "a"}, 2, map[string]int{"b": 1, "a": 0}},
		// Five voters: two candidates before the preferred one, the last
		// follower after it (it completes a quorum if one of the two is down).
		{[]string{"d", "c", "b", "a"}, 3, map[string]int{"d": 2, "c": 0, "b": 1, "a": 3}},
		// Two voters: the survivor alone can never win; any slot will do.
		{[]string{"a"}, 2, map[string]int{"a": 0}},
		// Seven voters, six followers.
		{[]string{"1", "2", "3", "4", "5", "6"}, 4, map[string]int{"1": 3, "2": 0, "3": 1, "4": 2, "5": 4, "6": 5}},
	} {
		seen := map[int]bool{}
		for id, want := range tc.want {
			got, ok := electionSlot(tc.order, id, tc.quorum)
			if !ok || got != want {
				t.Errorf("electionSlot(%v, %s, %d) = %d, %v; want %d", tc.order, id, tc.quorum, got, ok, want)
			}
			if seen[got] {
				t.Errorf("electionSlot(%v, %d): slot %d given twice", tc.order, tc.quorum, got)
			}
			seen[got] = true
		}
	}
	if got := shiftForLog(1, false); got != 2 {
		t.Errorf("shiftForLog(1, up to date) = %d; want 2", got)
	}
	if got := shiftForLog(1, true); got != 0 {
		t.Errorf("shiftForLog(1, behind) = %d; want 0", got)
	}
	if _, ok := electionSlot([]string{"a", "b"}, "c", 2); ok {
		t.Error("a node outside the order got a slot")
	}
}

// TestPromptElectionElectsThePreferredSuccessor crashes the leader (raft
// stops without a word to its peers) and checks who takes over. Without
// prompt elections the first follower to notice is refused by the other,
// which still knows the dead leader, and whichever notices second wins: the
// preferred successor about half of the time. With them, the less preferred
// follower checks first and the preferred one, a stagger later, wins. Raft's
// own randomized timer can still fire in between (rarely), so one miss in
// the rounds is tolerated.
func TestPromptElectionElectsThePreferredSuccessor(t *testing.T) {
	const rounds = 6
	misses := 0
	for round := range rounds {
		t.Run(fmt.Sprint("round", round), func(t *testing.T) {
			// Prefer the highest ID.
			byIDDesc := func(ids []string) []string { slices.Sort(ids); slices.Reverse(ids); return ids }
			nodes := startCluster(t, 3, func(c *Config) { c.Profile = profileLAN })
			for _, n := range nodes {
				n.SetSuccessorPreference(byIDDesc)
			}
			old := waitLeader(t, nodes)
			// Both followers hold an entry of this term (else the one
			// behind rightly goes first, shiftForLog).
			want0 := applyN(t, nodes, "x", 1)
			waitConverged(t, nodes, want0)
			term := old.raft.CurrentTerm()
			rest := without(nodes, old)
			want := rest[0]
			if rest[1].ID() > want.ID() {
				want = rest[1]
			}
			if err := old.raft.Shutdown().Error(); err != nil { // a crash: no transfer, no goodbye
				t.Fatal(err)
			}
			leader := waitLeader(t, rest)
			if got := leader.raft.CurrentTerm(); got != term+1 {
				t.Logf("new leader %s elected in term %d, %d after the old one", leader.ID(), got, got-term)
			}
			if leader != want {
				misses++
				t.Logf("round %d: %s took over, not the preferred %s", round, leader.ID(), want.ID())
			}
		})
	}
	if misses > 1 {
		t.Errorf("the preferred successor lost %d of %d rounds", misses, rounds)
	}
}
