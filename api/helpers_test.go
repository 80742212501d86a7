package api_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/raftlb/raftlb/api"
	"github.com/raftlb/raftlb/api/wire"
	"github.com/raftlb/raftlb/cluster"
	"github.com/raftlb/raftlb/fsm"
)

func TestMain(m *testing.M) {
	if os.Getenv(cluster.LogLevelEnv) == "" {
		os.Setenv(cluster.LogLevelEnv, "off")
	}
	os.Exit(m.Run())
}

const testToken = "api-test-token-9c2e7a41f0b35d68e1a4c7b2"

// startNode starts a real one-node raft cluster (fast profile, loopback,
// temporary data dir) and returns once it leads and has applied everything.
func startNode(t *testing.T, id string) (*fsm.FSM, *cluster.Node) {
	t.Helper()
	profile, err := cluster.ProfileByName("fast")
	if err != nil {
		t.Fatal(err)
	}
	f := fsm.New(nil)
	n, err := cluster.New(cluster.InmemConfig(id, t.TempDir(), profile), f)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Shutdown() })
	if err := n.Bootstrap([]cluster.Server{{ID: id, Address: n.Addr()}}); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 10*time.Second, "leadership of "+id, n.IsLeader)
	if err := n.Barrier(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	return f, n
}

// waitUntil polls cond until it holds or the deadline passes.
func waitUntil(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// serve mounts an API server for cfg on a real loopback listener.
func serve(t *testing.T, cfg api.Config) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(api.NewServer(cfg).Handler())
	t.Cleanup(srv.Close)
	return srv
}

var httpClient = &http.Client{Timeout: 20 * time.Second}

// reply is one HTTP answer, read completely.
type reply struct {
	status int
	header http.Header
	body   []byte
}

// noCT as a Content-Type value sends no Content-Type header at all.
const noCT = "-"

// call sends one request. A non-empty body is sent as application/json
// unless hdr sets Content-Type (noCT: none). hdr is name, value, ...
func call(t *testing.T, method, url, body string, hdr ...string) reply {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i] == "Content-Type" && hdr[i+1] == noCT {
			req.Header.Del("Content-Type")
			continue
		}
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, url, err)
	}
	return reply{status: resp.StatusCode, header: resp.Header, body: b}
}

func bearer(tok string) []string { return []string{"Authorization", "Bearer " + tok} }

// decodeExact decodes b into v refusing unknown fields, so a test notices
// when a response carries something it does not expect.
func decodeExact(t *testing.T, b []byte, v any) {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("decode %T from %s: %v", v, b, err)
	}
}

// checkError asserts r is a JSON error with the given status, code and field.
func checkError(t *testing.T, r reply, status int, code, field string) wire.Error {
	t.Helper()
	if r.status != status {
		t.Errorf("status %d, want %d; body %s", r.status, status, r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q, want application/json", ct)
	}
	var e wire.Error
	decodeExact(t, r.body, &e)
	if e.Code != code {
		t.Errorf("code %q, want %q (message %q)", e.Code, code, e.Message)
	}
	if e.Message == "" {
		t.Errorf("no message in %s", r.body)
	}
	if e.Field != field {
		t.Errorf("field %q, want %q (message %q)", e.Field, field, e.Message)
	}
	return e
}

// checkWrite asserts r is a successful write answered with status and
// returns its body. The index in the body is positive and equals the
// X-Raftlb-Index header.
func checkWrite(t *testing.T, r reply, status int) wire.WriteResponse {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d; body %s", r.status, status, r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q, want application/json", ct)
	}
	var w wire.WriteResponse
	decodeExact(t, r.body, &w)
	if w.Index == 0 {
		t.Errorf("write answered with index 0: %s", r.body)
	}
	if h := r.header.Get(wire.HeaderIndex); h != strconv.FormatUint(w.Index, 10) {
		t.Errorf("%s header %q, body index %d", wire.HeaderIndex, h, w.Index)
	}
	return w
}

// checkRead asserts r is a successful read, decodes it into v and returns
// the index header.
func checkRead(t *testing.T, r reply, v any) uint64 {
	t.Helper()
	if r.status != http.StatusOK {
		t.Fatalf("status %d, want 200; body %s", r.status, r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q, want application/json", ct)
	}
	idx, err := strconv.ParseUint(r.header.Get(wire.HeaderIndex), 10, 64)
	if err != nil {
		t.Errorf("%s header %q: %v", wire.HeaderIndex, r.header.Get(wire.HeaderIndex), err)
	}
	decodeExact(t, r.body, v)
	return idx
}

// mustJSON marshals v.
func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// stateOf is what "changes nothing" compares: the whole FSM state without
// its applied index (a rejected command still occupies a log entry), and
// the raft configuration.
type stateOf struct {
	dump  fsm.Dump
	peers []cluster.Peer
}

func snapshotState(t *testing.T, f *fsm.FSM, r api.Raft) stateOf {
	t.Helper()
	d := f.Dump()
	d.Index = 0
	var ps []cluster.Peer
	if r != nil {
		var err error
		if ps, err = r.Peers(); err != nil {
			t.Fatal(err)
		}
	}
	return stateOf{dump: d, peers: ps}
}

func checkUnchanged(t *testing.T, before stateOf, f *fsm.FSM, r api.Raft) {
	t.Helper()
	after := snapshotState(t, f, r)
	if !reflect.DeepEqual(before, after) {
		t.Errorf("state changed:\nbefore %+v\nafter  %+v", before, after)
	}
}

// fakeRaft is an api.Raft without raft: Apply applies straight to an FSM.
// Tests set leadership and failures.
type fakeRaft struct {
	fsm  *fsm.FSM
	id   string
	addr string

	mu         sync.Mutex
	leader     bool
	leaderID   string
	leaderAddr string
	index      uint64
	applyErr   error
	barrierErr error
	peersErr   error
	memberErr  error  // returned by AddVoter and RemoveServer
	commit     uint64 // Status().CommitIndex when > index
	applies    int
	others     []cluster.Peer // more members, beside this one
	last       []byte         // the last entry applied
}

func newFake(id string) *fakeRaft {
	return &fakeRaft{fsm: fsm.New(nil), id: id, addr: "127.0.0.1:1"}
}

// applyLocal applies cmd to the fake's FSM whatever its leadership, as a
// replicated entry from the leader would be.
func (f *fakeRaft) applyLocal(t *testing.T, cmd fsm.Command) *fsm.Result {
	t.Helper()
	b, err := fsm.Encode(cmd)
	if err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	f.index++
	idx := f.index
	f.mu.Unlock()
	res := f.fsm.Apply(&raft.Log{Index: idx, Term: 1, Type: raft.LogCommand, Data: b}).(*fsm.Result)
	if res.Err != nil {
		t.Fatalf("apply %T: %v", cmd, res.Err)
	}
	return res
}

func (f *fakeRaft) Apply(cmd []byte, _ time.Duration) (uint64, any, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.applies++
	if f.applyErr != nil {
		return 0, nil, f.applyErr
	}
	if !f.leader {
		return 0, nil, cluster.ErrNotLeader
	}
	f.index++
	f.last = slices.Clone(cmd)
	return f.index, f.fsm.Apply(&raft.Log{Index: f.index, Term: 1, Type: raft.LogCommand, Data: cmd}), nil
}

// lastEntry is the last command applied through the fake, as encoded.
func (f *fakeRaft) lastEntry() []byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.last
}

func (f *fakeRaft) applyCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.applies
}

func (f *fakeRaft) IsLeader() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.leader
}

func (f *fakeRaft) Leader() (string, string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.leader {
		return f.addr, f.id
	}
	return f.leaderAddr, f.leaderID
}

func (f *fakeRaft) Status() cluster.Status {
	f.mu.Lock()
	defer f.mu.Unlock()
	st := cluster.Status{ID: f.id, Addr: f.addr, State: "follower", LeaderID: f.leaderID, LeaderAddr: f.leaderAddr,
		Term: 1, CommitIndex: max(f.index, f.commit), AppliedIndex: f.index, LastIndex: f.index,
		LastContact: time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC), Profile: "lan"}
	if f.leader {
		st.State, st.LeaderID, st.LeaderAddr = "leader", f.id, f.addr
	}
	return st
}

func (f *fakeRaft) Peers() ([]cluster.Peer, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.peersErr != nil {
		return nil, f.peersErr
	}
	return append([]cluster.Peer{{ID: f.id, Address: f.addr, Suffrage: "voter", Leader: f.leader}}, f.others...), nil
}

func (f *fakeRaft) AddVoter(id, addr string) error {
	if !f.IsLeader() {
		return cluster.ErrNotLeader
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.memberErr
}

func (f *fakeRaft) RemoveServer(id string) error {
	if !f.IsLeader() {
		return cluster.ErrNotLeader
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.memberErr
}

func (f *fakeRaft) TransferLeadership(id string) error {
	if !f.IsLeader() {
		return cluster.ErrNotLeader
	}
	if id != "" && id != f.id {
		return cluster.ErrUnknownPeer
	}
	return nil
}

func (f *fakeRaft) Barrier(time.Duration) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.barrierErr != nil {
		return f.barrierErr
	}
	if !f.leader {
		return cluster.ErrNotLeader
	}
	return nil
}

var _ api.Raft = (*fakeRaft)(nil)
