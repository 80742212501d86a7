package agent

import (
	"context"
	"sync"
	"time"

	"github.com/raftlb/raftlb/api/wire"
	"github.com/raftlb/raftlb/cluster"
)

// confirmer runs the quorum confirmations (raft barriers) of one
// leadership term on its own goroutine, one at a time, a new one every
// renew period, and keeps the start time of the newest that committed. It
// does not wait for the lease loop: a loop busy in the kernel (adding
// addresses, announcing, under CPU starvation) must not starve its own
// lease (docs/fencing.md, "Bounds").
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

// leaseLoop runs the lease machine (leasestep.go): it gathers the inputs of
// a pass, lets the machine decide, performs the actions it returns through
// the fence, the VIP manager and the confirmer, and waits for the next
// event. Confirmations run on their own goroutine (confirmer) so that an
// expiry is acted on even while a commit hangs (a partitioned leader drops
// the VIPs when its lease runs out), and so that confirmations go on while
// this loop is busy.
func (a *Agent) leaseLoop(ctx context.Context) {
	defer close(a.leaseDone)
	p, _ := cluster.ProfileByName(a.node.Status().Profile)
	lt := cluster.LeaseTimingFor(p)
	m := newLeaseMachine(lt, nil) // the first pass declares the state's VIPs to the fence
	leaderCh := a.node.LeaderChanges()
	l := &leaseRun{a: a, m: m, ctx: ctx, lt: lt}
	defer l.stopConfirmers()
	var expiry *time.Timer
	for {
		in := l.inputs()
		l.perform(in, m.Step(in))
		var wake <-chan time.Time
		if expiry != nil {
			expiry.Stop()
			expiry = nil
		}
		if !l.wake.IsZero() {
			expiry = time.NewTimer(l.wake.Sub(time.Now()))
			wake = expiry.C
		}
		changed := a.fsm.Changed()
		var confirmed <-chan struct{}
		if l.conf != nil {
			confirmed = l.conf.signal
		}
		select {
		case <-ctx.Done():
			if expiry != nil {
				expiry.Stop()
			}
			return
		case <-a.faults.Changed():
		case <-leaderCh:
		case <-confirmed: // a failed barrier often means leadership moved
		case c := <-a.leaseCtl:
			l.req = &c
		case <-wake:
		case <-changed:
		}
	}
}

// leaseRun is the I/O side of the lease loop: it owns the confirmers and
// the handover request in flight, and performs the machine's actions.
type leaseRun struct {
	a   *Agent
	m   *leaseMachine
	ctx context.Context
	lt  cluster.LeaseTiming

	conf       *confirmer     // this term's, while leader
	confirmers sync.WaitGroup // every run, waited for on return
	req        *leaseCmd      // a handover request not yet answered
	wake       time.Time      // when the last pass asked to run again
}

// inputs gathers one pass's inputs. The newest confirmation is taken before
// leadership is looked at (leasestep.go, observe).
func (l *leaseRun) inputs() leaseInput {
	var in leaseInput
	if l.conf != nil {
		in.Confirmed = l.conf.take()
	}
	in.Now = time.Now()
	in.Leader, in.Term = l.a.node.IsLeader(), l.a.node.Status().Term
	in.LastRelease, in.Fault, in.VIPs = l.a.fsm.LastRelease(), l.a.currentFault(), l.a.fsm.VIPs()
	if l.req != nil {
		r := l.req.release
		in.Request = &r
	}
	return in
}

// perform carries out a pass's actions in order. A fence action that fails
// replans the rest of the pass (leaseMachine.Failed).
func (l *leaseRun) perform(in leaseInput, s leaseStep) {
	a := l.a
	for i, act := range s.Actions {
		var err error
		switch act.Kind {
		case actStartConfirmer:
			l.stopConfirmer()
			c := newConfirmer()
			l.confirmers.Go(func() { c.run(l.ctx, l.lt, a.node.Barrier) })
			l.conf = c
		case actStopConfirmer:
			l.stopConfirmer()
		case actFenceDeclare:
			if err = a.fenceVIPs(act.VIPs); err != nil {
				a.log.Error("cannot update the VIP fence; holding nothing", "err", err)
			}
		case actFenceRenew:
			if err = a.fence.Renew(a.fenced, act.For); err != nil {
				a.log.Error("cannot renew the VIP lease in the kernel fence; releasing", "err", err)
			}
		case actFenceRevoke:
			if err := a.fence.Revoke(); err != nil {
				a.log.Error("cannot revoke the VIP lease in the kernel fence", "err", err)
			}
		case actPublish:
			a.setLease(func(v *wire.LeaseStatus) { *v = act.View })
		case actSetVIPs:
			if err := a.vips.Set(act.VIPs); err != nil {
				a.log.Error("VIP change incomplete; the refresh pass retries", "hold", act.Hold, "err", err)
			}
			if s.Changed {
				a.log.Info("VIP lease", "hold", act.Hold, "reason", s.Decision.Reason)
			}
		case actReply:
			if l.req != nil {
				l.req.reply <- act.Entitled
				l.req = nil
			}
		}
		if err != nil {
			l.perform(in, l.m.Failed(s, act, err, in))
			return
		}
		l.m.Done(s.Actions[i])
	}
	l.wake = s.Wake
}

func (l *leaseRun) stopConfirmer() {
	if l.conf != nil {
		l.conf.close()
		l.conf = nil
	}
}

// stopConfirmers stops this term's confirmer and waits for every one.
func (l *leaseRun) stopConfirmers() {
	l.stopConfirmer()
	l.confirmers.Wait()
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

func (a *Agent) setLease(f func(*wire.LeaseStatus)) {
	a.leaseMu.Lock()
	f(&a.lease)
	a.leaseMu.Unlock()
}

func (a *Agent) leaseStatus() wire.LeaseStatus {
	a.leaseMu.Lock()
	defer a.leaseMu.Unlock()
	return a.lease
}
