package agent

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/raftlb/raftlb/cluster"
	"github.com/raftlb/raftlb/dataplane/fence"
	"github.com/raftlb/raftlb/dataplane/vip"
	"github.com/raftlb/raftlb/model"
)

// The lease machine, pass by pass, for every transition: gain, claim
// delay, planned handover, lose quorum, freeze, lose leadership, release
// and cancel, tracked fault, fence errors, VIP changes, stale
// confirmations. No goroutine, no clock, no netlink.

var (
	stepT0   = time.Unix(1_700_000_000, 0)
	stepVIPs = []model.VIP{{Address: "192.0.2.10/24", Interface: "eth0", Group: model.DefaultVIPGroup}}
	stepLT   = cluster.LeaseTimingFor(cluster.Profile{HeartbeatTimeout: 100 * time.Millisecond})
)

func at(ms int) time.Time { return stepT0.Add(time.Duration(ms) * time.Millisecond) }

// pass runs one step and reports every action done, as the loop does when
// nothing fails.
func pass(m *leaseMachine, in leaseInput) leaseStep {
	if in.VIPs == nil {
		in.VIPs = stepVIPs
	}
	s := m.Step(in)
	for _, a := range s.Actions {
		m.Done(a)
	}
	return s
}

func kinds(s leaseStep) []string {
	var out []string
	for _, a := range s.Actions {
		out = append(out, a.Kind.String())
	}
	return out
}

func expect(t *testing.T, what string, s leaseStep, hold bool, reason string, acts ...string) {
	t.Helper()
	if s.Decision.Hold != hold || !strings.Contains(s.Decision.Reason, reason) {
		t.Fatalf("%s: hold=%v %q, want hold=%v ~%q", what, s.Decision.Hold, s.Decision.Reason, hold, reason)
	}
	if got := kinds(s); !slices.Equal(got, acts) {
		t.Fatalf("%s: actions %v, want %v", what, got, acts)
	}
}

// gained is a machine that won term 2 at start (ms), not yet confirmed.
func gained(t *testing.T, start int) *leaseMachine {
	t.Helper()
	m := newLeaseMachine(stepLT, stepVIPs)
	expect(t, "follower", pass(m, leaseInput{Now: at(0), Term: 1}), false, "not the leader", "publish")
	expect(t, "won", pass(m, leaseInput{Now: at(start), Leader: true, Term: 2}), false, "no quorum confirmation",
		"start-confirmer", "publish")
	return m
}

func TestLeaseGainWaitsTheClaimDelay(t *testing.T) {
	m := gained(t, 10)
	s := pass(m, leaseInput{Now: at(20), Leader: true, Term: 2, Confirmed: at(15)})
	expect(t, "confirmed within the claim delay", s, false, "previous leader's lease", "publish")
	if want := at(10).Add(stepLT.ClaimDelay); !s.Wake.Equal(want) {
		t.Fatalf("wake %v, want the claim delay's end %v", s.Wake, want)
	}
	now := at(10).Add(stepLT.ClaimDelay)
	s = pass(m, leaseInput{Now: now, Leader: true, Term: 2, Confirmed: now.Add(-time.Millisecond)})
	expect(t, "after the claim delay", s, true, "quorum-confirmed", "fence-renew", "publish", "set-vips")
	if !s.Changed || !slices.Equal(s.Actions[2].VIPs, stepVIPs) || s.Wake != s.Decision.Until {
		t.Fatalf("claim: %+v", s)
	}
	if v := s.Actions[1].View; !v.Holding || v.LastFailover == "" {
		t.Fatalf("published view %+v", v)
	}
	// The next confirmation renews, and nothing else changes.
	s = pass(m, leaseInput{Now: now.Add(20 * time.Millisecond), Leader: true, Term: 2, Confirmed: now.Add(15 * time.Millisecond)})
	expect(t, "renewal", s, true, "quorum-confirmed", "fence-renew", "publish")
}

func TestLeaseClaimsAtOnceOnACommittedRelease(t *testing.T) {
	m := gained(t, 10)
	s := pass(m, leaseInput{Now: at(13), Leader: true, Term: 2, Confirmed: at(12), LastRelease: &model.LeaseRelease{Node: "d1", Term: 1}})
	expect(t, "release of term 1", s, true, "quorum-confirmed", "fence-renew", "publish", "set-vips")
	if !s.Actions[1].View.ClaimedOnRelease {
		t.Fatal("the view does not say the claim skipped the delay")
	}
	// A release of an older term does not count.
	m = gained(t, 10)
	expect(t, "release of term 0", pass(m, leaseInput{Now: at(13), Leader: true, Term: 2, Confirmed: at(12),
		LastRelease: &model.LeaseRelease{Node: "d1", Term: 0}}), false, "previous leader's lease", "publish")
}

// holding is a machine that holds the VIPs, confirmed at ms.
func holding(t *testing.T) (*leaseMachine, time.Time) {
	t.Helper()
	m := gained(t, 0)
	now := at(0).Add(stepLT.ClaimDelay)
	expect(t, "hold", pass(m, leaseInput{Now: now, Leader: true, Term: 2, Confirmed: now}), true, "", "fence-renew", "publish", "set-vips")
	return m, now
}

func TestLeaseLostQuorumAndFreeze(t *testing.T) {
	m, t0 := holding(t)
	// No confirmation since: the lease runs out.
	s := pass(m, leaseInput{Now: t0.Add(stepLT.Duration), Leader: true, Term: 2})
	expect(t, "lease ran out", s, false, "lease expired", "fence-revoke", "publish", "set-vips")
	if len(s.Actions[2].VIPs) != 0 || !s.Changed {
		t.Fatalf("dropping: %+v", s.Actions[2])
	}
	// Frozen for ten leases and woken: a confirmation from before the
	// freeze is no use.
	m, t0 = holding(t)
	expect(t, "woken from a freeze", pass(m, leaseInput{Now: t0.Add(10 * stepLT.Duration), Leader: true, Term: 2, Confirmed: t0.Add(time.Millisecond)}),
		false, "lease expired", "fence-revoke", "publish", "set-vips")
	// Almost expired: held no longer than the fence can express.
	m, t0 = holding(t)
	expect(t, "under the minimum", pass(m, leaseInput{Now: t0.Add(stepLT.Duration - time.Millisecond), Leader: true, Term: 2}),
		false, "waiting for a quorum confirmation", "fence-revoke", "publish", "set-vips")
}

func TestLeaseLostLeadership(t *testing.T) {
	m, t0 := holding(t)
	expect(t, "deposed", pass(m, leaseInput{Now: t0.Add(time.Millisecond), Term: 3}), false, "not the leader",
		"stop-confirmer", "fence-revoke", "publish", "set-vips")
	// Leadership lost and won again between two passes (one coalesced
	// notification): a new term, and a confirmation that committed in it
	// but started before it does not count.
	m, t0 = holding(t)
	later := t0.Add(time.Millisecond)
	s := pass(m, leaseInput{Now: later, Leader: true, Term: 4, Confirmed: later.Add(-time.Microsecond)})
	expect(t, "won again", s, false, "no quorum confirmation in this term", "start-confirmer", "fence-revoke", "publish", "set-vips")
}

func TestLeaseReleaseAndCancel(t *testing.T) {
	m, t0 := holding(t)
	rel, cancel := true, false
	s := pass(m, leaseInput{Now: t0.Add(time.Millisecond), Leader: true, Term: 2, Request: &rel})
	expect(t, "release", s, false, "released for a planned handover", "fence-revoke", "publish", "set-vips", "reply")
	if !s.Entitled || !s.Actions[3].Entitled {
		t.Fatal("the release is not answered as entitled")
	}
	expect(t, "stays released", pass(m, leaseInput{Now: t0.Add(2 * time.Millisecond), Leader: true, Term: 2, Confirmed: t0.Add(time.Millisecond)}),
		false, "released", "publish")
	s = pass(m, leaseInput{Now: t0.Add(3 * time.Millisecond), Leader: true, Term: 2, Request: &cancel, Confirmed: t0.Add(2 * time.Millisecond)})
	expect(t, "cancelled", s, true, "quorum-confirmed", "reply", "fence-renew", "publish", "set-vips")
	// A release asked of a director that is not entitled (lease expired)
	// is answered false: its release must not be committed.
	m, t0 = holding(t)
	s = pass(m, leaseInput{Now: t0.Add(stepLT.Duration), Leader: true, Term: 2, Request: &rel})
	if s.Entitled || s.Actions[len(s.Actions)-1].Entitled {
		t.Fatal("a director whose lease expired answered entitled")
	}
}

func TestLeaseTrackedFault(t *testing.T) {
	m, t0 := holding(t)
	s := pass(m, leaseInput{Now: t0.Add(time.Millisecond), Leader: true, Term: 2, Fault: "eth1 down"})
	expect(t, "fault", s, false, "tracked check failing: eth1 down", "fence-revoke", "publish", "set-vips")
	if !s.Entitled {
		t.Fatal("a fault is not a lease problem: still entitled")
	}
	expect(t, "fault cleared", pass(m, leaseInput{Now: t0.Add(2 * time.Millisecond), Leader: true, Term: 2, Confirmed: t0.Add(time.Millisecond)}),
		true, "", "fence-renew", "publish", "set-vips")
}

func TestLeaseFenceErrors(t *testing.T) {
	// The VIPs change while holding: declared, renewed, set.
	m, t0 := holding(t)
	more := append(slices.Clone(stepVIPs), model.VIP{Address: "192.0.2.11/24", Interface: "eth0", Group: model.DefaultVIPGroup})
	in := leaseInput{Now: t0.Add(time.Millisecond), Leader: true, Term: 2, VIPs: more}
	s := m.Step(in)
	expect(t, "a VIP added", s, true, "", "fence-declare", "fence-renew", "publish", "set-vips")
	// The declaration fails: nothing after it was done; hold nothing.
	s = m.Failed(s, s.Actions[0], errors.New("netlink: EPERM"), in)
	expect(t, "declare failed", s, false, "kernel fence failed: netlink: EPERM", "fence-revoke", "publish", "set-vips")
	for _, a := range s.Actions {
		m.Done(a)
	}
	// Still undeclared: the next pass declares again.
	in.Now, in.Confirmed = t0.Add(2*time.Millisecond), t0.Add(time.Millisecond)
	s = m.Step(in)
	if kinds(s)[0] != "fence-declare" {
		t.Fatalf("not declared again: %v", kinds(s))
	}
	// The renewal fails: hold nothing.
	m.Done(s.Actions[0])
	s = m.Failed(s, s.Actions[1], errors.New("timeout"), in)
	expect(t, "renew failed", s, false, "kernel fence renewal failed: timeout", "publish")
}

func TestLeaseTooShortToClaim(t *testing.T) {
	m := gained(t, 0)
	now := at(0).Add(stepLT.ClaimDelay)
	// Confirmed long ago in this term: less than one renewal left.
	conf := now.Add(-stepLT.Duration + stepLT.Renew/2)
	expect(t, "short", pass(m, leaseInput{Now: now, Leader: true, Term: 2, Confirmed: conf}), false, "too short to claim", "publish")
}

// TestLeaseLoopWithFakes runs the real lease loop of three directors over
// raft on TCP, with the fence, the links and the announcer injected: one
// director holds the VIP at a time, the holder's fence lease is live, a
// fence failure drops the VIP and its end takes it back, and a planned
// handover moves it.
func TestLeaseLoopWithFakes(t *testing.T) {
	tc := newCluster(t, 3, "peers")
	fences := make([]*fence.Fake, 3)
	links := make([]*vip.FakeLinks, 3)
	for i, d := range tc.dirs {
		fences[i], links[i] = fence.NewFake(nil), vip.NewFakeLinks("eth0")
		d.cfg.VIPFence, d.cfg.VIPLinks, d.cfg.VIPAnnouncer = fences[i], links[i], vip.NewFakeAnnouncer()
	}
	tc.startAll()
	ld := tc.leader()
	if _, err := tc.client(ld).CreateVIP(context.Background(), model.VIP{Address: "192.0.2.10/24", Interface: "eth0"}); err != nil {
		t.Fatal(err)
	}
	holders := func() []int {
		var out []int
		for i, l := range links {
			if tc.dirs[i].a != nil && len(l.Held()) > 0 {
				out = append(out, i)
			}
		}
		return out
	}
	only := func(i int) func() bool {
		return func() bool {
			h := holders()
			return len(h) == 1 && h[0] == i && len(fences[i].Leased()) == 1
		}
	}
	waitFor(t, "the leader holds the VIP under a live fence lease", only(ld))
	fences[ld].Fail(nil, errors.New("injected renew failure"))
	waitFor(t, "a failing fence drops the VIP", func() bool { return len(links[ld].Held()) == 0 })
	if st := tc.dirs[ld].a.leaseStatus(); st.Holding || !strings.Contains(st.Reason, "kernel fence renewal failed") {
		t.Fatalf("lease view %+v", st)
	}
	fences[ld].Fail(nil, nil)
	waitFor(t, "held again once the fence works", only(ld))
	// A planned handover: the next leader holds it, the old one nothing.
	if err := tc.dirs[ld].a.Shutdown(ctxT(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	tc.dirs[ld].a = nil
	next := tc.leader()
	waitFor(t, "the next leader holds the VIP", only(next))
	// Skipping the claim delay needs the release committed in the term
	// just before the new leader's; a busy machine can cost the transfer's
	// election a term, and then waiting is right.
	a := tc.dirs[next].a
	rel, term := a.fsm.LastRelease(), a.node.Status().Term
	switch st := a.leaseStatus(); {
	case rel != nil && rel.Term+1 == term && !st.ClaimedOnRelease:
		t.Fatalf("the release of term %d was committed, term %d waited the claim delay: %+v", rel.Term, term, st)
	case rel == nil || rel.Term+1 != term:
		t.Logf("the handover was not the next term (release %+v, term %d): the claim delay was due", rel, term)
	}
}
