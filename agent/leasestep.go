package agent

import (
	"fmt"
	"reflect"
	"time"

	"github.com/raftlb/raftlb/api/wire"
	"github.com/raftlb/raftlb/cluster"
	"github.com/raftlb/raftlb/model"
)

// The VIP lease as a pure state machine. leaseMachine.Step takes every
// input the decision to hold the VIPs depends on and returns the decision,
// with its reason, and the actions that carry it out; it does no I/O and
// reads no clock. The loop in lease.go gathers the inputs, performs the
// actions in order and reports each back (Done, or Failed for a fence
// action, which replans the rest of the pass). docs/fencing.md has the
// argument the decision rests on (cluster.DecideLease).
//
// One pass, in order:
//
//  1. leadership and term: a new term restarts the lease (and its
//     confirmer); losing leadership forgets it;
//  2. the newest quorum confirmation of this term, and whether the holder of
//     the term just before committed its release (planned handover: no
//     claim delay);
//  3. cluster.DecideLease, then what overrides it: released for a handover,
//     a tracked check failing (and, once VRRP comes, the VRRP election);
//  4. the kernel fence: every VIP of the state declared; the fence lease
//     renewed up to the VIP lease's end before anything is held or
//     announced, revoked when no longer holding;
//  5. the decision published (announcements are gated on it), then the
//     VIP links told what to hold;
//  6. a handover request answered, and the next wake-up: the lease's end
//     or the claim delay's.

// leaseInput is what one pass looks at.
type leaseInput struct {
	Now    time.Time
	Leader bool
	Term   uint64
	// Confirmed is the start time of the newest quorum confirmation
	// committed since the last pass (zero: none new).
	Confirmed   time.Time
	LastRelease *model.LeaseRelease // the last planned release in the state
	Fault       string              // a tracked check failing ("" = none)
	VIPs        []model.VIP         // every VIP of the state
	// Request is a handover request taken this pass: release the VIPs
	// (true) or take them back (false); nil: none.
	Request *bool
}

// leaseActionKind is what the loop does for one action.
type leaseActionKind int

const (
	actStartConfirmer leaseActionKind = iota // confirmations for this term (the previous term's stop)
	actStopConfirmer                         // no longer leader
	actFenceDeclare                          // fence.SetVIPs(VIPs)
	actFenceRenew                            // fence.Renew(declared, For)
	actFenceRevoke                           // fence.Revoke()
	actPublish                               // the status view (and the announcement gate)
	actSetVIPs                               // links hold exactly VIPs
	actReply                                 // answer the handover request with Entitled
)

func (k leaseActionKind) String() string {
	return [...]string{"start-confirmer", "stop-confirmer", "fence-declare", "fence-renew", "fence-revoke", "publish", "set-vips", "reply"}[k]
}

// leaseAction is one thing to do.
type leaseAction struct {
	Kind     leaseActionKind
	VIPs     []model.VIP      // declare, set
	Hold     bool             // set: holding (also with no VIPs in the state)
	For      time.Duration    // renew
	View     wire.LeaseStatus // publish
	Entitled bool             // reply
}

// leaseStep is the outcome of one pass.
type leaseStep struct {
	Decision cluster.LeaseDecision
	// Entitled is what the lease alone allows (before a release or a fault
	// overrides it); a handover request is answered with it.
	Entitled bool
	Actions  []leaseAction
	// Changed: holding changed in this pass (log it).
	Changed bool
	// Wake is when to run a pass again without an event (zero: only on
	// one).
	Wake time.Time
}

// leaseMachine is the lease's state between passes. Not safe for
// concurrent use: the lease loop owns it.
type leaseMachine struct {
	lt cluster.LeaseTiming

	st       cluster.LeaseState // leader, since, confirmed, released-by-previous
	term     uint64
	released bool // released for a planned handover in this term
	view     wire.LeaseStatus
	wonAt    time.Time // leadership won, until the VIPs are held (the failover's duration)

	// What the actions made true (Done):
	holding bool
	held    []model.VIP
	fenced  []model.VIP // declared to the fence; nil = not yet
}

func newLeaseMachine(lt cluster.LeaseTiming, fenced []model.VIP) *leaseMachine {
	m := &leaseMachine{lt: lt, fenced: fenced}
	m.view.Duration, m.view.ClaimDelay = lt.Duration.String(), lt.ClaimDelay.String()
	return m
}

// Step runs one pass.
func (m *leaseMachine) Step(in leaseInput) leaseStep {
	var s leaseStep
	if in.Request != nil && !*in.Request {
		m.released = false // taking the VIPs back: answered at once
		s.Actions = append(s.Actions, leaseAction{Kind: actReply, Entitled: true})
	}
	s.Actions = append(s.Actions, m.observe(in)...)
	if in.Request != nil && *in.Request {
		m.released = m.st.Leader
	}
	d := cluster.DecideLease(m.lt, m.state(), in.Now)
	s.Entitled = d.Hold
	switch {
	case m.released && d.Hold:
		d = cluster.LeaseDecision{Reason: "released for a planned handover"}
	case in.Fault != "" && d.Hold:
		d = cluster.LeaseDecision{Reason: "tracked check failing: " + in.Fault}
	}
	if !reflect.DeepEqual(in.VIPs, m.fenced) {
		s.Actions = append(s.Actions, leaseAction{Kind: actFenceDeclare, VIPs: in.VIPs})
	}
	// The kernel fence's lease is renewed before an address is added or
	// announced, and ends when the VIP lease does: a killed or frozen
	// daemon loses the VIPs in the kernel without its help.
	if d.Hold {
		s.Actions = append(s.Actions, leaseAction{Kind: actFenceRenew, For: d.Until.Sub(in.Now)})
	} else if m.holding {
		s.Actions = append(s.Actions, leaseAction{Kind: actFenceRevoke})
	}
	return m.finish(s, d, in)
}

// Failed replans the rest of a pass after a fence action of it failed:
// nothing after that action was done. A fence that cannot be declared or
// renewed means holding nothing.
func (m *leaseMachine) Failed(prev leaseStep, a leaseAction, err error, in leaseInput) leaseStep {
	s := leaseStep{Entitled: prev.Entitled}
	var d cluster.LeaseDecision
	switch a.Kind {
	case actFenceDeclare:
		d.Reason = "kernel fence failed: " + err.Error()
		if m.holding {
			s.Actions = append(s.Actions, leaseAction{Kind: actFenceRevoke})
		}
	case actFenceRenew:
		d.Reason = "kernel fence renewal failed: " + err.Error()
	default:
		d.Reason = fmt.Sprintf("%s failed: %v", a.Kind, err)
	}
	return m.finish(s, d, in)
}

// finish adds what every pass ends with: the decision published, the VIP
// links set, the request answered, the wake-up.
func (m *leaseMachine) finish(s leaseStep, d cluster.LeaseDecision, in leaseInput) leaseStep {
	s.Decision = d
	var want []model.VIP
	if d.Hold {
		want = in.VIPs
	}
	v := m.view
	v.Holding, v.Until, v.Reason = d.Hold, d.Until, d.Reason
	if d.Hold && !m.holding && !m.wonAt.IsZero() {
		v.LastFailover = in.Now.Sub(m.wonAt).Round(time.Millisecond).String()
	}
	// Publish first: the VIP manager's announcements are gated on it.
	s.Actions = append(s.Actions, leaseAction{Kind: actPublish, View: v})
	if d.Hold != m.holding || !reflect.DeepEqual(want, m.held) {
		s.Actions = append(s.Actions, leaseAction{Kind: actSetVIPs, VIPs: want, Hold: d.Hold})
		s.Changed = d.Hold != m.holding
	}
	if in.Request != nil && *in.Request {
		// Answered once the VIPs are gone (or were never held).
		s.Actions = append(s.Actions, leaseAction{Kind: actReply, Entitled: s.Entitled})
	}
	switch {
	case d.Hold:
		s.Wake = d.Until
	case m.st.Leader && !m.st.ConfirmedAt.IsZero():
		s.Wake = m.st.LeaderSince.Add(m.lt.ClaimDelay)
	}
	if !s.Wake.After(in.Now) {
		s.Wake = time.Time{}
	}
	return s
}

// observe takes leadership, the term and the newest confirmation into the
// state. The confirmation is judged after leadership: one that committed
// in a later term than the state's (leadership lost and won again, seen as
// one change) starts before that term's LeaderSince and does not count, so
// the new term still waits its claim delay.
func (m *leaseMachine) observe(in leaseInput) []leaseAction {
	var acts []leaseAction
	switch {
	case !in.Leader:
		if m.st.Leader {
			acts = append(acts, leaseAction{Kind: actStopConfirmer})
		}
		m.st, m.term, m.released = cluster.LeaseState{}, in.Term, false
	case !m.st.Leader || in.Term != m.term:
		m.st, m.term, m.released = cluster.LeaseState{Leader: true, LeaderSince: in.Now}, in.Term, false
		m.wonAt = in.Now
		acts = append(acts, leaseAction{Kind: actStartConfirmer})
	}
	t := in.Confirmed
	if !m.st.Leader || t.IsZero() || t.Before(m.st.LeaderSince) {
		return acts
	}
	m.st.ConfirmedAt = t
	// The barrier applied every earlier entry: a release committed by the
	// holder of the term just before this one means no lease can be
	// outstanding.
	if rel := in.LastRelease; !m.st.Released && rel != nil && rel.Term+1 == m.term {
		m.st.Released = true
		m.view.ClaimedOnRelease = true
	} else if !m.st.Released {
		m.view.ClaimedOnRelease = false
	}
	return acts
}

func (m *leaseMachine) state() cluster.LeaseState {
	st := m.st
	st.Holding = m.holding
	return st
}

// Done records that the loop performed a (a failed VIP Set counts: the VIP
// manager's refresh pass retries it).
func (m *leaseMachine) Done(a leaseAction) {
	switch a.Kind {
	case actFenceDeclare:
		m.fenced = a.VIPs
	case actPublish:
		m.view = a.View
	case actSetVIPs:
		if a.Hold && !m.holding {
			m.wonAt = time.Time{} // this term's failover is measured
		}
		m.held, m.holding = a.VIPs, a.Hold
	}
}
