package health

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/raftlb/raftlb/model"
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
	// Weight is the real server's configured weight; Dynamic the
	// committed dynamic weight (nil: the configured one).
	Weight  int
	Dynamic *int
}

// View is one director's latest view of one target: its prober's state
// after rise/fall, the last error, and the dynamic weight of its last
// successful check.
type View struct {
	Up  bool
	Err string
	// Weight: the dynamic weight (nil: the configured weight).
	// WeightUnknown: this view cannot tell (its director runs a release
	// without dynamic weights, or the cluster cannot store them yet): it
	// counts for up/down, not for the weight.
	Weight        *int
	WeightUnknown bool
}

// Transition is a decision to commit: the real server changes to Up, or
// its dynamic weight changes to Weight (nil: the configured weight) while
// it stays up.
type Transition struct {
	Service, Real string
	Up            bool
	Reason        string
	Check         string
	Weight        *int
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
// A real server that is (or stays) up gets the dynamic weight of the views
// that see it up and know their weight (dynamicWeight); a change of that
// weight alone is a transition too. One decided down has none.
//
// It is a pure function of its inputs.
func Decide(checked []Checked, live []string, views map[string]map[string]View) []Transition {
	dirs := slices.Clone(live)
	slices.Sort(dirs)
	dirs = slices.Compact(dirs)
	var out []Transition
	var weights []directorWeight // reused: formatted before the next real server
	for _, c := range checked {
		var upBy, downBy []string
		var errs []string
		weights = weights[:0]
		for _, d := range dirs {
			v, ok := views[d][c.Target]
			if !ok {
				continue
			}
			if v.Up {
				upBy = append(upBy, d)
				if !v.WeightUnknown {
					weights = append(weights, directorWeight{d, v.Weight})
				}
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
		if down && current {
			out = append(out, Transition{Service: c.Service, Real: c.Real, Up: false, Check: c.Check,
				Reason: reason("down", downBy, n, policy, commonest(errs))})
			continue
		}
		if !current && !up {
			continue // stays down
		}
		w, how := dynamicWeight(policy, c.Weight, weights)
		if how == "" {
			w = c.Dynamic // no view that sees it up knows its weight: keep it
		}
		if current && model.SameWeight(w, c.Dynamic) {
			continue
		}
		r := reason("up", upBy, n, policy, "")
		if how != "" && (w != nil || c.Dynamic != nil || weighted(weights)) {
			r += "; " + weightText(w, c.Weight, how, weights)
		}
		out = append(out, Transition{Service: c.Service, Real: c.Real, Up: true, Check: c.Check, Reason: r, Weight: model.CloneWeight(w)})
	}
	slices.SortFunc(out, func(a, b Transition) int {
		return cmp.Or(cmp.Compare(a.Service, b.Service), cmp.Compare(a.Real, b.Real))
	})
	return out
}

// directorWeight is one view's dynamic weight (nil: the configured one).
type directorWeight struct {
	director string
	weight   *int
}

// dynamicWeight combines the dynamic weights of the views that see a real
// server up (configured is its configured weight, the value of a nil
// weight) under the service's policy, with the same stance on a
// disagreement as the up/down decision:
//
//   - majority: the median (the lower one of an even count): a value at
//     least half of the views report at or above and at or below, so one
//     director whose script misreads cannot move it, and the weight
//     follows the views as a majority of them moves;
//   - any (down as soon as one sees it down): the lowest;
//   - all (up as long as one sees it up): the highest.
//
// The result is nil (the configured weight) when the value chosen is the
// configured weight and a view reports it so (exit 0), else that value.
// how names the rule ("median", "lowest", "highest"); "" when there is no
// view to combine (the caller keeps the committed weight).
func dynamicWeight(policy string, configured int, views []directorWeight) (w *int, how string) {
	if len(views) == 0 {
		return nil, ""
	}
	switch policy {
	case PolicyAny:
		how = "lowest"
	case PolicyAll:
		how = "highest"
	default:
		how = "median"
	}
	if !weighted(views) {
		return nil, how // every view: the configured weight (no script with dynamic)
	}
	vals := make([]int, len(views))
	for i, v := range views {
		vals[i] = configured
		if v.weight != nil {
			vals[i] = *v.weight
		}
	}
	slices.Sort(vals)
	chosen := vals[(len(vals)-1)/2]
	switch policy {
	case PolicyAny:
		chosen = vals[0]
	case PolicyAll:
		chosen = vals[len(vals)-1]
	}
	if chosen == configured {
		for _, v := range views {
			if v.weight == nil {
				return nil, how
			}
		}
	}
	return &chosen, how
}

// weighted reports whether any view has a dynamic weight.
func weighted(views []directorWeight) bool {
	for _, v := range views {
		if v.weight != nil {
			return true
		}
	}
	return false
}

// weightText is the weight part of a reason: "weight 10 (median of d1:10
// d2:10 d3:5)", "configured weight 3 (lowest of d1:- d2:7)".
func weightText(w *int, configured int, how string, views []directorWeight) string {
	parts := make([]string, len(views))
	for i, v := range views {
		parts[i] = v.director + ":-"
		if v.weight != nil {
			parts[i] = v.director + ":" + strconv.Itoa(*v.weight)
		}
	}
	s := "configured weight " + strconv.Itoa(configured)
	if w != nil {
		s = "weight " + strconv.Itoa(*w)
	}
	return s + " (" + how + " of " + strings.Join(parts, " ") + ")"
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
