package agent

import (
	"context"
	"log/slog"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/raftlb/raftlb/fsm"
	"github.com/raftlb/raftlb/model"
)

func TestDecideLeadership(t *testing.T) {
	now := time.Unix(1000, 0)
	c := func(id string, pri int, mods ...func(*candidate)) candidate {
		x := candidate{ID: id, Priority: pri, Ready: true}
		for _, m := range mods {
			m(&x)
		}
		return x
	}
	witness := func(x *candidate) { x.Witness = true }
	fault := func(x *candidate) { x.Fault = "interface eth1 is down" }
	notReady := func(x *candidate) { x.Ready = false }
	nopreempt := func(x *candidate) { x.NoPreempt = true }
	delay := func(x *candidate) { x.PreemptDelay = 5 * time.Second }
	for _, tc := range []struct {
		name   string
		self   candidate
		others []candidate
		since  map[string]time.Time
		target string
		reason string
		wake   bool
	}{
		{"steady", c("d1", 100), []candidate{c("d2", 100), c("d3", 50)}, nil, "", "no eligible director with a higher priority", false},
		{"preempt now", c("d1", 100), []candidate{c("d2", 150), c("d3", 200)}, nil, "d3", "preempted by d3", false},
		{"preempt after delay", c("d1", 100), []candidate{c("d2", 150, delay)}, map[string]time.Time{"d2": now.Add(-time.Second)}, "", "preempts in 4s", true},
		{"delay served", c("d1", 100), []candidate{c("d2", 150, delay)}, map[string]time.Time{"d2": now.Add(-6 * time.Second)}, "d2", "preempted by d2", false},
		{"nopreempt keeps the leader", c("d1", 100), []candidate{c("d2", 150, nopreempt)}, nil, "", "nopreempt", false},
		{"not ready is not a successor", c("d1", 100), []candidate{c("d2", 150, notReady)}, nil, "", "no eligible", false},
		{"faulted is not a successor", c("d1", 100), []candidate{c("d2", 150, fault)}, nil, "", "no eligible", false},
		{"witness leaves at once", c("w", 100, witness), []candidate{c("d1", 50, nopreempt), c("d2", 50)}, nil, "d1", "witness", false},
		{"witness never to a witness", c("w", 100, witness), []candidate{c("w2", 200, witness), c("d2", 10)}, nil, "d2", "witness", false},
		{"fault leaves to the best", c("d1", 200, fault), []candidate{c("d2", 100), c("d3", 150)}, nil, "d3", "tracked check failing", false},
		{"fault with nowhere to go", c("d1", 200, fault), []candidate{c("d2", 100, fault)}, nil, "", "no eligible director to hand leadership to", false},
		{"ties by id", c("d9", 100, witness), []candidate{c("d3", 100), c("d2", 100)}, nil, "d2", "witness", false},
	} {
		d := decideLeadership(tc.self, tc.others, tc.since, now)
		if d.Target != tc.target || !strings.Contains(d.Reason, tc.reason) || d.WakeAt.IsZero() == tc.wake {
			t.Errorf("%s: got %+v, want target %q reason ~%q wake %v", tc.name, d, tc.target, tc.reason, tc.wake)
		}
	}
}

// TestPriorityPreemptsAndWitnessHandsOver: in-process directors over real
// TCP (no dataplane): leadership moves to the highest priority after its
// preempt delay; a witness that is elected hands leadership away; a
// director whose tracked script fails hands leadership away and is not
// chosen again while it fails.
func TestPriorityPreemptsAndWitnessHandsOver(t *testing.T) {
	tc := newCluster(t, 3, "peers")
	tc.dirs[0].cfg.Priority = 200
	tc.dirs[0].cfg.PreemptDelay = 300 * time.Millisecond
	tc.dirs[2].cfg.Witness = true
	flag := t.TempDir() + "/ok"
	script := t.TempDir() + "/check.sh"
	if err := os.WriteFile(script, []byte("#!/bin/sh\ntest -e \"$1\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	tc.dirs[0].cfg.TrackScripts = []string{script + " " + flag}
	tc.dirs[0].cfg.TrackInterval = 100 * time.Millisecond
	touch(t, flag)
	if os.Getenv("DEBUGLOG") != "" {
		for _, d := range tc.dirs {
			d.cfg.Log = slog.New(slog.NewTextHandler(os.Stderr, nil))
		}
	}
	tc.startAll()
	lead := func() string {
		i := tc.leader()
		return tc.dirs[i].cfg.NodeID
	}
	waitFor(t, "d1 (priority 200) to lead", func() bool { return lead() == "d1" })

	// Make d1 lead-ineligible: it hands over to d2 (the witness never
	// keeps it) and does not take it back while failing.
	rm(t, flag)
	waitFor(t, "d2 to lead after d1's tracked script fails", func() bool { return lead() == "d2" })
	if n, _ := tc.dirs[1].a.fsm.Node("d1"); !strings.Contains(n.Fault, "failed") {
		t.Fatalf("d1's fault not registered: %+v", n)
	}
	time.Sleep(time.Second)
	if l := lead(); l != "d2" {
		t.Fatalf("%s leads while d1 fails its tracked script", l)
	}

	// Force the witness to lead: it hands over at once.
	if err := tc.dirs[1].a.node.TransferLeadership("d3"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the witness to hand leadership to d2", func() bool { return lead() == "d2" })

	// d1 recovers: it preempts again after its delay.
	touch(t, flag)
	waitFor(t, "d1 to preempt again", func() bool { return lead() == "d1" })
	st, err := tc.client(0).Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if l := st.Leadership; l == nil || l.Priority != 200 {
		t.Fatalf("status leadership %+v", st.Leadership)
	}
}

func touch(t *testing.T, p string) {
	t.Helper()
	if err := writeFile(p); err != nil {
		t.Fatal(err)
	}
}

func writeFile(p string) error { return os.WriteFile(p, nil, 0o600) }

func rm(t *testing.T, p string) {
	t.Helper()
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
}

func TestSuccessorPreference(t *testing.T) {
	tf := &testFSM{t: t, f: fsm.New(nil)}
	for _, n := range []model.Node{
		{ID: "a", Priority: 100},
		{ID: "b", Priority: 200},
		{ID: "c", Priority: 200},
		{ID: "w", Priority: 250, Witness: true},
		{ID: "f", Priority: 254, Fault: "interface eth1 down"},
	} {
		n.RaftAddr, n.APIAddr, n.APIScheme = "10.0.0.1:7481", "10.0.0.1:7480", "http"
		tf.must(&fsm.RegisterNode{Node: n})
	}
	a := &Agent{fsm: tf.f}
	got := a.successorPreference([]string{"a", "b", "c", "f", "unknown", "w"})
	// Eligible by priority then ID; then the witness and the faulted director
	// by priority; unregistered voters last.
	want := []string{"b", "c", "a", "f", "w", "unknown"}
	if !slices.Equal(got, want) {
		t.Errorf("successorPreference = %v; want %v", got, want)
	}
}
