package cluster

import (
	"fmt"
	"time"
)

// The VIP ownership lease: the leader holds the VIPs only while a lease
// confirmed by a quorum is valid, and a new leader claims them only after
// any previous leader's lease must have run out. docs/fencing.md has the
// argument; in short:
//
//  1. A confirmation is a committed raft entry (a barrier) created at local
//     time t. Every follower that accepted it did so after t, in this term.
//  2. A later leader was elected by a quorum; that quorum intersects the one
//     that accepted the entry, and the node in both voted for the new term
//     only after accepting the entry (had it voted first, it would have
//     refused the old term's entry and the barrier would not have
//     committed). So the new leader's election happened after t.
//  3. The old leader holds until t + Duration; the new one claims at its
//     election + ClaimDelay ≥ t + ClaimDelay. With ClaimDelay ≥ Duration
//     stretched by the worst clock-rate difference, the two never overlap.
//
// Raft's own leader lease is not exclusive (hashicorp/raft#108), which is
// why the VIPs need this one. Step 2 relies only on terms, which survive
// restarts in the stable store, not on leader stickiness.

// ClockRateError bounds how much faster or slower one director's monotonic
// clock may run than another's. NTP slews at most 0.05 %; 1 % is generous.
const ClockRateError = 0.01

// LeaseTiming is the VIP lease's timing, derived from a raft profile.
type LeaseTiming struct {
	// Duration: a confirmation created at t keeps the lease until
	// t + Duration on the leader's clock.
	Duration time.Duration
	// Renew: how often the leader starts a confirmation. Several renewals
	// fit in one Duration, so one slow commit does not drop the VIPs.
	Renew time.Duration
	// ClaimDelay: after winning an election, a new leader waits this long
	// (on its own clock) before claiming the VIPs, unless the previous
	// holder's release is committed (planned handover).
	ClaimDelay time.Duration
}

// LeaseTimingFor derives the lease from a raft profile: Duration is half
// the heartbeat timeout, renewed four times per Duration; ClaimDelay is
// Duration stretched by twice the clock-rate error plus one millisecond.
func LeaseTimingFor(p Profile) LeaseTiming {
	d := p.HeartbeatTimeout / 2
	return LeaseTiming{
		Duration:   d,
		Renew:      d / 4,
		ClaimDelay: time.Duration(float64(d)*(1+2*ClockRateError)) + time.Millisecond,
	}
}

// Validate checks the bounds the safety argument needs.
func (lt LeaseTiming) Validate() error {
	switch {
	case lt.Duration <= 0 || lt.Renew <= 0:
		return fmt.Errorf("lease: duration %v and renew %v must be positive", lt.Duration, lt.Renew)
	case lt.Renew*2 > lt.Duration:
		return fmt.Errorf("lease: renew every %v is too slow for a %v lease (at most half of it)", lt.Renew, lt.Duration)
	case float64(lt.ClaimDelay) < float64(lt.Duration)*(1+ClockRateError)/(1-ClockRateError):
		return fmt.Errorf("lease: claim delay %v does not cover a %v lease with %.0f%% clock-rate error", lt.ClaimDelay, lt.Duration, ClockRateError*100)
	}
	return nil
}

// LeaseState is what a director knows when deciding whether to hold the
// VIPs. Times are its own monotonic clock.
type LeaseState struct {
	Leader      bool
	LeaderSince time.Time // when it became leader in the current term
	ConfirmedAt time.Time // creation time of the latest committed confirmation of this term (zero: none yet)
	Released    bool      // the previous term's holder committed its release (planned handover)
	Holding     bool      // this director holds the VIPs now (a claim needs more lease left than a renewal)
}

// MinLeaseLeft is the least lease worth holding on to: the kernel fence
// takes lease timeouts in milliseconds.
const MinLeaseLeft = 2 * time.Millisecond

// LeaseDecision says whether to hold the VIPs now, until when, and why.
type LeaseDecision struct {
	Hold   bool
	Until  time.Time // with Hold: when the lease runs out without a renewal
	Reason string
}

// DecideLease is the pure decision: given the timing, the state and the
// current time, hold or not, and why.
func DecideLease(lt LeaseTiming, s LeaseState, now time.Time) LeaseDecision {
	switch {
	case !s.Leader:
		return LeaseDecision{Reason: "not the leader"}
	case s.ConfirmedAt.IsZero() || s.ConfirmedAt.Before(s.LeaderSince):
		return LeaseDecision{Reason: "no quorum confirmation in this term yet"}
	case !s.Released && now.Before(s.LeaderSince.Add(lt.ClaimDelay)):
		return LeaseDecision{Reason: fmt.Sprintf("waiting %v for a previous leader's lease to run out", s.LeaderSince.Add(lt.ClaimDelay).Sub(now).Round(time.Millisecond))}
	}
	until := s.ConfirmedAt.Add(lt.Duration)
	left := until.Sub(now)
	switch {
	case left <= 0:
		return LeaseDecision{Reason: fmt.Sprintf("lease expired %v ago: no quorum confirmation since", -left.Round(time.Millisecond))}
	case left < MinLeaseLeft:
		return LeaseDecision{Reason: fmt.Sprintf("lease runs out in %v: waiting for a quorum confirmation", left)}
	case !s.Holding && left < lt.Renew:
		// Claiming (adding, announcing) on a lease about to run out makes
		// the VIPs flap when confirmations are slow: claim on the next.
		return LeaseDecision{Reason: fmt.Sprintf("lease too short to claim (%v left): waiting for the next confirmation", left.Round(time.Millisecond))}
	}
	return LeaseDecision{Hold: true, Until: until, Reason: "leader with a quorum-confirmed lease"}
}
