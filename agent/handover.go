package agent

import (
	"context"
	"fmt"
	"time"

	"github.com/raftlb/raftlb/fsm"
)

// Planned handover (SIGTERM, preemption, a failing tracked check, a
// witness elected): the leader releases the VIPs itself, commits that
// release to the raft log, then transfers leadership. The next leader
// finds the release of the term just before its own in the log and claims
// the VIPs at once instead of waiting out the lease (docs/fencing.md), so
// the gap is a leadership transfer plus one commit, not a lease.

// leaseCmd asks the lease loop to release the VIPs (and hold nothing while
// released) or to resume.
type leaseCmd struct {
	release bool
	// reply: for a release, whether this director was entitled to the
	// VIPs when it released them (only then may the release be committed).
	reply chan bool
}

// askLease sends c to the lease loop and returns its reply; false if the
// loop is not running.
func (a *Agent) askLease(ctx context.Context, release bool) bool {
	if a.leaseCtl == nil {
		return false
	}
	c := leaseCmd{release: release, reply: make(chan bool, 1)}
	select {
	case a.leaseCtl <- c:
	case <-ctx.Done():
		return false
	case <-a.leaseDone:
		return false
	}
	select {
	case ok := <-c.reply:
		return ok
	case <-ctx.Done():
		return false
	case <-a.leaseDone:
		return false
	}
}

// handover moves leadership from this director to target ("" = raft's
// choice), releasing the VIPs first. On failure this director stays leader
// and takes the VIPs back (after committing that the release is cancelled).
func (a *Agent) handover(ctx context.Context, target, why string) error {
	if !a.node.IsLeader() {
		return nil
	}
	start := time.Now()
	entitled := a.askLease(ctx, true)
	committed := false
	if entitled {
		// Released; say so in the log so the next leader need not wait.
		if err := a.applyInternal(&fsm.ReleaseLease{Node: a.cfg.NodeID}, 2*time.Second); err != nil {
			a.log.Warn("could not commit the VIP release; the next leader waits for the lease to run out", "err", err)
		} else {
			committed = true
		}
	}
	err := a.node.TransferLeadership(target)
	if err == nil {
		a.log.Info("leadership handed over", "to", target, "reason", why, "release_committed", committed,
			"took", time.Since(start).Round(time.Millisecond).String())
		return nil
	}
	// Still leader (or not sure): take the VIPs back only once the
	// cancellation is committed, so that no later leader can mistake the
	// release for a current one.
	if a.node.IsLeader() {
		if committed {
			if cerr := a.applyInternal(&fsm.ReleaseLease{Node: a.cfg.NodeID, Cancel: true}, 2*time.Second); cerr != nil {
				return fmt.Errorf("transfer to %q: %w; and the release could not be cancelled (VIPs stay released until the next term): %v", target, err, cerr)
			}
		}
		a.askLease(ctx, false)
	}
	return fmt.Errorf("transfer to %q: %w", target, err)
}

// applyInternal commits a command on this director, which must lead, and
// returns the command's own error if the state refused it.
func (a *Agent) applyInternal(c fsm.Command, timeout time.Duration) error {
	res, err := a.fsm.Commit(a.node, c, timeout, 0)
	if err != nil {
		return err
	}
	if res.Err != nil {
		return res.Err
	}
	return nil
}

// bestSuccessor is the director to hand leadership to on shutdown: the
// eligible voter with the highest priority, if any answers.
func (a *Agent) bestSuccessor(ctx context.Context) string {
	self, others := a.candidates(ctx, true)
	self.Witness = true // must leave: the best eligible director, whatever its priority
	d := decideLeadership(self, others, nil, time.Now())
	return d.Target
}
