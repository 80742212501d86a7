package cluster

import (
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestLeaseTimingForProfilesIsValid(t *testing.T) {
	for _, name := range ProfileNames() {
		p, _ := ProfileByName(name)
		lt := LeaseTimingFor(p)
		if err := lt.Validate(); err != nil {
			t.Errorf("%s: %v", name, err)
		}
		if lt.Duration >= p.HeartbeatTimeout {
			t.Errorf("%s: lease %v not shorter than the heartbeat timeout %v", name, lt.Duration, p.HeartbeatTimeout)
		}
	}
	bad := LeaseTiming{Duration: 100 * time.Millisecond, Renew: 25 * time.Millisecond, ClaimDelay: 100 * time.Millisecond}
	if err := bad.Validate(); err == nil || !strings.Contains(err.Error(), "clock-rate") {
		t.Errorf("a claim delay equal to the lease ignores clock-rate error: %v", err)
	}
	if err := (LeaseTiming{Duration: 100, Renew: 60, ClaimDelay: 200}).Validate(); err == nil {
		t.Error("renewing slower than half the lease accepted")
	}
}

func TestDecideLeaseReasons(t *testing.T) {
	lt := LeaseTiming{Duration: 100 * time.Millisecond, Renew: 25 * time.Millisecond, ClaimDelay: 103 * time.Millisecond}
	t0 := time.Unix(1000, 0)
	ms := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Millisecond) }
	cases := []struct {
		name string
		s    LeaseState
		now  time.Time
		hold bool
		why  string
	}{
		{"follower", LeaseState{}, ms(0), false, "not the leader"},
		{"no confirmation", LeaseState{Leader: true, LeaderSince: ms(0)}, ms(500), false, "no quorum confirmation"},
		{"confirmation from an earlier term", LeaseState{Leader: true, LeaderSince: ms(10), ConfirmedAt: ms(5)}, ms(500), false, "no quorum confirmation"},
		{"claim delay", LeaseState{Leader: true, LeaderSince: ms(0), ConfirmedAt: ms(1)}, ms(50), false, "previous leader"},
		{"released: no claim delay", LeaseState{Leader: true, LeaderSince: ms(0), ConfirmedAt: ms(1), Released: true}, ms(50), true, "quorum-confirmed"},
		{"held", LeaseState{Leader: true, LeaderSince: ms(0), ConfirmedAt: ms(150)}, ms(200), true, "quorum-confirmed"},
		{"expired", LeaseState{Leader: true, LeaderSince: ms(0), ConfirmedAt: ms(150)}, ms(250), false, "expired"},
		{"almost out", LeaseState{Leader: true, LeaderSince: ms(0), ConfirmedAt: ms(150), Holding: true}, ms(249), false, "runs out in"},
		{"too short to claim", LeaseState{Leader: true, LeaderSince: ms(0), ConfirmedAt: ms(150)}, ms(240), false, "too short to claim"},
		{"short but holding", LeaseState{Leader: true, LeaderSince: ms(0), ConfirmedAt: ms(150), Holding: true}, ms(240), true, "quorum-confirmed"},
	}
	for _, c := range cases {
		d := DecideLease(lt, c.s, c.now)
		if d.Hold != c.hold || !strings.Contains(d.Reason, c.why) {
			t.Errorf("%s: %+v", c.name, d)
		}
		if d.Hold && !d.Until.Equal(c.s.ConfirmedAt.Add(lt.Duration)) {
			t.Errorf("%s: until %v", c.name, d.Until)
		}
	}
}

// clock maps real time to a director's local monotonic clock running at
// rate r (within ClockRateError of real time) from some offset.
type clock struct {
	rate   float64
	offset time.Time
}

func (c clock) local(real time.Duration) time.Time {
	return c.offset.Add(time.Duration(float64(real) * c.rate))
}

// overlaps simulates one failover: leader A confirms every Renew (by its
// clock) and never learns it was deposed; B is elected at real time tb; A's
// confirmations created before tb commit after a random delay, later ones
// never do (the raft argument in lease.go). It reports the first real time
// at which both hold the VIPs, if any.
func overlaps(lt LeaseTiming, rnd *rand.Rand) (time.Duration, bool) {
	skew := func() float64 { return 1 + (rnd.Float64()*2-1)*ClockRateError }
	a := clock{rate: skew(), offset: time.Unix(int64(rnd.IntN(1000)), 0)}
	b := clock{rate: skew(), offset: time.Unix(int64(rnd.IntN(1000)), 0)}
	tb := time.Duration(rnd.Int64N(int64(20 * lt.Duration)))
	commit := func() time.Duration { return time.Duration(rnd.Int64N(int64(lt.Renew))) }

	// A's confirmations: created every Renew of its clock from real 0.
	type conf struct{ created, seen time.Duration }
	var confsA []conf
	step := time.Duration(float64(lt.Renew) / a.rate)
	for c := time.Duration(0); c < tb; c += step {
		confsA = append(confsA, conf{created: c, seen: c + commit()})
	}
	// B confirms right after its election and then every Renew.
	var confsB []conf
	for c := tb; c < tb+30*lt.Duration; c += time.Duration(float64(lt.Renew) / b.rate) {
		confsB = append(confsB, conf{created: c, seen: c + commit()})
	}
	// follower of a director's confirmations as real time x advances: the
	// newest creation time among those whose commit it has seen.
	type follower struct {
		cs     []conf
		next   int
		newest time.Duration
		seen   bool
	}
	bySeen := func(cs []conf) *follower {
		slices.SortFunc(cs, func(p, q conf) int { return int(p.seen - q.seen) })
		return &follower{cs: cs}
	}
	advance := func(f *follower, x time.Duration, c clock) time.Time {
		for ; f.next < len(f.cs) && f.cs[f.next].seen <= x; f.next++ {
			f.newest, f.seen = max(f.newest, f.cs[f.next].created), true
		}
		if !f.seen {
			return time.Time{}
		}
		return c.local(f.newest)
	}
	fa, fb := bySeen(confsA), bySeen(confsB)
	var holdA, holdB bool // each one's previous decision (DecideLease is stricter when claiming)
	for x := time.Duration(0); x < tb+30*lt.Duration; x += lt.Duration / 50 {
		da := DecideLease(lt, LeaseState{Leader: true, LeaderSince: a.local(0), ConfirmedAt: advance(fa, x, a), Holding: holdA}, a.local(x))
		holdA = da.Hold
		cb := advance(fb, x, b)
		if x < tb {
			continue // B is not leader yet
		}
		db := DecideLease(lt, LeaseState{Leader: true, LeaderSince: b.local(tb), ConfirmedAt: cb, Holding: holdB}, b.local(x))
		holdB = db.Hold
		if da.Hold && db.Hold {
			return x, true
		}
	}
	return 0, false
}

// TestLeaseNeverOverlaps: over many simulated failovers with skewed clocks,
// the deposed leader and its successor never hold the VIPs at once.
func TestLeaseNeverOverlaps(t *testing.T) {
	rnd := rand.New(rand.NewPCG(3, 4))
	for _, name := range ProfileNames() {
		p, _ := ProfileByName(name)
		lt := LeaseTimingFor(p)
		for i := range 400 {
			if at, bad := overlaps(lt, rnd); bad {
				t.Fatalf("%s run %d: both hold at %v", name, i, at)
			}
		}
	}
	// The simulation can fail: a claim delay shorter than the lease lets
	// the new leader in while the old lease still runs.
	short := LeaseTimingFor(profileFast)
	short.ClaimDelay = short.Duration * 8 / 10
	found := false
	for range 400 {
		if _, bad := overlaps(short, rnd); bad {
			found = true
			break
		}
	}
	if !found {
		t.Fatal("the simulation never catches an unsafe claim delay; it proves nothing")
	}
}
