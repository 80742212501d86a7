package main

import (
	"io"
	"slices"
	"strconv"
	"strings"

	"github.com/raftlb/raftlb/api/wire"
	"github.com/raftlb/raftlb/model"
)

// Each director's view of the real servers of a checked service, next to
// the committed decision (the Health column): `raftlb real list`.

// viewsText is the Views cell: every director's view, compactly:
// "d1:up d2:up(w=5) d3:down(connection refused)", with the dynamic weight
// of a view that has one. A view that does not count (a director not
// live: a witness, or one gossip no longer sees) is marked "(not
// counted)".
func viewsText(vs []wire.DirectorView) string {
	if len(vs) == 0 {
		return "-"
	}
	parts := make([]string, 0, len(vs))
	for _, v := range vs {
		s := v.Director + ":down"
		if v.Up {
			s = v.Director + ":up"
		}
		if !v.Up && v.Err != "" {
			s += "(" + oneLineShort(v.Err, 40) + ")"
		}
		if v.Up && v.Weight != nil {
			s += "(w=" + strconv.Itoa(*v.Weight) + ")"
		}
		if !v.Live {
			s += "(not counted)"
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, " ")
}

// latencyText is the Latency cell: each view's last check latency in
// milliseconds, in the order of the Views cell: "0.31/0.28/0.40ms".
func latencyText(vs []wire.DirectorView) string {
	if len(vs) == 0 {
		return "-"
	}
	parts := make([]string, 0, len(vs))
	for _, v := range vs {
		parts = append(parts, strconv.FormatFloat(v.LatencyMS, 'f', 2, 64))
	}
	return strings.Join(parts, "/") + "ms"
}

func oneLineShort(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}

// withViews adds the Views and Latency columns to a real-server table
// (header first, one row per real server in the order of reals), before
// the free-text Reason column if there is one; not before any director has
// a view.
func withViews(table [][]string, reals []model.RealServer, sh *wire.ServiceHealth) [][]string {
	if sh == nil || len(table) != len(reals)+1 {
		return table
	}
	byKey := make(map[string][]wire.DirectorView, len(sh.Reals))
	seen := false
	for _, r := range sh.Reals {
		byKey[r.Key] = r.Views
		seen = seen || len(r.Views) > 0
	}
	if !seen {
		return table // not checked yet anywhere: nothing to add
	}
	at := len(table[0])
	if at > 0 && table[0][at-1] == "Reason" {
		at--
	}
	out := make([][]string, len(table))
	for i, row := range table {
		add := []string{"Views", "Latency"}
		if i > 0 {
			vs := byKey[reals[i-1].Key()]
			add = []string{viewsText(vs), latencyText(vs)}
		}
		out[i] = slices.Insert(slices.Clone(row), at, add...)
	}
	return out
}

// serviceHealth returns the health report of one checked service, or nil
// (not checked, or a director without /v1/health).
func (e *env) serviceHealth(svc model.Service) *wire.ServiceHealth {
	if svc.Check == nil {
		return nil
	}
	rep, err := e.c.Health(e.ctx, svc.Name, e.read)
	if err != nil {
		return nil
	}
	for i := range rep.Services {
		if rep.Services[i].Name == svc.Name {
			return &rep.Services[i]
		}
	}
	return nil
}

// writeRealsWithViews prints the real servers of svc as `real list` does,
// with each director's view when the service is checked.
func writeRealsWithViews(w io.Writer, svc model.Service, sh *wire.ServiceHealth) {
	if len(svc.Reals) == 0 || sh == nil {
		writeReals(w, svc.ServiceSpec, svc.Reals)
		return
	}
	rows := make([]svcReal, len(svc.Reals))
	for i, r := range svc.Reals {
		rows[i] = svcReal{svc.ServiceSpec, r}
	}
	writeTable(w, withViews(realTable(rows), svc.Reals, sh))
}

// realListJSON is `real list -o json` for a checked service: the real
// servers with each director's view.
type realListJSON struct {
	model.RealServer
	Views []wire.DirectorView `json:"views,omitempty"`
}

func realsWithViews(svc model.Service, sh *wire.ServiceHealth) any {
	if sh == nil {
		return svc.Reals
	}
	byKey := map[string][]wire.DirectorView{}
	for _, r := range sh.Reals {
		byKey[r.Key] = r.Views
	}
	out := make([]realListJSON, len(svc.Reals))
	for i, r := range svc.Reals {
		out[i] = realListJSON{RealServer: r, Views: byKey[r.Key()]}
	}
	return out
}
