package health

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// Policies: how the views of the live directors combine into one decision.
// They mirror fsm.HealthPolicy* (package fsm imports this one).
const (
	PolicyMajority = "majority" // down when a majority of the live directors see it down
	PolicyAny      = "any"      // down when any one live director sees it down
	PolicyAll      = "all"      // down when every live director sees it down
)

// Checked is one checked real server of one service, with the decision
// committed for it so far.
type Checked struct {
	Service string
	Real    string // the real server's key in its service (addr:port)
	Target  string // the observation target: TargetName of its probe Key
	Check   string // Spec.Hash of the service's check (fsm.HealthChange.Check)
	Policy  string // PolicyMajority (also ""), PolicyAny or PolicyAll
	// Decided: a decision is committed; Up is that decision. Without one
	// the real server counts as up.
	Decided bool
	Up      bool
}

// View is one director's latest view of one target: its prober's state
// after rise/fall, and the last error.
type View struct {
	Up  bool
	Err string
}

// Transition is a decision to commit: the real server changes to Up.
type Transition struct {
	Service, Real string
	Up            bool
	Reason        string
	Check         string
}

// TargetName is the service-independent name of a probe in observations
// (the address actually checked and the spec hash): every (service, real
// server) that shares the probe maps to it.
func TargetName(k Key) string { return k.String() }

// Decide returns the transitions to commit, sorted by service and real
// server. live lists the directors whose views count (alive in gossip,
// registered as non-witness directors); views holds each director's latest
// view per target. A live director without a view of a target is not
// counted for it, and a real server no live director has a view of keeps
// its decision. Under the majority policy a tie changes nothing.
//
// It is a pure function of its inputs.
func Decide(checked []Checked, live []string, views map[string]map[string]View) []Transition {
	dirs := slices.Clone(live)
	slices.Sort(dirs)
	dirs = slices.Compact(dirs)
	var out []Transition
	for _, c := range checked {
		var upBy, downBy []string
		var errs []string
		for _, d := range dirs {
			v, ok := views[d][c.Target]
			if !ok {
				continue
			}
			if v.Up {
				upBy = append(upBy, d)
			} else {
				downBy = append(downBy, d)
				if v.Err != "" {
					errs = append(errs, v.Err)
				}
			}
		}
		n := len(upBy) + len(downBy)
		if n == 0 {
			continue // nobody has seen it: no change
		}
		policy := c.Policy
		if policy == "" {
			policy = PolicyMajority
		}
		var down, up bool
		switch policy {
		case PolicyAny:
			down, up = len(downBy) > 0, len(downBy) == 0
		case PolicyAll:
			down, up = len(upBy) == 0, len(upBy) > 0
		default:
			down, up = 2*len(downBy) > n, 2*len(upBy) > n
		}
		current := !c.Decided || c.Up
		switch {
		case down && current:
			out = append(out, Transition{Service: c.Service, Real: c.Real, Up: false, Check: c.Check,
				Reason: reason("down", downBy, n, policy, commonest(errs))})
		case up && !current:
			out = append(out, Transition{Service: c.Service, Real: c.Real, Up: true, Check: c.Check,
				Reason: reason("up", upBy, n, policy, "")})
		}
	}
	slices.SortFunc(out, func(a, b Transition) int {
		return cmp.Or(cmp.Compare(a.Service, b.Service), cmp.Compare(a.Real, b.Real))
	})
	return out
}

// reason says which views decided: "down: d1,d2 of 3 see it down:
// connection refused", "up: d1 of 3 sees it up (policy all)".
func reason(state string, by []string, n int, policy, err string) string {
	verb := "see"
	if len(by) == 1 {
		verb = "sees"
	}
	s := fmt.Sprintf("%s: %s of %d %s it %s", state, strings.Join(by, ","), n, verb, state)
	if policy != PolicyMajority {
		s += " (policy " + policy + ")"
	}
	if err != "" {
		s += ": " + err
	}
	return s
}

// commonest returns the most frequent string of errs (the first one on a
// tie), or "".
func commonest(errs []string) string {
	best, bestN := "", 0
	for i, e := range errs {
		n := 0
		for _, f := range errs[i:] {
			if f == e {
				n++
			}
		}
		if n > bestN {
			best, bestN = e, n
		}
	}
	return best
}
