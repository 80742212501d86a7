package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// waitTimeout bounds every "eventually" condition in these tests. Conditions
// normally hold within a few hundred milliseconds; the bound only matters
// when something is broken.
const waitTimeout = 15 * time.Second

// listFSM is a deterministic test FSM: an append-only list of strings.
type listFSM struct {
	mu       sync.Mutex
	entries  []string
	restores int
}

func (f *listFSM) Apply(l *raft.Log) interface{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.entries = append(f.entries, string(l.Data))
	return len(f.entries)
}

func (f *listFSM) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return &listSnapshot{entries: slices.Clone(f.entries)}, nil
}

func (f *listFSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	var entries []string
	if err := json.NewDecoder(rc).Decode(&entries); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.entries = entries
	f.restores++
	return nil
}

func (f *listFSM) list() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.entries)
}

func (f *listFSM) restoreCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.restores
}

type listSnapshot struct{ entries []string }

func (s *listSnapshot) Persist(sink raft.SnapshotSink) error {
	if err := json.NewEncoder(sink).Encode(s.entries); err != nil {
		_ = sink.Cancel()
		return err
	}
	return sink.Close()
}

func (s *listSnapshot) Release() {}

// testLogger is silent unless RAFTLB_TEST_LOG is set (to a level such as
// "debug"); writing to t.Log is avoided because raft logs from goroutines
// that may outlive a test.
func testLogger(name string) hclog.Logger {
	level := hclog.Off
	if v := os.Getenv("RAFTLB_TEST_LOG"); v != "" {
		level = hclog.LevelFromString(v)
	}
	return hclog.New(&hclog.LoggerOptions{Name: "raft-" + name, Level: level, Output: os.Stderr})
}

// testNode is a Node plus its FSM and configuration (for restarts).
type testNode struct {
	*Node
	fsm *listFSM
	cfg Config
}

// startNode starts a node with the fast profile on 127.0.0.1:0 in a fresh
// temp dir; mod may adjust the config. The node is shut down at test end.
func startNode(t *testing.T, id string, mod func(*Config)) *testNode {
	t.Helper()
	cfg := Config{
		NodeID:   id,
		DataDir:  t.TempDir(),
		BindAddr: "127.0.0.1:0",
		Profile:  profileFast,
		Logger:   testLogger(id),
	}
	if mod != nil {
		mod(&cfg)
	}
	return startNodeWith(t, cfg)
}

// startNodeWith starts a node from a complete config with a fresh FSM.
func startNodeWith(t *testing.T, cfg Config) *testNode {
	t.Helper()
	fsm := &listFSM{}
	n, err := New(cfg, fsm)
	if err != nil {
		t.Fatalf("New(%s): %v", cfg.NodeID, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		if err := n.ShutdownContext(ctx); err != nil {
			t.Errorf("Shutdown(%s): %v", n.ID(), err)
		}
	})
	return &testNode{Node: n, fsm: fsm, cfg: cfg}
}

// startCluster starts size nodes n1..n<size>, bootstraps all of them with
// the same voter list and waits for a leader.
func startCluster(t *testing.T, size int, mod func(*Config)) []*testNode {
	t.Helper()
	nodes := make([]*testNode, size)
	servers := make([]Server, size)
	for i := range nodes {
		nodes[i] = startNode(t, fmt.Sprintf("n%d", i+1), mod)
		servers[i] = Server{ID: nodes[i].ID(), Address: nodes[i].Addr()}
	}
	for _, n := range nodes {
		// The first two can elect a leader that replicates the identical
		// configuration to the last one before it bootstraps itself.
		if err := n.Bootstrap(servers); err != nil && !errors.Is(err, ErrAlreadyBootstrapped) {
			t.Fatalf("Bootstrap(%s): %v", n.ID(), err)
		}
	}
	waitLeader(t, nodes)
	return nodes
}

// eventually polls cond until it returns nil or waitTimeout passes.
func eventually(t *testing.T, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s: %v", waitTimeout, what, err)
		}
		<-tick.C
	}
}

// consistently checks that cond keeps returning nil for the whole window d.
// It is used only for negative assertions ("X does not happen"), after a
// positive condition proved the system made progress.
func consistently(t *testing.T, what string, d time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		if err := cond(); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if time.Now().After(deadline) {
			return
		}
		<-tick.C
	}
}

// waitLeader waits until one of nodes is leader and every node in nodes
// knows it; it returns the leader.
func waitLeader(t *testing.T, nodes []*testNode) *testNode {
	t.Helper()
	var leader *testNode
	eventually(t, "a leader known to all nodes", func() error {
		leader = nil
		for _, n := range nodes {
			if n.IsLeader() {
				leader = n
			}
		}
		if leader == nil {
			return errors.New("no leader")
		}
		for _, n := range nodes {
			if _, id := n.Leader(); id != leader.ID() {
				return fmt.Errorf("%s thinks leader is %q, not %q", n.ID(), id, leader.ID())
			}
		}
		return nil
	})
	return leader
}

// apply writes cmd through the current leader among nodes, retrying on
// ErrNotLeader (e.g. during an election), as a real client would. A retry
// after a lost leadership can duplicate an entry, so tests compare FSMs with
// each other and check that expected entries are present rather than
// counting them.
func apply(t *testing.T, nodes []*testNode, cmd string) {
	t.Helper()
	eventually(t, "apply "+cmd, func() error {
		for _, n := range nodes {
			if !n.IsLeader() {
				continue
			}
			_, _, err := n.Apply([]byte(cmd), time.Second)
			return err
		}
		return errors.New("no leader")
	})
}

// applyN writes prefix-0 .. prefix-(count-1) and returns them.
func applyN(t *testing.T, nodes []*testNode, prefix string, count int) []string {
	t.Helper()
	var cmds []string
	for i := range count {
		cmd := fmt.Sprintf("%s-%d", prefix, i)
		apply(t, nodes, cmd)
		cmds = append(cmds, cmd)
	}
	return cmds
}

// waitConverged waits until all nodes' FSMs are identical and contain want.
func waitConverged(t *testing.T, nodes []*testNode, want []string) {
	t.Helper()
	eventually(t, "FSMs to converge", func() error {
		ref := nodes[0].fsm.list()
		if err := containsAll(ref, want); err != nil {
			return fmt.Errorf("%s: %w", nodes[0].ID(), err)
		}
		for _, n := range nodes[1:] {
			if got := n.fsm.list(); !slices.Equal(got, ref) {
				return fmt.Errorf("%s has %d entries, %s has %d", n.ID(), len(got), nodes[0].ID(), len(ref))
			}
		}
		return nil
	})
}

func containsAll(have, want []string) error {
	set := make(map[string]bool, len(have))
	for _, h := range have {
		set[h] = true
	}
	var missing []string
	for _, w := range want {
		if !set[w] {
			missing = append(missing, w)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("missing %d entries (first %q)", len(missing), missing[0])
	}
	return nil
}

func containsAny(have, unwanted []string) error {
	set := make(map[string]bool, len(unwanted))
	for _, u := range unwanted {
		set[u] = true
	}
	for _, h := range have {
		if set[h] {
			return fmt.Errorf("unexpectedly has entry %q", h)
		}
	}
	return nil
}

func followers(nodes []*testNode, leader *testNode) []*testNode {
	var out []*testNode
	for _, n := range nodes {
		if n != leader {
			out = append(out, n)
		}
	}
	return out
}

func without(nodes []*testNode, drop *testNode) []*testNode { return followers(nodes, drop) }

func errContains(err error, subs ...string) bool {
	if err == nil {
		return false
	}
	for _, s := range subs {
		if !strings.Contains(err.Error(), s) {
			return false
		}
	}
	return true
}

func ctxTimeout(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	t.Cleanup(cancel)
	return ctx
}
