package cluster

import (
	"slices"
	"strconv"
	"time"

	"github.com/hashicorp/raft"
)

// Prompt elections.
//
// hashicorp/raft's follower looks for a lost leader only when its heartbeat
// timer fires, at random intervals of one to two heartbeat timeouts, so it
// notices a dead leader between 1 and 3 heartbeat timeouts after the last
// contact. It also refuses votes and pre-votes while it still knows a leader,
// and forgets the leader only on that same check. So after a leader dies the
// first follower to notice is usually refused by the others, and the
// election waits until enough of them have noticed too (or for a retry an
// election timeout later): before this, lan (300 ms) SIGKILL gaps measured
// 0.85 s median and 1.34 s max; now 0.39 s and 0.43 s (docs/benchmarks.md).
//
// promptElections removes the randomness of the check without changing its
// rule. Each voter watches its own raft.LastContact and, once the leader has
// been silent for HeartbeatTimeout plus its slot (below), makes raft run the
// check now: raft.ReloadConfig with a heartbeat timeout lowered by 1 ns
// resets the follower's timer to fire at once (the documented behaviour for
// a shorter timeout), and the old value is restored straight after. Raft's
// own condition still decides: the follower starts an election only if it
// has not heard from a leader for a heartbeat timeout. Safety does not
// depend on when elections start (docs/fencing.md: the lease argument uses
// only the barrier and ClaimDelay).
//
// Slots stagger the voters so the first election succeeds. A voter that has
// run the check has forgotten the leader, so it grants the pre-vote of a
// voter that checks after it. With pre-vote (on by default), a candidate
// whose pre-vote fails has not raised its term and votes for a later one.
// So the voter in slot k wins if k earlier voters (k = quorum-1) have
// checked. electionSlot puts the most preferred successor in slot quorum-1
// and the others around it; see its comment. A voter whose log is behind
// (shiftForLog) cannot win a vote against the others and goes first.

// electionSlot returns the slot, in units of the stagger, at which self runs
// the leader check after the heartbeat timeout. order lists the voters other
// than the lost leader, most preferred successor first; quorum is the number
// of votes an election needs. The most preferred voter takes slot quorum-1
// (so the quorum-1 voters before it are candidates that grant its pre-vote),
// the next voters take slots 0, 1, … below it, and the rest follow it: if a
// voter below it is down, a later slot completes the quorum. ok is false if
// self is not in order.
func electionSlot(order []string, self string, quorum int) (slot int, ok bool) {
	i := slices.Index(order, self)
	if i < 0 {
		return 0, false
	}
	first := min(quorum-1, len(order)-1)
	if first < 0 {
		first = 0
	}
	if i == 0 {
		return first, true
	}
	if s := i - 1; s < first {
		return s, true
	}
	return i, true
}

// electionStagger is the spacing of the slots: long enough for a voter to
// run its check and become a candidate before the next slot's pre-vote
// arrives (a local timer and one fsync-free state change), short against the
// heartbeat timeout.
func electionStagger(heartbeat time.Duration) time.Duration {
	return max(heartbeat/10, 5*time.Millisecond)
}

// SetSuccessorPreference sets how this node ranks the voters that could
// succeed a lost leader: order receives their IDs sorted by ID and returns
// them most preferred first (it may reorder the slice it is given). nil
// means by ID. Every node should use the same preference; a disagreement
// only costs the staggering (raft's own retries still elect someone).
func (n *Node) SetSuccessorPreference(order func(ids []string) []string) {
	if order == nil {
		n.preference.Store(nil)
		return
	}
	n.preference.Store(&order)
}

// promptElections runs until Shutdown; see the comment at the top of the file.
func (n *Node) promptElections() {
	defer close(n.promptDone)
	var handled time.Time // the last contact this node already acted on
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-n.stopNotify:
			return
		case <-timer.C:
		}
		timer.Reset(n.checkLeaderSilence(&handled))
	}
}

// checkLeaderSilence makes raft check for a lost leader if this follower's
// slot has come, and returns how long to wait before looking again.
func (n *Node) checkLeaderSilence(handled *time.Time) time.Duration {
	hb := n.raft.ReloadableConfig().HeartbeatTimeout
	if n.raft.State() != raft.Follower {
		return hb
	}
	last := n.raft.LastContact()
	if last.IsZero() || last.Equal(*handled) {
		return hb // never had a leader (raft's own timer elects), or done
	}
	if wait := time.Until(last.Add(hb)); wait > 0 {
		return wait
	}
	slot, ok := n.mySlot()
	if !ok {
		*handled = last
		return hb
	}
	if wait := time.Until(last.Add(hb + time.Duration(slot)*electionStagger(hb))); wait > 0 {
		return wait
	}
	*handled = last
	n.runLeaderCheck(slot)
	return hb
}

// mySlot works out this node's slot from the latest configuration, the
// leader it still knows and whether its own log is behind. ok is false if
// this node has no vote.
func (n *Node) mySlot() (int, bool) {
	conf, _, err := n.configuration()
	if err != nil {
		return 0, false
	}
	_, leader := n.raft.LeaderWithID()
	voters := 0
	var ids []string
	for _, s := range conf.Servers {
		if s.Suffrage != raft.Voter {
			continue
		}
		voters++
		if s.ID != leader {
			ids = append(ids, string(s.ID))
		}
	}
	slices.Sort(ids)
	if p := n.preference.Load(); p != nil {
		ids = (*p)(ids)
	}
	slot, ok := electionSlot(ids, n.id, voters/2+1)
	if !ok {
		return 0, false
	}
	stats := n.raft.Stats()
	lastLogTerm, _ := strconv.ParseUint(stats["last_log_term"], 10, 64)
	term, _ := strconv.ParseUint(stats["term"], 10, 64)
	return shiftForLog(slot, lastLogTerm < term), true
}

// shiftForLog moves a voter whose log is behind to the front. Every leader
// writes an entry in its term, so a voter with no entry from the current
// term lacks at least that one and loses a (pre-)vote against any voter that
// has it: it should be the one to forget the leader first (slot 0, the
// others one slot later), so the up-to-date voters' pre-votes find it ready.
// Seen in the failover benchmark: a director restarted a second before the
// leader died had not yet been sent the new term's entries (hashicorp/raft
// backs off replication to a peer that was down) and, as the preferred
// successor, cost an election timeout.
func shiftForLog(slot int, behind bool) int {
	if behind {
		return 0
	}
	return slot + 1
}

// runLeaderCheck makes raft's follower loop run its heartbeat check now
// (see the comment at the top of the file).
func (n *Node) runLeaderCheck(slot int) {
	n.profileMu.Lock()
	defer n.profileMu.Unlock()
	rc := n.raft.ReloadableConfig()
	lowered := rc
	lowered.HeartbeatTimeout -= time.Nanosecond
	if err := n.raft.ReloadConfig(lowered); err != nil {
		n.logger.Warn("prompt election: lowering the heartbeat timeout failed", "error", err)
		return
	}
	if err := n.raft.ReloadConfig(rc); err != nil {
		n.logger.Error("prompt election: restoring the heartbeat timeout failed", "error", err)
	}
	n.logger.Info("leader silent for a heartbeat timeout: checking now", "slot", slot)
}
