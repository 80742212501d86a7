package cluster

import (
	"fmt"
	"testing"
)

// TestTransferToAFollowerWithDeadPooledConnections is the failover
// benchmark's slow planned handover (0.6–0.8 s instead of 30 ms, twice in
// about 230 rounds), made deterministic. n3 led once, so its transport's
// pool keeps connections to n1 and n2; both then restart, which kills those
// connections at the far end; n1, leading again, hands leadership to n3.
// n3's vote requests went out on the dead pooled connections, failed with
// EOF, and n3 lost the term the transfer started: the next leader came an
// election timeout later, one term on, and (no committed release from the
// term just before) waited the VIP claim delay too.
func TestTransferToAFollowerWithDeadPooledConnections(t *testing.T) {
	nodes := startCluster(t, 3, nil)
	lead := func(to *testNode) {
		t.Helper()
		from := waitLeader(t, nodes)
		if from != to {
			if err := from.TransferLeadership(to.ID()); err != nil {
				t.Fatalf("transfer %s -> %s: %v", from.ID(), to.ID(), err)
			}
		}
		eventually(t, to.ID()+" leading", func() error {
			if !to.IsLeader() {
				return fmt.Errorf("%s does not lead", to.ID())
			}
			return nil
		})
		// A commit: every follower has heard from the new leader (so
		// its transport used, and pooled, connections to both).
		waitConverged(t, nodes, applyN(t, nodes, "by-"+to.ID(), 1))
	}
	restart := func(i int) {
		t.Helper()
		old := nodes[i]
		if err := old.Shutdown(); err != nil {
			t.Fatal(err)
		}
		cfg := old.cfg
		cfg.BindAddr = old.Addr()
		nodes[i] = startNodeWith(t, cfg)
	}

	lead(nodes[2]) // n3's pool: connections to n1 and n2
	lead(nodes[1])
	restart(0) // n1: n3's connection to it is dead
	lead(nodes[0])
	restart(1) // n2 too
	waitConverged(t, nodes, applyN(t, nodes, "after-restarts", 1))

	n1, n3 := nodes[0], nodes[2]
	term := n1.raft.CurrentTerm()
	if err := n1.TransferLeadership(n3.ID()); err != nil {
		t.Logf("transfer n1 -> n3: %v", err)
	}
	leader := waitLeader(t, nodes)
	if leader != n3 || leader.raft.CurrentTerm() != term+1 {
		t.Fatalf("after n1 handed over to n3 in term %d: %s leads in term %d; want n3 in term %d (its vote requests failed on dead pooled connections)",
			term, leader.ID(), leader.raft.CurrentTerm(), term+1)
	}
}
