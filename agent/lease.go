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

// confirmer runs the quorum confirmations (raft barriers) of one
// leadership term on its own goroutine, one at a time, a new one every
// renew period, and keeps the start time of the newest that committed. It
// does not wait for the lease loop: a loop busy in the kernel (adding
// addresses, announcing, under CPU starvation) must not starve its own
// lease. Found by TestSigtermHandsOverOnACommittedRelease under the full
// suite: the loop spent 32 ms in one VIP Set, no confirmation was started
// meanwhile, the 50 ms (fast) lease lapsed, and the handover could not
// vouch for its release.
type confirmer struct {
	mu     sync.Mutex
	latest time.Time     // newest committed confirmation not yet taken
	signal chan struct{} // a barrier finished (committed or not)
	stop   chan struct{}
}

func newConfirmer() *confirmer {
	return &confirmer{signal: make(chan struct{}, 1), stop: make(chan struct{})}
}

// run confirms until stop is closed or ctx ends; barrier is the node's (a
// commit through the leader, failing unless it leads). A barrier in
// flight is finished first.
func (c *confirmer) run(ctx context.Context, lt cluster.LeaseTiming, barrier func(time.Duration) error) {
	tick := time.NewTicker(lt.Renew)
	defer tick.Stop()
	for {
		start := time.Now()
		ok := barrier(lt.Duration) == nil
		c.mu.Lock()
		if ok {
			c.latest = start
		}
		c.mu.Unlock()
		select {
		case c.signal <- struct{}{}:
		default:
		}
		select {
		case <-tick.C:
		case <-c.stop:
			return
		case <-ctx.Done():
			return
		}
	}
}

// take returns the newest committed confirmation since the last take
// (zero: none).
func (c *confirmer) take() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := c.latest
	c.latest = time.Time{}
	return t
}

// close stops run without waiting for a barrier in flight.
func (c *confirmer) close() { close(c.stop) }

// leaseLoop decides, with cluster.DecideLease, whether this director holds
// the VIPs: only as leader, only after the claim delay, and only while a
// quorum-confirmed lease (a committed barrier) is valid. Confirmations run
// on their own goroutine (confirmer) so that an expiry is acted on even
// while a commit hangs (a partitioned leader drops the VIPs when its lease
// runs out), and so that confirmations go on while this loop is busy.
func (a *Agent) leaseLoop(ctx context.Context) {
	defer close(a.leaseDone)
	p, _ := cluster.ProfileByName(a.node.Status().Profile)
	lt := cluster.LeaseTimingFor(p)
	leaderCh := a.node.LeaderChanges()
	var (
		st         cluster.LeaseState
		held       []fsm.VIP
		holding    bool
		expiry     *time.Timer
		wonAt      time.Time
		term       uint64 // the raft term st belongs to
		fencedVIPs []fsm.VIP
		conf       *confirmer     // this term's, while leader
		confirmers sync.WaitGroup // every run, waited for on return
		released   bool           // released for a planned handover in this term
		replyTo    chan bool      // a release request waiting for the VIPs to be gone
		entitled   bool
	)
	defer func() {
		if conf != nil {
			conf.close()
		}
		confirmers.Wait()
	}()
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
		default:
			return
		}
		if conf != nil {
			conf.close()
			conf = nil
		}
		if st.Leader {
			c := newConfirmer()
			confirmers.Go(func() { c.run(ctx, lt, a.node.Barrier) })
			conf = c
		}
	}
	// absorb takes the newest confirmation into the state. It looks at
	// leadership after taking it: a barrier that committed in a later term
	// than st's (lost and won again, one coalesced notification) is then
	// seen to start before that term's LeaderSince and does not count, so
	// the new term still waits its claim delay.
	absorb := func() {
		var t time.Time
		if conf != nil {
			t = conf.take()
		}
		observe()
		if !st.Leader || t.IsZero() || t.Before(st.LeaderSince) {
			return
		}
		st.ConfirmedAt = t
		// The barrier applied every earlier entry: a release committed
		// by the holder of the term just before this one means no lease
		// can be outstanding.
		if rel := a.fsm.LastRelease(); !st.Released && rel != nil && rel.Term+1 == term {
			st.Released = true
			a.setLease(func(v *leaseView) { v.ClaimedOnRelease = true })
		} else if !st.Released {
			a.setLease(func(v *leaseView) { v.ClaimedOnRelease = false })
		}
	}
	observe()
	for {
		absorb()
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
		var confirmed <-chan struct{}
		if conf != nil {
			confirmed = conf.signal
		}
		select {
		case <-ctx.Done():
			if expiry != nil {
				expiry.Stop()
			}
			return
		case <-a.faults.Changed():
		case <-leaderCh:
			observe()
		case <-confirmed:
			observe() // a failed barrier often means leadership moved
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
