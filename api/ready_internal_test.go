package api

import (
	"strings"
	"testing"
	"time"

	"github.com/raftlb/raftlb/api/wire"
)

func TestDecideReady(t *testing.T) {
	base := readyInputs{LeaderID: "d1", MaxLag: 256, MaxDelay: time.Second}
	for _, tc := range []struct {
		name   string
		mod    func(*readyInputs)
		ready  bool
		reason string
	}{
		{"caught up", func(in *readyInputs) { in.Commit, in.Applied = 10, 10 }, true, ""},
		{"a few in flight (steady writes)", func(in *readyInputs) { in.Commit, in.Applied = 106, 100 }, true, ""},
		{"at the lag bound", func(in *readyInputs) { in.Commit, in.Applied = 356, 100 }, true, ""},
		{"replaying a backlog, no history", func(in *readyInputs) { in.Commit, in.Applied = 50000, 100 }, false, "catching up: applied 100 of 50000"},
		{"replaying, behind what was committed a second ago", func(in *readyInputs) {
			in.Commit, in.Applied, in.CommitBefore, in.HaveBefore = 50000, 100, 40000, true
		}, false, "catching up"},
		{"a burst: far behind now, but past what was committed a second ago", func(in *readyInputs) {
			in.Commit, in.Applied, in.CommitBefore, in.HaveBefore = 5000, 1200, 1000, true
		}, true, ""},
		{"no leader", func(in *readyInputs) { in.LeaderID = "" }, false, "no leader"},
		{"stopped", func(in *readyInputs) { in.Stopped = &wire.Stopped{Reason: "damaged"} }, false, "stopped: damaged"},
	} {
		in := base
		tc.mod(&in)
		ready, reason := decideReady(in)
		if ready != tc.ready || !strings.Contains(reason, tc.reason) {
			t.Errorf("%s: ready=%v %q, want %v %q", tc.name, ready, reason, tc.ready, tc.reason)
		}
	}
}

func TestCommitHistory(t *testing.T) {
	var h commitHistory
	t0 := time.Unix(1000, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	if _, ok := h.observe(at(0), 10, time.Second); ok {
		t.Fatal("a sample older than the delay before any was taken")
	}
	for ms := 100; ms <= 900; ms += 100 {
		h.observe(at(ms), uint64(10+ms), time.Second)
	}
	before, ok := h.observe(at(1000), 2000, time.Second)
	if !ok || before != 10 {
		t.Fatalf("at 1 s: %d %v, want the sample of 0 s (10)", before, ok)
	}
	before, ok = h.observe(at(1650), 3000, time.Second)
	if !ok || before != 610 {
		t.Fatalf("at 1.65 s: %d %v, want the newest sample at least 1 s old (one per 250 ms is kept: 0.6 s, 610)", before, ok)
	}
	// Bounded, however often it is asked.
	for ms := 2000; ms < 60000; ms++ {
		h.observe(at(ms), uint64(ms), time.Second)
	}
	if n := len(h.samples); n > 6 {
		t.Fatalf("%d samples kept", n)
	}
}
