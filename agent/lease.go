package agent

import (
	"context"
	"reflect"
	"sync"
	"time"

	"github.com/raftlb/raftlb/cluster"
	"github.com/raftlb/raftlb/fsm"
)

// leaseView is the lease as /v1/status shows it.
type leaseView struct {
	Holding     bool      `json:"holding"`
	Until       time.Time `json:"until,omitzero"`
	Reason      string    `json:"reason"`
	Duration    string    `json:"duration"`
	ClaimDelay  string    `json:"claim_delay"`
	LastHandoff string    `json:"last_failover,omitempty"` // from leadership won to VIPs held
	// ClaimedOnRelease: the last claim skipped the claim delay because the
	// previous holder committed its release (planned handover).
	ClaimedOnRelease bool `json:"claimed_on_release,omitempty"`
}

// leaseLoop decides, with cluster.DecideLease, whether this director holds
// the VIPs: only as leader, only after the claim delay, and only while a
// quorum-confirmed lease (a committed barrier) is valid. Confirmations run
// on their own goroutine so that an expiry is acted on even while a commit
// hangs (a partitioned leader drops the VIPs when its lease runs out).
func (a *Agent) leaseLoop(ctx context.Context) {
	defer close(a.leaseDone)
	p, _ := cluster.ProfileByName(a.node.Status().Profile)
	lt := cluster.LeaseTimingFor(p)
	leaderCh := a.node.LeaderChanges()
	renew := time.NewTicker(lt.Renew)
	defer renew.Stop()
	confirmed := make(chan time.Time, 1)
	var (
		st         cluster.LeaseState
		inFlight   bool
		held       []fsm.VIP
		holding    bool
		expiry     *time.Timer
		wonAt      time.Time
		term       uint64 // the raft term st belongs to
		fencedVIPs []fsm.VIP
		wg         sync.WaitGroup
		released   bool      // released for a planned handover in this term
		replyTo    chan bool // a release request waiting for the VIPs to be gone
		entitled   bool
	)
	defer wg.Wait()
	confirm := func() {
		if inFlight || !st.Leader {
			return
		}
		inFlight = true
		wg.Add(1)
		go func(term time.Time) {
			defer wg.Done()
			start := time.Now()
			if a.node.Barrier(lt.Duration) != nil {
				start = time.Time{} // failed: report "nothing new"
			}
			select {
			case confirmed <- start:
			case <-ctx.Done():
			}
		}(st.LeaderSince)
	}
	// newTerm restarts the lease: leadership notifications are coalesced,
	// so losing and regaining leadership may arrive as one "true"; a
	// confirmation from an earlier term must never count.
	observe := func() {
		leader, t := a.node.IsLeader(), a.node.Status().Term
		switch {
		case !leader:
			st, term, released = cluster.LeaseState{}, t, false
		case !st.Leader || t != term:
			st, term, released = cluster.LeaseState{Leader: true, LeaderSince: time.Now()}, t, false
			wonAt = st.LeaderSince
			confirm()
		}
	}
	observe()
	for {
		now := time.Now()
		st.Holding = holding
		d := cluster.DecideLease(lt, st, now)
		entitled = d.Hold
		switch fault := a.currentFault(); {
		case released && d.Hold:
			d = cluster.LeaseDecision{Reason: "released for a planned handover"}
		case fault != "" && d.Hold:
			d = cluster.LeaseDecision{Reason: "tracked check failing: " + fault}
		}
		all := a.fsm.VIPs()
		var want []fsm.VIP
		if d.Hold {
			want = all
		}
		if !reflect.DeepEqual(all, fencedVIPs) {
			if err := a.fenceVIPs(all); err != nil {
				a.log.Error("cannot update the VIP fence; holding nothing", "err", err)
				d, want = cluster.LeaseDecision{Reason: "kernel fence failed: " + err.Error()}, nil
			} else {
				fencedVIPs = all
			}
		}
		// The kernel fence lease is renewed before an address is added or
		// announced, and it ends when the lease does: a killed or frozen
		// daemon loses the VIPs in the kernel without its help.
		if d.Hold {
			if err := a.fence.Renew(a.fenced, d.Until.Sub(now)); err != nil {
				a.log.Error("cannot renew the VIP lease in the kernel fence; releasing", "err", err)
				d, want = cluster.LeaseDecision{Reason: "kernel fence renewal failed: " + err.Error()}, nil
			}
		} else if holding {
			if err := a.fence.Revoke(); err != nil {
				a.log.Error("cannot revoke the VIP lease in the kernel fence", "err", err)
			}
		}
		// Publish the decision first: the VIP manager's announcements are
		// gated on it.
		a.setLease(func(v *leaseView) {
			v.Holding, v.Until, v.Reason = d.Hold, d.Until, d.Reason
			v.Duration, v.ClaimDelay = lt.Duration.String(), lt.ClaimDelay.String()
		})
		if d.Hold != holding || !reflect.DeepEqual(want, held) {
			if err := a.vips.Set(want); err != nil {
				a.log.Error("VIP change incomplete; the refresh pass retries", "hold", d.Hold, "err", err)
			}
			if d.Hold != holding {
				a.log.Info("VIP lease", "hold", d.Hold, "reason", d.Reason)
				if d.Hold && !wonAt.IsZero() {
					a.setLease(func(v *leaseView) { v.LastHandoff = now.Sub(wonAt).Round(time.Millisecond).String() })
					wonAt = time.Time{}
				}
			}
			held, holding = want, d.Hold
		}
		if replyTo != nil { // the VIPs are gone (or were never held)
			replyTo <- entitled
			replyTo = nil
		}
		// Wake at the lease's end or the claim delay's, whichever comes.
		var wake <-chan time.Time
		if expiry != nil {
			expiry.Stop()
			expiry = nil
		}
		next := time.Time{}
		switch {
		case d.Hold:
			next = d.Until
		case st.Leader && !st.ConfirmedAt.IsZero():
			next = st.LeaderSince.Add(lt.ClaimDelay)
		}
		if next.After(now) {
			expiry = time.NewTimer(next.Sub(now))
			wake = expiry.C
		}
		changed := a.fsm.Changed()
		select {
		case <-ctx.Done():
			if expiry != nil {
				expiry.Stop()
			}
			return
		case <-a.faults.Changed():
		case <-leaderCh:
			observe()
		case t := <-confirmed:
			inFlight = false
			observe() // a failed barrier often means leadership moved
			if st.Leader && !t.IsZero() && !t.Before(st.LeaderSince) {
				st.ConfirmedAt = t
				// The barrier applied every earlier entry: a release
				// committed by the holder of the term just before this
				// one means no lease can be outstanding.
				if rel := a.fsm.LastRelease(); !st.Released && rel != nil && rel.Term+1 == term {
					st.Released = true
					a.setLease(func(v *leaseView) { v.ClaimedOnRelease = true })
				} else if !st.Released {
					a.setLease(func(v *leaseView) { v.ClaimedOnRelease = false })
				}
			}
		case c := <-a.leaseCtl:
			observe()
			released = c.release && st.Leader
			if c.release {
				// Answer once the VIPs are gone (after the next pass); a
				// director that does not lead holds nothing.
				replyTo = c.reply
			} else {
				c.reply <- true
			}
		case <-renew.C:
			observe()
			confirm()
		case <-wake:
		case <-changed:
		}
	}
}

// leaseUntil is when the current VIP lease runs out (zero: not holding).
func (a *Agent) leaseUntil() time.Time {
	a.leaseMu.Lock()
	defer a.leaseMu.Unlock()
	if !a.lease.Holding {
		return time.Time{}
	}
	return a.lease.Until
}

func (a *Agent) setLease(f func(*leaseView)) {
	a.leaseMu.Lock()
	f(&a.lease)
	a.leaseMu.Unlock()
}

func (a *Agent) leaseStatus() leaseView {
	a.leaseMu.Lock()
	defer a.leaseMu.Unlock()
	return a.lease
}
