package health

import (
	"fmt"
	"reflect"
	"testing"
)

func TestDecide(t *testing.T) {
	const tg = "10.0.0.1:80/h1"
	up := View{Up: true}
	down := func(err string) View { return View{Err: err} }
	real := func(policy string, decided, isUp bool) Checked {
		return Checked{Service: "web", Real: "10.0.0.1:80", Target: tg, Check: "c1", Policy: policy, Decided: decided, Up: isUp}
	}
	views := func(vs map[string]View) map[string]map[string]View {
		out := map[string]map[string]View{}
		for d, v := range vs {
			out[d] = map[string]View{tg: v}
		}
		return out
	}
	toDown := func(reason string) []Transition {
		return []Transition{{Service: "web", Real: "10.0.0.1:80", Up: false, Check: "c1", Reason: reason}}
	}
	toUp := func(reason string) []Transition {
		return []Transition{{Service: "web", Real: "10.0.0.1:80", Up: true, Check: "c1", Reason: reason}}
	}
	three := []string{"d1", "d2", "d3"}
	cases := []decideCase{
		{"majority: all up, undecided: nothing", real("", false, false), three,
			views(map[string]View{"d1": up, "d2": up, "d3": up}), nil},
		{"majority: one of three down: nothing", real("", false, false), three,
			views(map[string]View{"d1": up, "d2": up, "d3": down("timeout")}), nil},
		{"majority: two of three down", real("", false, false), three,
			views(map[string]View{"d1": down("connection refused"), "d2": down("connection refused"), "d3": up}),
			toDown("down: d1,d2 of 3 see it down: connection refused")},
		{"majority: already down: nothing", real(PolicyMajority, true, false), three,
			views(map[string]View{"d1": down("x"), "d2": down("x"), "d3": down("x")}), nil},
		{"majority: two of three up again", real("", true, false), three,
			views(map[string]View{"d1": up, "d2": down("timeout"), "d3": up}),
			toUp("up: d1,d3 of 3 see it up")},
		{"majority: tie keeps up", real("", true, true), []string{"d1", "d2"},
			views(map[string]View{"d1": up, "d2": down("x")}), nil},
		{"majority: tie keeps down", real("", true, false), []string{"d1", "d2"},
			views(map[string]View{"d1": up, "d2": down("x")}), nil},
		{"majority: a director without a view is not counted", real("", false, false), three,
			views(map[string]View{"d1": down("refused"), "d3": up}), nil},
		{"majority: only one director has a view", real("", false, false), three,
			views(map[string]View{"d2": down("refused")}),
			toDown("down: d2 of 1 sees it down: refused")},
		{"no view at all: no change", real("", true, false), three, views(nil), nil},
		{"no live director: no change", real("", false, false), nil,
			views(map[string]View{"d1": down("x"), "d2": down("x")}), nil},
		{"a director that left is not counted", real("", false, false), []string{"d1", "d3"},
			views(map[string]View{"d1": up, "d2": down("x"), "d3": down("y")}), nil},
		{"a departed director's down view no longer holds it down", real("", true, false), []string{"d1", "d3"},
			views(map[string]View{"d1": up, "d2": down("x"), "d3": up}),
			toUp("up: d1,d3 of 2 see it up")},
		{"commonest error wins", real("", false, false), []string{"d1", "d2", "d3", "d4", "d5"},
			views(map[string]View{"d1": down("timeout"), "d2": down("refused"), "d3": down("refused"), "d4": up, "d5": up}),
			toDown("down: d1,d2,d3 of 5 see it down: refused")},
		{"down without an error text", real("", false, false), three,
			views(map[string]View{"d1": down(""), "d2": down(""), "d3": down("")}),
			toDown("down: d1,d2,d3 of 3 see it down")},

		{"any: one of three down", real(PolicyAny, false, false), three,
			views(map[string]View{"d1": up, "d2": up, "d3": down("timeout")}),
			toDown("down: d3 of 3 sees it down (policy any): timeout")},
		{"any: up only when every view is up", real(PolicyAny, true, false), three,
			views(map[string]View{"d1": up, "d2": up, "d3": down("timeout")}), nil},
		{"any: all up again", real(PolicyAny, true, false), three,
			views(map[string]View{"d1": up, "d2": up, "d3": up}),
			toUp("up: d1,d2,d3 of 3 see it up (policy any)")},

		{"all: two of three down: nothing", real(PolicyAll, false, false), three,
			views(map[string]View{"d1": down("x"), "d2": down("x"), "d3": up}), nil},
		{"all: every view down", real(PolicyAll, true, true), three,
			views(map[string]View{"d1": down("x"), "d2": down("x"), "d3": down("y")}),
			toDown("down: d1,d2,d3 of 3 see it down (policy all): x")},
		{"all: one up brings it back", real(PolicyAll, true, false), three,
			views(map[string]View{"d1": down("x"), "d2": up, "d3": down("y")}),
			toUp("up: d2 of 3 sees it up (policy all)")},
		{"all: the only live director down", real(PolicyAll, false, false), []string{"d2"},
			views(map[string]View{"d1": up, "d2": down("x")}),
			toDown("down: d2 of 1 sees it down (policy all): x")},

		{"stale check hash: views of another spec do not count", Checked{Service: "web", Real: "10.0.0.1:80",
			Target: "10.0.0.1:80/h2", Check: "c2"}, three,
			views(map[string]View{"d1": down("x"), "d2": down("x"), "d3": down("x")}), nil},
		{"duplicate live names count once", real("", false, false), []string{"d1", "d1", "d2", "d3"},
			views(map[string]View{"d1": down("x"), "d2": up, "d3": up}), nil},
	}
	runDecide(t, cases)
}

// Services sharing one probe share its views; each gets its own
// transition with its own check hash and policy; output is sorted.
func TestDecideSharedTargetAndOrder(t *testing.T) {
	const tg = "10.0.0.1:80/h1"
	v := map[string]map[string]View{
		"d1": {tg: {Err: "refused"}, "10.0.0.2:80/h1": {Up: true}},
		"d2": {tg: {Up: true}, "10.0.0.2:80/h1": {Up: true}},
		"d3": {tg: {Up: true}, "10.0.0.2:80/h1": {Up: true}},
	}
	checked := []Checked{
		{Service: "web", Real: "10.0.0.1:80", Target: tg, Check: "cw"},
		{Service: "api", Real: "10.0.0.1:80", Target: tg, Check: "ca", Policy: PolicyAny},
		{Service: "api", Real: "10.0.0.2:80", Target: "10.0.0.2:80/h1", Check: "ca", Policy: PolicyAny, Decided: true, Up: false},
	}
	got := Decide(checked, []string{"d3", "d2", "d1"}, v)
	want := []Transition{
		{Service: "api", Real: "10.0.0.1:80", Up: false, Check: "ca", Reason: "down: d1 of 3 sees it down (policy any): refused"},
		{Service: "api", Real: "10.0.0.2:80", Up: true, Check: "ca", Reason: "up: d1,d2,d3 of 3 see it up (policy any)"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got  %+v\nwant %+v", got, want)
	}
	// Inputs are not modified.
	if checked[0].Service != "web" || len(v) != 3 {
		t.Fatal("Decide modified its inputs")
	}
}

// Dynamic weights (script checks with dynamic): the views that see a real
// server up and know their weight combine under the service's policy
// (majority: the median, any: the lowest, all: the highest); a change of
// the weight alone is a transition; a view that cannot tell its weight
// counts for up/down only; without any such view the committed weight is
// kept.
func TestDecideDynamicWeight(t *testing.T) {
	const tg = "10.0.0.1:80/h1"
	w := func(n int) *int { return &n }
	up := func(weight *int) View { return View{Up: true, Weight: weight} }
	cfg := View{Up: true}                          // exit 0: the configured weight
	unknown := View{Up: true, WeightUnknown: true} // an older director
	down := View{Err: "script exit 1"}
	real := func(policy string, decided, isUp bool, dyn *int) Checked {
		return Checked{Service: "web", Real: "10.0.0.1:80", Target: tg, Check: "c1", Policy: policy,
			Decided: decided, Up: isUp, Weight: 3, Dynamic: dyn}
	}
	views := func(vs ...View) map[string]map[string]View {
		out := map[string]map[string]View{}
		for i, v := range vs {
			out[fmt.Sprintf("d%d", i+1)] = map[string]View{tg: v}
		}
		return out
	}
	to := func(isUp bool, weight *int, reason string) []Transition {
		return []Transition{{Service: "web", Real: "10.0.0.1:80", Up: isUp, Check: "c1", Reason: reason, Weight: weight}}
	}
	three := []string{"d1", "d2", "d3"}
	cases := []decideCase{
		{"undecided, all report 10: weight 10", real("", false, false, nil), three,
			views(up(w(10)), up(w(10)), up(w(10))),
			to(true, w(10), "up: d1,d2,d3 of 3 see it up; weight 10 (median of d1:10 d2:10 d3:10)")},
		{"weight 10 committed, all still 10: nothing", real("", true, true, w(10)), three,
			views(up(w(10)), up(w(10)), up(w(10))), nil},
		{"one director moves to 5: the median stays 10", real("", true, true, w(10)), three,
			views(up(w(10)), up(w(5)), up(w(10))), nil},
		{"a majority moves to 5: weight 5 without an up/down change", real("", true, true, w(10)), three,
			views(up(w(5)), up(w(5)), up(w(10))),
			to(true, w(5), "up: d1,d2,d3 of 3 see it up; weight 5 (median of d1:5 d2:5 d3:10)")},
		{"three different values: the median", real("", true, true, w(10)), three,
			views(up(w(12)), up(w(5)), up(w(7))),
			to(true, w(7), "up: d1,d2,d3 of 3 see it up; weight 7 (median of d1:12 d2:5 d3:7)")},
		{"even count: the lower median", real("", true, true, nil), []string{"d1", "d2"},
			views(up(w(4)), up(w(8))),
			to(true, w(4), "up: d1,d2 of 2 see it up; weight 4 (median of d1:4 d2:8)")},
		{"back to exit 0 everywhere: the configured weight", real("", true, true, w(5)), three,
			views(cfg, cfg, cfg),
			to(true, nil, "up: d1,d2,d3 of 3 see it up; configured weight 3 (median of d1:- d2:- d3:-)")},
		{"exit 0 counts as the configured weight in the median", real("", true, true, w(5)), three,
			views(cfg, cfg, up(w(5))),
			to(true, nil, "up: d1,d2,d3 of 3 see it up; configured weight 3 (median of d1:- d2:- d3:5)")},
		{"an explicit weight equal to the configured one stays explicit", real("", true, true, nil), three,
			views(up(w(3)), up(w(3)), up(w(3))),
			to(true, w(3), "up: d1,d2,d3 of 3 see it up; weight 3 (median of d1:3 d2:3 d3:3)")},
		{"dynamic weight 0 is a weight, not down", real("", true, true, nil), three,
			views(up(w(0)), up(w(0)), cfg),
			to(true, w(0), "up: d1,d2,d3 of 3 see it up; weight 0 (median of d1:0 d2:0 d3:-)")},
		{"down: no weight", real("", true, true, w(10)), three,
			views(down, down, up(w(10))),
			to(false, nil, "down: d1,d2 of 3 see it down: script exit 1")},
		{"up again: the weight of the views that see it up", real("", true, false, nil), three,
			views(up(w(10)), down, up(w(8))),
			to(true, w(8), "up: d1,d3 of 3 see it up; weight 8 (median of d1:10 d3:8)")},
		{"down views do not count for the weight", real("", true, true, w(10)), three,
			views(up(w(10)), down, cfg),
			to(true, nil, "up: d1,d3 of 3 see it up; configured weight 3 (median of d1:10 d3:-)")},
		{"majority tie keeps it up, with the weight of the view that sees it up", real("", true, true, nil), []string{"d1", "d2"},
			views(up(w(9)), down),
			to(true, w(9), "up: d1 of 2 sees it up; weight 9 (median of d1:9)")},
		{"views that cannot tell their weight count for up/down only", real("", true, true, nil), three,
			views(unknown, unknown, up(w(6))),
			to(true, w(6), "up: d1,d2,d3 of 3 see it up; weight 6 (median of d3:6)")},
		{"no view knows its weight: the committed weight is kept", real("", true, true, w(6)), three,
			views(unknown, unknown, unknown), nil},
		{"no view knows its weight, up again: the configured weight, reason as before", real("", true, false, nil), three,
			views(unknown, unknown, unknown), to(true, nil, "up: d1,d2,d3 of 3 see it up")},
		{"a check without dynamic weights: reasons as before", real("", true, false, nil), three,
			views(cfg, cfg, down), to(true, nil, "up: d1,d2 of 3 see it up")},

		{"any: the lowest", real(PolicyAny, true, true, nil), three,
			views(up(w(10)), up(w(5)), up(w(7))),
			to(true, w(5), "up: d1,d2,d3 of 3 see it up (policy any); weight 5 (lowest of d1:10 d2:5 d3:7)")},
		{"any: exit 0 as the lowest", real(PolicyAny, true, true, w(5)), three,
			views(up(w(10)), cfg, up(w(7))),
			to(true, nil, "up: d1,d2,d3 of 3 see it up (policy any); configured weight 3 (lowest of d1:10 d2:- d3:7)")},
		{"all: the highest of those that see it up", real(PolicyAll, true, true, nil), three,
			views(up(w(10)), down, up(w(7))),
			to(true, w(10), "up: d1,d3 of 3 see it up (policy all); weight 10 (highest of d1:10 d3:7)")},
	}
	runDecide(t, cases)
}

// decideCase is one real server's case: its checked state, the live
// directors, their views, the transitions wanted.
type decideCase struct {
	name  string
	c     Checked
	live  []string
	views map[string]map[string]View
	want  []Transition
}

func runDecide(t *testing.T, cases []decideCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := Decide([]Checked{tc.c}, tc.live, tc.views)
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got  %+v\nwant %+v", show(got), show(tc.want))
			}
		})
	}
}

// show prints transitions with their weights dereferenced.
func show(ts []Transition) []string {
	var out []string
	for _, t := range ts {
		w := "nil"
		if t.Weight != nil {
			w = fmt.Sprint(*t.Weight)
		}
		out = append(out, fmt.Sprintf("{up %v weight %s reason %q}", t.Up, w, t.Reason))
	}
	return out
}
