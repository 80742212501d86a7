package agent

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/raftlb/raftlb/api/wire"
	"github.com/raftlb/raftlb/model"
)

// Who should lead. Raft elects whichever voter times out first; the leader
// then moves leadership to where the operator wants it, as VRRP priorities
// do: away at once from a witness or a director whose tracked checks fail,
// and to a higher-priority director once it has been healthy and caught up
// for its preempt delay (never to one with nopreempt). The decision is the
// pure function decideLeadership; leadershipLoop feeds it and acts.

// candidate is one voter as the leadership decision sees it.
type candidate struct {
	ID           string
	Priority     int
	PreemptDelay time.Duration
	NoPreempt    bool
	Witness      bool
	Fault        string
	// Ready: registered, answering its API, following this leader and
	// caught up with its log (checked by the loop; always true for self).
	Ready bool
}

// eligible reports whether c may lead.
func (c candidate) eligible() bool { return c.Ready && !c.Witness && c.Fault == "" }

// leadershipDecision is what the leader should do now.
type leadershipDecision struct {
	Target string    // hand leadership to this voter now ("" = stay)
	Reason string    // why (for the log and status)
	WakeAt time.Time // re-evaluate at this time at the latest (zero: on the next tick)
}

// decideLeadership decides, for the current leader self, whether to hand
// leadership over and to whom. readySince holds when each other voter has
// been continuously eligible (the loop maintains it).
func decideLeadership(self candidate, others []candidate, readySince map[string]time.Time, now time.Time) leadershipDecision {
	var best *candidate
	for i := range others {
		c := &others[i]
		if !c.eligible() {
			continue
		}
		if best == nil || c.Priority > best.Priority || (c.Priority == best.Priority && c.ID < best.ID) {
			best = c
		}
	}
	mustLeave := ""
	switch {
	case self.Witness:
		mustLeave = "this director is a witness"
	case self.Fault != "":
		mustLeave = "tracked check failing: " + self.Fault
	}
	if mustLeave != "" {
		if best == nil {
			return leadershipDecision{Reason: mustLeave + "; no eligible director to hand leadership to"}
		}
		return leadershipDecision{Target: best.ID, Reason: mustLeave}
	}
	if best == nil || best.Priority <= self.Priority {
		return leadershipDecision{Reason: "no eligible director with a higher priority"}
	}
	if best.NoPreempt {
		return leadershipDecision{Reason: fmt.Sprintf("%s has priority %d > %d but nopreempt", best.ID, best.Priority, self.Priority)}
	}
	since, ok := readySince[best.ID]
	if !ok {
		since = now
	}
	if at := since.Add(best.PreemptDelay); now.Before(at) {
		return leadershipDecision{Reason: fmt.Sprintf("%s (priority %d > %d) preempts in %v", best.ID, best.Priority, self.Priority, at.Sub(now).Round(time.Millisecond)), WakeAt: at}
	}
	return leadershipDecision{Target: best.ID, Reason: fmt.Sprintf("preempted by %s (priority %d > %d)", best.ID, best.Priority, self.Priority)}
}

// candidateFromNode turns a registration into a candidate (Ready unset).
func candidateFromNode(n model.Node) candidate {
	d, _ := time.ParseDuration(n.PreemptDelay)
	return candidate{ID: n.ID, Priority: n.EffectivePriority(), PreemptDelay: d, NoPreempt: n.NoPreempt, Witness: n.Witness, Fault: n.Fault}
}

// successorPreference orders the voters that could succeed a lost leader
// the way the leader would choose (cluster.Node.SetSuccessorPreference): so
// that the first election after a crash usually elects the director the
// leadership loop would pick anyway, saving a handover. Eligible directors
// first (not a witness, no failing tracked check), then by priority, then by
// ID; unregistered voters last. Every director computes it from the same
// replicated registrations.
func (a *Agent) successorPreference(ids []string) []string {
	type ranked struct {
		id       string
		known    bool
		eligible bool
		priority int
	}
	rs := make([]ranked, len(ids))
	for i, id := range ids {
		rs[i].id = id
		if n, ok := a.fsm.Node(id); ok {
			c := candidateFromNode(n)
			rs[i] = ranked{id: id, known: true, eligible: c.eligibleIgnoringReady(), priority: c.Priority}
		}
	}
	slices.SortStableFunc(rs, func(x, y ranked) int {
		switch {
		case x.known != y.known:
			return boolFirst(x.known)
		case x.eligible != y.eligible:
			return boolFirst(x.eligible)
		case x.priority != y.priority:
			return cmp.Compare(y.priority, x.priority)
		}
		return cmp.Compare(x.id, y.id)
	})
	for i := range rs {
		ids[i] = rs[i].id
	}
	return ids
}

// boolFirst orders true before false for a pair known to differ.
func boolFirst(x bool) int {
	if x {
		return -1
	}
	return 1
}

// maxLagEntries is how far behind the leader's commit index a director may
// be and still count as caught up.
const maxLagEntries = 64

// leadershipTick is how often the leader re-evaluates (and probes the
// candidates that could take over).
const leadershipTick = 250 * time.Millisecond

// leadershipRetry is the re-evaluation period of a leader that must leave
// and has found no successor yet.
const leadershipRetry = 20 * time.Millisecond

// leadershipLoop runs the decision while this director leads.
func (a *Agent) leadershipLoop(ctx context.Context) {
	tick := time.NewTicker(leadershipTick)
	defer tick.Stop()
	leaderCh := a.node.LeaderChanges()
	readySince := map[string]time.Time{}
	retryAt := time.Time{}
	lastReason := ""
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-leaderCh:
		}
		if !a.node.IsLeader() {
			tick.Reset(leadershipTick)
			clear(readySince)
			lastReason = ""
			continue
		}
		now := time.Now()
		self, others := a.candidates(ctx, false)
		for _, c := range others {
			if !c.eligible() {
				delete(readySince, c.ID)
			} else if _, ok := readySince[c.ID]; !ok {
				readySince[c.ID] = now
			}
		}
		d := decideLeadership(self, others, readySince, now)
		// A witness or faulted leader that has nowhere to go yet looks
		// again soon: right after an election the others may not yet
		// know the new leader.
		if d.Target == "" && (self.Witness || self.Fault != "") {
			tick.Reset(leadershipRetry)
		} else {
			tick.Reset(leadershipTick)
		}
		if d.Target != "" || !d.WakeAt.IsZero() || self.Witness || self.Fault != "" {
			a.setLeadershipReason(d.Reason)
		} else {
			a.setLeadershipReason("") // steady: nothing to show
		}
		if d.Reason != lastReason {
			a.log.Info("leadership", "decision", d.Reason, "handover_to", d.Target)
			lastReason = d.Reason
		}
		if d.Target == "" || now.Before(retryAt) {
			continue
		}
		if err := a.handover(ctx, d.Target, d.Reason); err != nil {
			a.log.Warn("leadership handover failed; retrying later", "to", d.Target, "err", err)
			retryAt = time.Now().Add(2 * time.Second)
		}
	}
}

// candidates returns this director and the other voters. Other voters are
// probed through their API only when they could matter (a higher priority,
// or this director must hand leadership away: leaving), so a steady
// cluster costs nothing.
func (a *Agent) candidates(ctx context.Context, leaving bool) (self candidate, others []candidate) {
	self = candidateFromNode(a.wantNode())
	self.Ready = true
	peers, err := a.node.Peers()
	if err != nil {
		return self, nil
	}
	st := a.node.Status()
	mustLeave := leaving || self.Witness || self.Fault != ""
	for _, p := range peers {
		if p.ID == self.ID || p.Suffrage != "voter" {
			continue
		}
		n, ok := a.fsm.Node(p.ID)
		if !ok {
			continue
		}
		c := candidateFromNode(n)
		if c.eligibleIgnoringReady() && (mustLeave || (c.Priority > self.Priority && !c.NoPreempt)) {
			c.Ready = a.peerReady(ctx, n, st.CommitIndex)
		}
		others = append(others, c)
	}
	slices.SortFunc(others, func(x, y candidate) int { return cmp.Compare(x.ID, y.ID) })
	return self, others
}

func (c candidate) eligibleIgnoringReady() bool { c.Ready = true; return c.eligible() }

// peerReady asks a director's API whether it follows this leader and is
// caught up.
func (a *Agent) peerReady(ctx context.Context, n model.Node, commit uint64) bool {
	cl, err := a.self.WithAddr(n.APIScheme + "://" + n.APIAddr)
	if err != nil {
		return false
	}
	cctx, cancel := context.WithTimeout(ctx, leadershipTick)
	defer cancel()
	st, err := cl.Status(cctx)
	if err != nil {
		return false
	}
	return st.LeaderID == a.cfg.NodeID && st.AppliedIndex+maxLagEntries >= commit
}

func (a *Agent) setLeadershipReason(r string) {
	a.leaseMu.Lock()
	a.leadership = r
	a.leaseMu.Unlock()
}

// leadershipStatus is the "leadership" part of /v1/status.
func (a *Agent) leadershipStatus() *wire.LeadershipStatus {
	a.leaseMu.Lock()
	decision := a.leadership
	a.leaseMu.Unlock()
	if !a.node.IsLeader() {
		decision = ""
	}
	n := a.wantNode()
	return &wire.LeadershipStatus{Priority: n.EffectivePriority(), PreemptDelay: n.PreemptDelay, NoPreempt: n.NoPreempt,
		Witness: n.Witness, Fault: n.Fault, Decision: decision}
}
