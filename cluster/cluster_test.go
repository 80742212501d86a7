package cluster

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

func TestProfiles(t *testing.T) {
	if got := ProfileNames(); !slices.Equal(got, []string{"lan", "fast"}) {
		t.Fatalf("ProfileNames = %v", got)
	}
	def, err := ProfileByName("")
	if err != nil || def.Name != "lan" {
		t.Fatalf(`ProfileByName("") = %+v, %v; want lan`, def, err)
	}
	lan, _ := ProfileByName("lan")
	want := Profile{Name: "lan", HeartbeatTimeout: 300 * time.Millisecond, ElectionTimeout: 300 * time.Millisecond,
		LeaderLeaseTimeout: 270 * time.Millisecond, CommitTimeout: 5 * time.Millisecond}
	if lan != want {
		t.Errorf("lan = %+v, want %+v", lan, want)
	}
	fast, _ := ProfileByName("fast")
	want = Profile{Name: "fast", HeartbeatTimeout: 100 * time.Millisecond, ElectionTimeout: 100 * time.Millisecond,
		LeaderLeaseTimeout: 90 * time.Millisecond, CommitTimeout: 5 * time.Millisecond}
	if fast != want {
		t.Errorf("fast = %+v, want %+v", fast, want)
	}
	if _, err := ProfileByName("wan"); !errContains(err, "wan", "lan", "fast") {
		t.Errorf(`ProfileByName("wan") error = %v; want it to name the valid profiles`, err)
	}
	for _, p := range profiles {
		if err := p.validate(); err != nil {
			t.Errorf("built-in profile invalid: %v", err)
		}
	}
}

func TestThreeNodeReplication(t *testing.T) {
	nodes := startCluster(t, 3, nil)
	leader := waitLeader(t, nodes)

	want := applyN(t, nodes, "a", 20)
	waitConverged(t, nodes, want)

	// Index and response come from the FSM via raft.
	idx, resp, err := leader.Apply([]byte("direct"), time.Second)
	if err != nil {
		t.Fatalf("leader Apply: %v", err)
	}
	if idx == 0 || resp == nil {
		t.Errorf("Apply = (%d, %v); want index > 0 and the FSM response", idx, resp)
	}
	if n, ok := resp.(int); !ok || n != len(leader.fsm.list()) {
		t.Errorf("Apply response = %v; want the FSM's list length", resp)
	}

	// Followers refuse leader-only operations with ErrNotLeader.
	for _, f := range followers(nodes, leader) {
		if _, _, err := f.Apply([]byte("x"), time.Second); !errors.Is(err, ErrNotLeader) {
			t.Errorf("%s Apply error = %v; want ErrNotLeader", f.ID(), err)
		}
		if err := f.VerifyLeader(); !errors.Is(err, ErrNotLeader) {
			t.Errorf("%s VerifyLeader = %v; want ErrNotLeader", f.ID(), err)
		}
		if err := f.Barrier(time.Second); !errors.Is(err, ErrNotLeader) {
			t.Errorf("%s Barrier = %v; want ErrNotLeader", f.ID(), err)
		}
		if err := f.AddVoter("n9", "127.0.0.1:1"); !errors.Is(err, ErrNotLeader) {
			t.Errorf("%s AddVoter = %v; want ErrNotLeader", f.ID(), err)
		}
		if err := f.RemoveServer(leader.ID()); !errors.Is(err, ErrNotLeader) {
			t.Errorf("%s RemoveServer = %v; want ErrNotLeader", f.ID(), err)
		}
		if err := f.TransferLeadership(""); !errors.Is(err, ErrNotLeader) {
			t.Errorf("%s TransferLeadership = %v; want ErrNotLeader", f.ID(), err)
		}
		if f.IsLeader() {
			t.Errorf("%s IsLeader = true", f.ID())
		}
	}
	if err := leader.VerifyLeader(); err != nil {
		t.Errorf("leader VerifyLeader: %v", err)
	}
	if err := leader.Barrier(time.Second); err != nil {
		t.Errorf("leader Barrier: %v", err)
	}
	if err := leader.Bootstrap([]Server{{leader.ID(), leader.Addr()}}); !errors.Is(err, ErrAlreadyBootstrapped) {
		t.Errorf("second Bootstrap = %v; want ErrAlreadyBootstrapped", err)
	}

	// Peers: sorted, all voters, exactly the leader flagged.
	peers, err := nodes[1].Peers()
	if err != nil {
		t.Fatal(err)
	}
	if len(peers) != 3 {
		t.Fatalf("Peers = %+v", peers)
	}
	for i, p := range peers {
		n := nodes[i]
		if p.ID != n.ID() || p.Address != n.Addr() || p.Suffrage != "voter" || p.Leader != (n == leader) {
			t.Errorf("peer %d = %+v; want %s at %s, voter, leader=%v", i, p, n.ID(), n.Addr(), n == leader)
		}
	}

	// Status.
	st := leader.Status()
	if st.ID != leader.ID() || st.Addr != leader.Addr() || st.State != "leader" || st.LeaderID != leader.ID() ||
		st.LeaderAddr != leader.Addr() || st.Term == 0 || st.CommitIndex < idx || st.LastIndex < idx || st.Profile != "fast" {
		t.Errorf("leader Status = %+v", st)
	}
	eventually(t, "follower status", func() error {
		st := followers(nodes, leader)[0].Status()
		if st.State != "follower" || st.LeaderID != leader.ID() || st.AppliedIndex < idx || st.LastContact.IsZero() {
			return fmt.Errorf("%+v", st)
		}
		return nil
	})
}

func TestFiveNodeReplication(t *testing.T) {
	nodes := startCluster(t, 5, nil)
	want := applyN(t, nodes, "five", 25)
	waitConverged(t, nodes, want)
	peers, err := waitLeader(t, nodes).Peers()
	if err != nil || len(peers) != 5 {
		t.Fatalf("Peers = %+v, %v", peers, err)
	}
}

func TestLeaderShutdownFailover(t *testing.T) {
	nodes := startCluster(t, 3, nil)
	want := applyN(t, nodes, "before", 5)
	waitConverged(t, nodes, want)

	old := waitLeader(t, nodes)
	changes := old.LeaderChanges()
	if err := old.Shutdown(); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if err := old.Shutdown(); err != nil {
		t.Fatalf("second Shutdown: %v", err)
	}
	if st := old.Status(); st.State != "shutdown" {
		t.Errorf("Status after Shutdown = %+v", st)
	}
	if _, _, err := old.Apply([]byte("late"), time.Second); !errors.Is(err, ErrShutdown) {
		t.Errorf("Apply after Shutdown = %v; want ErrShutdown", err)
	}
	if _, err := old.WaitLeader(ctxTimeout(t)); !errors.Is(err, ErrShutdown) {
		t.Errorf("WaitLeader after Shutdown = %v; want ErrShutdown", err)
	}
	// Subscription channels are closed by Shutdown (after any pending value).
	eventually(t, "LeaderChanges channel closed", func() error {
		select {
		case _, ok := <-changes:
			if !ok {
				return nil
			}
			return errors.New("got a value, still open")
		default:
			return errors.New("still open")
		}
	})

	rest := without(nodes, old)
	leader := waitLeader(t, rest)
	if leader == old {
		t.Fatal("old leader still leader")
	}
	after := applyN(t, rest, "after", 5)
	waitConverged(t, rest, append(want, after...))
}

func TestRestartFromDataDir(t *testing.T) {
	nodes := startCluster(t, 3, nil)
	leader := waitLeader(t, nodes)
	victim := followers(nodes, leader)[0]

	first := applyN(t, nodes, "snap", 10)
	waitConverged(t, nodes, first)
	if err := victim.Raft().Snapshot().Error(); err != nil {
		t.Fatalf("Snapshot on %s: %v", victim.ID(), err)
	}
	second := applyN(t, nodes, "logged", 5)
	waitConverged(t, nodes, append(slices.Clone(first), second...))
	if err := victim.Shutdown(); err != nil {
		t.Fatal(err)
	}

	rest := without(nodes, victim)
	third := applyN(t, rest, "while-down", 5)

	// Restart with the same DataDir, NodeID and address, and a fresh FSM.
	cfg := victim.cfg
	cfg.BindAddr = victim.Addr()
	restarted := startNodeWith(t, cfg)
	if !restarted.HasExistingState() {
		t.Error("HasExistingState = false after restart")
	}
	if restarted.Addr() != victim.Addr() {
		t.Errorf("Addr = %s; want %s", restarted.Addr(), victim.Addr())
	}
	// The snapshot is restored synchronously by New.
	if restarted.fsm.restoreCount() != 1 {
		t.Errorf("Restore called %d times; want 1", restarted.fsm.restoreCount())
	}
	if err := containsAll(restarted.fsm.list(), first); err != nil {
		t.Errorf("state right after restart: %v", err)
	}
	if err := restarted.Bootstrap([]Server{{restarted.ID(), restarted.Addr()}}); !errors.Is(err, ErrAlreadyBootstrapped) {
		t.Errorf("Bootstrap after restart = %v; want ErrAlreadyBootstrapped", err)
	}

	all := append(rest, restarted)
	waitConverged(t, all, slices.Concat(first, second, third))
	fourth := applyN(t, all, "after-restart", 3)
	waitConverged(t, all, slices.Concat(first, second, third, fourth))
}

func TestJoinReceivesSnapshot(t *testing.T) {
	tiny := func(c *Config) {
		c.SnapshotThreshold = 4
		c.TrailingLogs = 2
	}
	nodes := startCluster(t, 3, tiny)
	want := applyN(t, nodes, "pre", 40)
	waitConverged(t, nodes, want)
	leader := waitLeader(t, nodes)
	if err := leader.Raft().Snapshot().Error(); err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	first, err := leader.store.FirstIndex()
	if err != nil || first <= 1 {
		t.Fatalf("leader log not compacted: first index %d, %v", first, err)
	}

	joiner := startNode(t, "n4", tiny)
	if joiner.HasExistingState() {
		t.Fatal("fresh node has existing state")
	}
	if err := leader.AddVoter(joiner.ID(), joiner.Addr()); err != nil {
		t.Fatalf("AddVoter: %v", err)
	}
	all := append(slices.Clone(nodes), joiner)
	waitConverged(t, all, want)
	if joiner.fsm.restoreCount() < 1 {
		t.Errorf("joiner FSM Restore was not called; state came from log replay")
	}

	// Idempotent re-add, conflicts, leader-only.
	if err := leader.AddVoter(joiner.ID(), joiner.Addr()); err != nil {
		t.Errorf("repeated AddVoter = %v; want nil", err)
	}
	if err := leader.AddVoter(joiner.ID(), "127.0.0.1:1"); !errors.Is(err, ErrConflict) {
		t.Errorf("AddVoter same id, other addr = %v; want ErrConflict", err)
	}
	if err := leader.AddVoter("n5", nodes[0].Addr()); !errors.Is(err, ErrConflict) {
		t.Errorf("AddVoter other id, used addr = %v; want ErrConflict", err)
	}
	if err := leader.AddVoter("n5", "0.0.0.0:7000"); err == nil {
		t.Error("AddVoter with unspecified address succeeded")
	}
	if err := joiner.Bootstrap([]Server{{joiner.ID(), joiner.Addr()}}); !errors.Is(err, ErrAlreadyBootstrapped) {
		t.Errorf("Bootstrap on joined node = %v; want ErrAlreadyBootstrapped", err)
	}

	more := applyN(t, all, "post", 5)
	waitConverged(t, all, append(want, more...))
	peers, err := leader.Peers()
	if err != nil || len(peers) != 4 || peers[3].ID != "n4" || peers[3].Suffrage != "voter" {
		t.Errorf("Peers = %+v, %v", peers, err)
	}
}

func TestRemoveServer(t *testing.T) {
	nodes := startCluster(t, 3, nil)
	leader := waitLeader(t, nodes)
	removed := followers(nodes, leader)[0]
	before := applyN(t, nodes, "before", 3)
	waitConverged(t, nodes, before)

	if err := leader.RemoveServer(removed.ID()); err != nil {
		t.Fatalf("RemoveServer: %v", err)
	}
	if err := leader.RemoveServer(removed.ID()); !errors.Is(err, ErrUnknownPeer) {
		t.Errorf("second RemoveServer = %v; want ErrUnknownPeer", err)
	}
	peers, err := leader.Peers()
	if err != nil || len(peers) != 2 || slices.ContainsFunc(peers, func(p Peer) bool { return p.ID == removed.ID() }) {
		t.Fatalf("Peers after removal = %+v, %v", peers, err)
	}

	rest := without(nodes, removed)
	after := applyN(t, rest, "after", 5)
	waitConverged(t, rest, append(before, after...))
	// The remaining nodes have the new entries; the removed one must not get
	// them. Watch for several heartbeat intervals to be sure.
	consistently(t, "removed node must not receive new entries", 500*time.Millisecond, func() error {
		return containsAny(removed.fsm.list(), after)
	})

	// The leader may remove itself; the survivor then leads alone. Under
	// heavy CPU load the fast profile can move leadership between finding
	// the leader and asking it: find it again then.
	eventually(t, "the leader removing itself", func() error {
		leader = waitLeader(t, rest)
		return leader.RemoveServer(leader.ID())
	})
	survivor := without(rest, leader)[0]
	eventually(t, "survivor leads", func() error {
		if !survivor.IsLeader() {
			return errors.New("not leader")
		}
		return nil
	})
	if st := leader.Status(); st.State == "leader" || st.State == "shutdown" {
		t.Errorf("self-removed leader Status = %+v; want an idle follower", st)
	}
	last := applyN(t, []*testNode{survivor}, "alone", 2)
	if err := containsAll(survivor.fsm.list(), last); err != nil {
		t.Error(err)
	}
	peers, err = survivor.Peers()
	if err != nil || len(peers) != 1 || peers[0].ID != survivor.ID() {
		t.Errorf("survivor Peers = %+v, %v", peers, err)
	}
}

func TestTransferLeadership(t *testing.T) {
	nodes := startCluster(t, 3, nil)
	leader := waitLeader(t, nodes)
	target := followers(nodes, leader)[1]

	oldSub := leader.LeaderChanges()
	newSub := target.LeaderChanges()
	if err := leader.TransferLeadership(leader.ID()); err != nil {
		t.Errorf("transfer to self = %v; want nil (no-op)", err)
	}
	if err := leader.TransferLeadership("nobody"); !errors.Is(err, ErrUnknownPeer) {
		t.Errorf("transfer to unknown = %v; want ErrUnknownPeer", err)
	}
	if err := leader.TransferLeadership(target.ID()); err != nil {
		t.Fatalf("TransferLeadership(%s): %v", target.ID(), err)
	}
	if got := waitLeader(t, nodes); got != target {
		t.Fatalf("leader after transfer = %s; want %s", got.ID(), target.ID())
	}
	expectNotification(t, newSub, true)
	expectNotification(t, oldSub, false)

	// "" lets raft pick.
	if err := target.TransferLeadership(""); err != nil {
		t.Fatalf(`TransferLeadership(""): %v`, err)
	}
	if got := waitLeader(t, nodes); got == target {
		t.Fatalf("leadership stayed on %s", target.ID())
	}
	want := applyN(t, nodes, "x", 3)
	waitConverged(t, nodes, want)
}

func expectNotification(t *testing.T, ch <-chan bool, want bool) {
	t.Helper()
	select {
	case got := <-ch:
		if got != want {
			t.Errorf("leadership notification = %v; want %v", got, want)
		}
	case <-time.After(waitTimeout):
		t.Errorf("no leadership notification (want %v)", want)
	}
}

func TestWaitLeaderAndLeaderChanges(t *testing.T) {
	n := startNode(t, "solo", nil)
	sub := n.LeaderChanges()
	sub2 := n.LeaderChanges()
	if err := n.Bootstrap([]Server{{n.ID(), n.Addr()}}); err != nil {
		t.Fatal(err)
	}
	id, err := n.WaitLeader(ctxTimeout(t))
	if err != nil || id != "solo" {
		t.Fatalf("WaitLeader = %q, %v", id, err)
	}
	expectNotification(t, sub, true)
	expectNotification(t, sub2, true)
	if addr, id := n.Leader(); addr != n.Addr() || id != n.ID() {
		t.Errorf("Leader = %s, %s", addr, id)
	}
	if err := n.Shutdown(); err != nil {
		t.Fatal(err)
	}
	// A subscription taken after Shutdown is closed at once.
	if _, ok := <-n.LeaderChanges(); ok {
		t.Error("LeaderChanges after Shutdown delivered a value")
	}
}

func TestBootstrapValidation(t *testing.T) {
	n := startNode(t, "b1", nil)
	self := Server{ID: n.ID(), Address: n.Addr()}
	cases := []struct {
		name    string
		servers []Server
		want    string
	}{
		{"empty", nil, "no servers"},
		{"without self", []Server{{"b2", "127.0.0.1:1"}}, "do not include this node"},
		{"self wrong addr", []Server{{n.ID(), "127.0.0.1:1"}}, "advertises"},
		{"dup id", []Server{self, {n.ID(), "127.0.0.1:1"}}, "duplicate server ID"},
		{"dup addr", []Server{self, {"b2", n.Addr()}}, "duplicate server address"},
		{"missing field", []Server{self, {"b2", ""}}, "needs both ID and Address"},
	}
	for _, c := range cases {
		if err := n.Bootstrap(c.servers); !errContains(err, c.want) {
			t.Errorf("%s: Bootstrap error = %v; want it to contain %q", c.name, err, c.want)
		}
	}
	if n.HasExistingState() {
		t.Error("rejected Bootstrap calls created state")
	}
	if err := n.Bootstrap([]Server{self}); err != nil {
		t.Fatalf("valid Bootstrap: %v", err)
	}
	if err := n.Bootstrap([]Server{self}); !errors.Is(err, ErrAlreadyBootstrapped) {
		t.Errorf("repeated Bootstrap = %v; want ErrAlreadyBootstrapped", err)
	}
}

func TestSetProfile(t *testing.T) {
	fast := startNode(t, "p1", nil)
	lan, _ := ProfileByName("lan")
	if err := fast.SetProfile(lan); err != nil {
		t.Fatalf("fast -> lan: %v", err)
	}
	rc := fast.Raft().ReloadableConfig()
	if rc.HeartbeatTimeout != lan.HeartbeatTimeout || rc.ElectionTimeout != lan.ElectionTimeout {
		t.Errorf("reloaded config = %+v", rc)
	}
	if got := fast.Status().Profile; got != "lan" {
		t.Errorf("Status.Profile = %q", got)
	}
	if err := fast.SetProfile(profileFast); err != nil {
		t.Errorf("lan -> fast on a node started fast: %v", err)
	}

	slow := startNode(t, "p2", func(c *Config) { c.Profile = Profile{} }) // zero => lan
	if got := slow.Status().Profile; got != "lan" {
		t.Errorf("zero Profile => %q; want lan", got)
	}
	if err := slow.SetProfile(profileFast); !errContains(err, "LeaderLeaseTimeout") {
		t.Errorf("lan -> fast = %v; want an error about LeaderLeaseTimeout", err)
	}
	if err := slow.SetProfile(Profile{Name: "bad", HeartbeatTimeout: time.Second, ElectionTimeout: time.Millisecond,
		LeaderLeaseTimeout: time.Second, CommitTimeout: time.Millisecond}); !errContains(err, "ElectionTimeout") {
		t.Errorf("invalid profile = %v", err)
	}
}

// Ensure mapErr keeps both sentinels reachable.
func TestMapErr(t *testing.T) {
	err := mapErr(raft.ErrLeadershipLost)
	if !errors.Is(err, ErrNotLeader) || !errors.Is(err, raft.ErrLeadershipLost) {
		t.Errorf("mapErr(ErrLeadershipLost) = %v", err)
	}
	if !errors.Is(mapErr(raft.ErrNotLeader), ErrNotLeader) {
		t.Error("mapErr(raft.ErrNotLeader)")
	}
	if mapErr(nil) != nil {
		t.Error("mapErr(nil) != nil")
	}
}

// TestInmemCluster: nodes on raft's in-memory transport and store (what
// the api tests use) form a cluster and replicate like TCP ones.
func TestInmemCluster(t *testing.T) {
	var nodes []*testNode
	var trans []*raft.InmemTransport
	for i := range 3 {
		cfg := InmemConfig(fmt.Sprintf("m%d", i+1), t.TempDir(), profileFast)
		cfg.Logger = testLogger(cfg.NodeID)
		nodes = append(nodes, startNodeWith(t, cfg))
		trans = append(trans, cfg.Transport.(*raft.InmemTransport))
	}
	var servers []Server
	for i, a := range trans {
		servers = append(servers, Server{ID: nodes[i].ID(), Address: nodes[i].Addr()})
		for _, b := range trans {
			if a != b {
				a.Connect(b.LocalAddr(), b)
			}
		}
	}
	for _, n := range nodes {
		if err := n.Bootstrap(servers); err != nil && !errors.Is(err, ErrAlreadyBootstrapped) {
			t.Fatal(err)
		}
	}
	waitLeader(t, nodes)
	waitConverged(t, nodes, applyN(t, nodes, "m", 5))
	if _, err := os.Stat(filepath.Join(nodes[0].cfg.DataDir, "raft.db")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("an in-memory node wrote raft.db: %v", err)
	}
}
