package main

import (
	"reflect"
	"testing"

	"github.com/raftlb/raftlb/api/wire"
	"github.com/raftlb/raftlb/model"
)

func TestRealListViews(t *testing.T) {
	views := []wire.DirectorView{
		{Director: "d1", Live: true, Up: true, LatencyMS: 0.312},
		{Director: "d2", Live: true, Up: true, Err: "connection refused", LatencyMS: 0.2},
		{Director: "d3", Live: true, Err: "connection refused", LatencyMS: 1},
		{Director: "w", Live: false, Up: true},
	}
	if got, want := viewsText(views), "d1:up d2:up d3:down(connection refused) w:up(not counted)"; got != want {
		t.Errorf("views %q, want %q", got, want)
	}
	if got, want := latencyText(views[:3]), "0.31/0.20/1.00ms"; got != want {
		t.Errorf("latency %q, want %q", got, want)
	}
	reals := []model.RealServer{{Address: "10.0.1.1", Port: 80}, {Address: "10.0.1.2", Port: 80}}
	table := [][]string{{"RemoteAddress:Port", "Health", "Reason"}, {"10.0.1.1:80", "down", "why"}, {"10.0.1.2:80", "-", ""}}
	sh := &wire.ServiceHealth{Reals: []wire.RealHealthReport{{Key: "10.0.1.1:80", Views: views[2:3]}}}
	want := [][]string{
		{"RemoteAddress:Port", "Health", "Views", "Latency", "Reason"},
		{"10.0.1.1:80", "down", "d3:down(connection refused)", "1.00ms", "why"},
		{"10.0.1.2:80", "-", "-", "-", ""},
	}
	if got := withViews(table, reals, sh); !reflect.DeepEqual(got, want) {
		t.Errorf("table\n%q\nwant\n%q", got, want)
	}
	// Dynamic weights: the decision's in the Health column, each view's
	// after it.
	w := func(n int) *int { return &n }
	weighted := []wire.DirectorView{{Director: "d1", Live: true, Up: true, Weight: w(10)}, {Director: "d2", Live: true, Up: true},
		{Director: "d3", Live: true, Err: "script exit 1", Weight: w(3)}}
	if got, want := viewsText(weighted), "d1:up(w=10) d2:up d3:down(script exit 1)"; got != want {
		t.Errorf("views %q, want %q", got, want)
	}
	for h, want := range map[*model.RealHealth]string{nil: "-", {Up: true}: "up", {Up: true, Weight: w(0)}: "up w=0", {Weight: w(4)}: "down"} {
		if got := healthText(model.RealServer{Health: h}); got != want {
			t.Errorf("health %+v: %q, want %q", h, got, want)
		}
	}
	// No view anywhere yet: the table is unchanged.
	if got := withViews(table, reals, &wire.ServiceHealth{}); !reflect.DeepEqual(got, table) {
		t.Errorf("columns added without views: %q", got)
	}
}
