package agent

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"testing"
	"time"

	"github.com/raftlb/raftlb/api/client"
	"github.com/raftlb/raftlb/cluster"
	"github.com/raftlb/raftlb/fsm"
	"github.com/raftlb/raftlb/internal/testaddr"
	"github.com/raftlb/raftlb/model"
)

const testToken = "agent-test-token-4f1c9a7e2b8d6035c1e9f7a2"

// testProfile is the raft timing of the test clusters: lan, whose leader
// keeps its leadership through a 270 ms stall. The tests run under the race
// detector on two cores beside other test binaries, where a goroutine
// stalls for longer than fast's 90 ms often enough to cost an election in
// the middle of a write ("leadership lost while committing"); what fast
// changes is timing, which the tests do not measure.
const testProfile = "lan"

type director struct {
	cfg Config
	a   *Agent
}

type testCluster struct {
	t    *testing.T
	dirs []*director
}

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// newCluster makes n director configs with reserved addresses. mode is
// "peers" (static -peers list) or "discover" (-bootstrap-expect + -join).
func newCluster(t *testing.T, n int, mode string) *testCluster {
	tc := &testCluster{t: t}
	var peers []cluster.Server
	var apis []string
	for i := range n {
		c := Config{
			NodeID: fmt.Sprintf("d%d", i+1), DataDir: t.TempDir(),
			RaftAddr: testaddr.Loopback(t), APIAddr: testaddr.Loopback(t), Token: testToken, Profile: testProfile,
			Log: quietLog(), SnapshotThreshold: 32, TrailingLogs: 16, Dataplane: DataplaneNone,
		}
		peers = append(peers, cluster.Server{ID: c.NodeID, Address: c.RaftAddr})
		apis = append(apis, c.APIAddr)
		tc.dirs = append(tc.dirs, &director{cfg: c})
	}
	for _, d := range tc.dirs {
		switch mode {
		case "peers":
			d.cfg.Peers = peers
		case "discover":
			d.cfg.BootstrapExpect, d.cfg.Join = n, apis
		}
	}
	t.Cleanup(func() {
		for _, d := range tc.dirs {
			if d.a != nil {
				_ = d.a.close()
			}
		}
	})
	return tc
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func (tc *testCluster) start(i int) {
	tc.t.Helper()
	d := tc.dirs[i]
	a, err := Start(context.Background(), d.cfg)
	if err != nil {
		tc.t.Fatalf("start %s: %v", d.cfg.NodeID, err)
	}
	d.a = a
}

func (tc *testCluster) startAll() {
	for i := range tc.dirs {
		tc.start(i)
	}
	tc.waitReady()
}

func (tc *testCluster) waitReady() {
	tc.t.Helper()
	ctx := ctxT(tc.t, 20*time.Second)
	for _, d := range tc.dirs {
		if d.a != nil {
			if err := d.a.WaitReady(ctx); err != nil {
				tc.t.Fatal(err)
			}
		}
	}
}

// kill stops a director abruptly: no leadership transfer, no leave.
func (tc *testCluster) kill(i int) {
	tc.t.Helper()
	_ = tc.dirs[i].a.close()
	tc.dirs[i].a = nil
}

func (tc *testCluster) client(i int) *client.Client {
	tc.t.Helper()
	c, err := client.New(client.Options{Addr: tc.dirs[i].a.APIURL(), Token: testToken})
	if err != nil {
		tc.t.Fatal(err)
	}
	return c
}

// leader waits for a leader among the running directors and returns its
// position.
func (tc *testCluster) leader() int {
	tc.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		for i, d := range tc.dirs {
			if d.a != nil && d.a.node.IsLeader() {
				return i
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	tc.t.Fatal("no leader elected")
	return -1
}

func (tc *testCluster) follower() int {
	l := tc.leader()
	for i, d := range tc.dirs {
		if i != l && d.a != nil {
			return i
		}
	}
	tc.t.Fatal("no follower running")
	return -1
}

// converge waits until every running director applied idx and then until
// their states are identical: entries that arrive while it compares (a
// registration) are waited for, so only a lasting difference fails.
func (tc *testCluster) converge(idx uint64) fsm.Dump {
	tc.t.Helper()
	ctx := ctxT(tc.t, 15*time.Second)
	for _, d := range tc.dirs {
		if d.a == nil {
			continue
		}
		if err := d.a.fsm.WaitIndex(ctx, idx); err != nil {
			tc.t.Fatalf("%s: %v", d.cfg.NodeID, err)
		}
	}
	var first, other fsm.Dump
	var differing string
	for ctx.Err() == nil {
		differing = ""
		n := 0
		for _, d := range tc.dirs {
			if d.a == nil {
				continue
			}
			dump := d.a.fsm.Dump()
			if n == 0 {
				first = dump
			} else if dump.Index != first.Index || !reflect.DeepEqual(first, dump) {
				differing, other = d.cfg.NodeID, dump
				break
			}
			n++
		}
		if differing == "" {
			first.Index = 0
			return first
		}
		time.Sleep(10 * time.Millisecond)
	}
	tc.t.Fatalf("%s still differs from the first director:\n%+v\n%+v", differing, first, other)
	return fsm.Dump{}
}

func addService(t *testing.T, c *client.Client, name string, port int) uint64 {
	t.Helper()
	spec := model.NewServiceSpec()
	spec.Name, spec.Protocol, spec.Address, spec.Port = name, "tcp", "192.0.2.10", port
	res, err := c.CreateService(context.Background(), client.ServiceCreate{ServiceSpec: spec,
		Reals: []model.RealSpec{{Address: "10.0.1.1", Weight: 2}, {Address: "10.0.1.2", Weight: 1}}})
	if err != nil {
		t.Fatalf("create %s via %s: %v", name, c.Addr(), err)
	}
	if res.Index == 0 || res.Service == nil || len(res.Service.Reals) != 2 {
		t.Fatalf("create %s: response %+v", name, res)
	}
	return res.Index
}

func TestThreeDirectors(t *testing.T) {
	tc := newCluster(t, 3, "peers")
	tc.startAll()
	ctx := ctxT(t, 60*time.Second)

	// A write sent to a follower is forwarded to the leader and answered
	// with its index; every director applies it.
	f := tc.follower()
	idx := addService(t, tc.client(f), "web", 80)
	// Read-your-writes through the same director, without ?consistent.
	if _, err := tc.client(f).Service(ctx, "web", client.ReadOpts{}); err != nil {
		t.Fatalf("local read right after a forwarded write: %v", err)
	}
	tc.converge(idx)

	// Consistent read through a follower sees it; status lists three
	// registered peers.
	if s, err := tc.client(f).Service(ctx, "web", client.ReadOpts{Consistent: true}); err != nil || len(s.Reals) != 2 {
		t.Fatalf("consistent read: %+v %v", s, err)
	}
	st, err := tc.client(f).Status(ctx)
	if err != nil || st.Role != "follower" || len(st.Peers) != 3 || st.LeaderID == "" {
		t.Fatalf("status %+v %v", st, err)
	}
	for _, p := range st.Peers {
		if p.APIAddr == "" {
			t.Errorf("peer %s has no registered API address", p.ID)
		}
	}

	// Leadership transfer to a named director.
	l := tc.leader()
	target := (l + 1) % 3
	if _, err := tc.client(f).TransferLeadership(ctx, tc.dirs[target].cfg.NodeID); err != nil {
		t.Fatal(err)
	}
	if got := tc.leader(); got != target {
		// leader() returns the first leader it sees; wait for the target.
		waitFor(t, "leadership on "+tc.dirs[target].cfg.NodeID, func() bool { return tc.dirs[target].a.node.IsLeader() })
	}

	// Kill the leader without ceremony: the others elect a new one and
	// keep accepting writes.
	l = tc.leader()
	tc.kill(l)
	f = tc.follower()
	idx = addService(t, tc.client(f), "after-kill", 81)
	tc.converge(idx)

	// Restart the killed director from its data dir: it has every write,
	// including those made while it was down.
	tc.start(l)
	tc.waitReady()
	tc.converge(idx)
	if _, ok := tc.dirs[l].a.fsm.Service("after-kill"); !ok {
		t.Fatal("restarted director lacks the write made while it was down")
	}
	if !tc.dirs[l].a.node.HasExistingState() {
		t.Fatal("restarted director did not find its raft state")
	}

	// Restart the whole cluster: nothing is lost, nobody bootstraps again.
	before := tc.converge(idx)
	for i := range tc.dirs {
		tc.kill(i)
	}
	for i := range tc.dirs {
		tc.start(i)
	}
	tc.waitReady()
	idx = addService(t, tc.client(tc.follower()), "after-restart", 82)
	after := tc.converge(idx)
	if len(after.Services) != len(before.Services)+1 {
		t.Fatalf("services before %d, after full restart %d", len(before.Services), len(after.Services))
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestJoinReceivesSnapshotAndRemove(t *testing.T) {
	tc := newCluster(t, 3, "peers")
	tc.startAll()
	ctx := ctxT(t, 60*time.Second)
	c := tc.client(tc.follower())
	var idx uint64
	for i := range 60 { // well past SnapshotThreshold + TrailingLogs
		idx = addService(t, c, "svc"+strconv.Itoa(i), 1000+i)
	}
	tc.converge(idx)
	l := tc.leader()
	if err := tc.dirs[l].a.node.Raft().Snapshot().Error(); err != nil {
		t.Fatalf("snapshot: %v", err)
	}

	// A fourth director joins through a follower's API.
	d4 := &director{cfg: Config{NodeID: "d4", DataDir: t.TempDir(), RaftAddr: testaddr.Loopback(t), APIAddr: testaddr.Loopback(t),
		Token: testToken, Profile: testProfile, Log: quietLog(), Join: []string{tc.dirs[tc.follower()].cfg.APIAddr}, Dataplane: DataplaneNone}}
	tc.dirs = append(tc.dirs, d4)
	tc.start(3)
	tc.waitReady()
	dump := tc.converge(idx)
	if len(dump.Services) != 60 {
		t.Fatalf("joined director has %d services", len(dump.Services))
	}
	if s := tc.dirs[3].a.node.Raft().Stats()["last_snapshot_index"]; s == "0" || s == "" {
		t.Fatalf("joined director did not install a snapshot (last_snapshot_index %q)", s)
	}
	peers, err := tc.client(0).Peers(ctx)
	if err != nil || len(peers) != 4 {
		t.Fatalf("peers %+v %v", peers, err)
	}

	// Remove it again through another follower; it no longer gets writes.
	if _, err := tc.client(tc.follower()).Remove(ctx, "d4"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "3 peers", func() bool {
		p, err := tc.client(tc.leader()).Peers(ctx)
		return err == nil && len(p) == 3
	})
	removedAt := tc.dirs[3].a.fsm.Index()
	idx = addService(t, tc.client(tc.leader()), "after-remove", 2000)
	tc.dirs[3].a.close()
	tc.dirs = tc.dirs[:3]
	tc.converge(idx)
	if removedAt >= idx {
		t.Fatalf("removed director had applied %d ≥ %d", removedAt, idx)
	}
	if _, err := tc.client(0).Remove(ctx, "nobody"); !client.IsCode(err, model.CodeNotFound) {
		t.Fatalf("removing an unknown id: %v", err)
	}
}

func TestFiveDirectorsDiscoveryBootstrap(t *testing.T) {
	tc := newCluster(t, 5, "discover")
	tc.startAll()
	ctx := ctxT(t, 60*time.Second)
	peers, err := tc.client(0).Peers(ctx)
	if err != nil || len(peers) != 5 {
		t.Fatalf("peers %+v %v", peers, err)
	}
	idx := addService(t, tc.client(tc.follower()), "web", 80)
	tc.converge(idx)
	// Lose the leader and one follower: three of five still form a quorum.
	tc.kill(tc.leader())
	tc.kill(tc.follower())
	idx = addService(t, tc.client(tc.follower()), "still-writable", 81)
	tc.converge(idx)
}

func TestLeaveOnShutdown(t *testing.T) {
	tc := newCluster(t, 3, "peers")
	for i := range tc.dirs {
		tc.dirs[i].cfg.LeaveOnShutdown = true
	}
	tc.startAll()
	ctx := ctxT(t, 60*time.Second)
	l := tc.leader()
	if err := tc.dirs[l].a.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	tc.dirs[l].a = nil
	f := tc.follower()
	waitFor(t, "2 peers after leave", func() bool {
		p, err := tc.client(f).Peers(ctx)
		return err == nil && len(p) == 2
	})
	idx := addService(t, tc.client(f), "after-leave", 80)
	tc.converge(idx)
}

func TestConfigErrors(t *testing.T) {
	for name, c := range map[string]Config{
		"no data dir":         {NodeID: "a", RaftAddr: "127.0.0.1:0", Token: testToken},
		"no token":            {NodeID: "a", DataDir: t.TempDir(), RaftAddr: "127.0.0.1:0"},
		"bad id":              {NodeID: "a b", DataDir: t.TempDir(), RaftAddr: "127.0.0.1:0", Token: testToken},
		"expect without list": {NodeID: "a", DataDir: t.TempDir(), RaftAddr: "127.0.0.1:0", Token: testToken, BootstrapExpect: 3},
		"bad profile":         {NodeID: "a", DataDir: t.TempDir(), RaftAddr: "127.0.0.1:0", Token: testToken, Profile: "wan"},
		"dev with join":       {Dev: true, Join: []string{"127.0.0.1:1"}},
		"expect/peers":        {NodeID: "a", DataDir: t.TempDir(), RaftAddr: "127.0.0.1:0", Token: testToken, BootstrapExpect: 2, Peers: []cluster.Server{{ID: "a", Address: "127.0.0.1:1"}}},
	} {
		c.Log = quietLog()
		if a, err := Start(context.Background(), c); err == nil {
			a.close()
			t.Errorf("%s: started", name)
		}
	}
	if _, err := ParsePeers("a=127.0.0.1:1,b"); err == nil {
		t.Error("ParsePeers accepted an item without =")
	}
	if p, err := ParsePeers(" a=127.0.0.1:1 , b=[::1]:2 "); err != nil || len(p) != 2 || p[1].Address != "[::1]:2" {
		t.Errorf("ParsePeers: %+v %v", p, err)
	}
}

func TestDevMode(t *testing.T) {
	a, err := Start(context.Background(), Config{Dev: true, APIAddr: "127.0.0.1:0", Log: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	dir := a.cfg.DataDir
	ctx := ctxT(t, 10*time.Second)
	if err := a.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	c, _ := client.New(client.Options{Addr: a.APIURL()}) // no token needed in dev
	if _, err := c.CreateVIP(ctx, model.VIP{Address: "192.0.2.1/24", Interface: "eth0"}); err != nil {
		t.Fatal(err)
	}
	if err := a.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := net.Dial("tcp", a.ln.Addr().String()); err == nil {
		t.Error("API still listening after Shutdown")
	}
	if dir == "" || dirExists(dir) {
		t.Errorf("dev data dir %q not removed", dir)
	}
}

func dirExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func TestMain(m *testing.M) {
	if os.Getenv(cluster.LogLevelEnv) == "" {
		os.Setenv(cluster.LogLevelEnv, "off")
	}
	os.Exit(m.Run())
}

func TestReplicatedProfileAppliesAtRestart(t *testing.T) {
	cfg := Config{NodeID: "p1", DataDir: t.TempDir(), RaftAddr: testaddr.Loopback(t), APIAddr: "127.0.0.1:0", Token: testToken,
		BootstrapExpect: 1, Log: quietLog(), Dataplane: DataplaneNone}
	ctx := ctxT(t, 30*time.Second)
	a, err := Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { a.close() }()
	if err := a.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	if p := a.node.Status().Profile; p != "lan" {
		t.Fatalf("started with %q, want lan", p)
	}
	c, _ := client.New(client.Options{Addr: a.APIURL(), Token: testToken})
	st := model.DefaultSettings()
	st.TimingProfile = "fast"
	if _, err := c.UpdateSettings(ctx, st, 0); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "timing-profile file", func() bool {
		b, err := os.ReadFile(filepath.Join(cfg.DataDir, profileFile))
		return err == nil && string(b) == "fast\n"
	})
	if err := a.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if a, err = Start(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	if p := a.node.Status().Profile; p != "fast" {
		t.Fatalf("restarted with %q, want the replicated fast", p)
	}
}

// TestRecoverLostQuorum: two of three directors are gone for good; the
// survivor is restarted with a peers.json naming only itself, becomes leader
// with all its data and accepts writes.
func TestRecoverLostQuorum(t *testing.T) {
	tc := newCluster(t, 3, "peers")
	tc.startAll()
	idx := addService(t, tc.client(tc.follower()), "web", 80)
	tc.converge(idx)
	tc.kill(0)
	tc.kill(1)
	tc.kill(2)
	s := tc.dirs[2]
	peers := fmt.Sprintf(`[{"id": %q, "address": %q}]`, s.cfg.NodeID, s.cfg.RaftAddr)
	if err := os.WriteFile(filepath.Join(s.cfg.DataDir, cluster.PeersFile), []byte(peers), 0o600); err != nil {
		t.Fatal(err)
	}
	tc.start(2)
	waitFor(t, "the survivor to lead alone", func() bool { return s.a.node.IsLeader() })
	if _, ok := s.a.fsm.Service("web"); !ok {
		t.Fatal("recovered director lost its data")
	}
	addService(t, tc.client(2), "after-recovery", 81)
	if _, err := os.Stat(filepath.Join(s.cfg.DataDir, cluster.PeersFile+".applied")); err != nil {
		t.Fatalf("peers.json not renamed after use: %v", err)
	}
}

// TestPeersBootstrapRacesReplication: a director whose raft receives the
// leader's entries before it calls Bootstrap (it started late) is already
// in the cluster and must keep running.
func TestPeersBootstrapRacesReplication(t *testing.T) {
	tc := newCluster(t, 3, "peers")
	tc.start(0)
	tc.start(1)
	ctx := ctxT(t, 20*time.Second)
	if _, err := tc.dirs[0].a.node.WaitLeader(ctx); err != nil {
		t.Fatal(err)
	}
	// d3 joins late: open its raft node first, let the leader replicate to
	// it, then run the agent's bootstrap decision against that node.
	d := tc.dirs[2]
	tc.start(2)
	waitFor(t, "d3 to receive the configuration", func() bool { return d.a.node.Status().LastIndex > 0 })
	if err := d.a.bootstrap(context.Background()); err != nil {
		t.Fatalf("bootstrap after replication: %v", err)
	}
	tc.waitReady()
}
