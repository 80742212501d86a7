package health

import (
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
	cases := []struct {
		name  string
		c     Checked
		live  []string
		views map[string]map[string]View
		want  []Transition
	}{
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
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := Decide([]Checked{tc.c}, tc.live, tc.views)
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}
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
