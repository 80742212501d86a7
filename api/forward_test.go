package api_test

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/raftlb/raftlb/api"
	"github.com/raftlb/raftlb/api/wire"
	"github.com/raftlb/raftlb/cluster"
	"github.com/raftlb/raftlb/fsm"
	"github.com/raftlb/raftlb/model"
)

// seen is one request a stub leader received.
type seen struct {
	method, uri, auth, contentType, forwardedBy string
	body                                        string
}

// stubLeader records requests and answers them with fixed headers, status
// and body.
type stubLeader struct {
	srv *httptest.Server

	mu     sync.Mutex
	got    []seen
	status int
	header map[string]string
	body   string
}

func newStubLeader(t *testing.T) *stubLeader {
	s := &stubLeader{status: http.StatusCreated, body: `{"index":1}`}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		s.mu.Lock()
		s.got = append(s.got, seen{method: r.Method, uri: r.URL.RequestURI(), auth: r.Header.Get("Authorization"),
			contentType: r.Header.Get("Content-Type"), forwardedBy: r.Header.Get(wire.HeaderForwardedBy), body: string(b)})
		status, hdr, body := s.status, s.header, s.body
		s.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		for k, v := range hdr {
			w.Header().Set(k, v)
		}
		w.WriteHeader(status)
		io.WriteString(w, body)
	}))
	t.Cleanup(s.srv.Close)
	return s
}

// answer sets what the stub answers from now on.
func (s *stubLeader) answer(status int, hdr map[string]string, body string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.status, s.header, s.body = status, hdr, body
}

func (s *stubLeader) requests() []seen {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]seen(nil), s.got...)
}

func hostOf(u string) string { return strings.TrimPrefix(strings.TrimPrefix(u, "http://"), "https://") }

// follower is an API server on a fake raft node that is not the leader and
// knows leaderID ("" = none) as the leader, whose API address apiAddr (if
// not empty) is registered as that of "L".
func follower(t *testing.T, leaderID, apiAddr string, cfg api.Config) (*fakeRaft, string) {
	t.Helper()
	fr := newFake("f1")
	if leaderID != "" {
		fr.leaderID, fr.leaderAddr = leaderID, "127.0.0.1:2"
	}
	if apiAddr != "" {
		fr.applyLocal(t, &fsm.RegisterNode{Node: model.Node{ID: "L", RaftAddr: "127.0.0.1:2", APIAddr: apiAddr}})
	}
	// Something to answer local reads with.
	fr.applyLocal(t, &fsm.CreateService{Service: model.ServiceSpec{Name: "web", Protocol: "tcp", Address: "192.0.2.10", Port: 80, Family: "inet", Scheduler: "wlc", Forward: "nat"}})
	cfg.FSM, cfg.Raft = fr.fsm, fr
	return fr, serve(t, cfg).URL
}

func TestForwardToLeader(t *testing.T) {
	t.Parallel()
	leader := newStubLeader(t)
	fr, base := follower(t, "L", hostOf(leader.srv.URL), api.Config{Token: testToken, TokenForWrites: true})
	// The leader answers with an index this follower has applied already.
	idx := strconv.FormatUint(fr.fsm.Index(), 10)
	answer := `{"index":` + idx + `}`
	leader.answer(http.StatusCreated, map[string]string{wire.HeaderIndex: idx, "X-Private": "not relayed"}, answer)

	body := `{"name":"new","protocol":"tcp","address":"192.0.2.20","port":80}`
	for _, c := range []struct{ method, path, body string }{
		{"POST", "/v1/services", body},
		{"PUT", "/v1/services/web?cas=5", `{"name":"web","protocol":"tcp","address":"192.0.2.10","port":81}`},
		{"DELETE", "/v1/services/web?cas=5", ""},
		{"POST", "/v1/services/web/reals", `{"address":"10.0.0.1"}`},
		{"PUT", "/v1/settings", `{}`},
		{"POST", "/v1/cluster/join", `{"id":"n4","address":"127.0.0.1:4"}`},
	} {
		t.Run(c.method+" "+c.path, func(t *testing.T) {
			before := snapshotState(t, fr.fsm, nil)
			n0 := len(leader.requests())
			r := call(t, c.method, base+c.path, c.body, bearer(testToken)...)
			if r.status != http.StatusCreated || string(r.body) != answer {
				t.Fatalf("relayed %d %s", r.status, r.body)
			}
			if r.header.Get(wire.HeaderIndex) != idx || r.header.Get("Content-Type") != "application/json" || r.header.Get("X-Private") != "" {
				t.Errorf("relayed headers %v", r.header)
			}
			got := leader.requests()
			if len(got) != n0+1 {
				t.Fatalf("leader got %d requests", len(got)-n0)
			}
			want := seen{method: c.method, uri: c.path, auth: "Bearer " + testToken, forwardedBy: "f1", body: c.body}
			if c.body != "" {
				want.contentType = "application/json"
			}
			if got[n0] != want {
				t.Fatalf("leader saw %+v, want %+v", got[n0], want)
			}
			// The follower applied nothing itself.
			checkUnchanged(t, before, fr.fsm, nil)
		})
	}
	if n := fr.applyCount(); n != 0 {
		t.Errorf("follower applied %d commands itself", n)
	}

	// Local reads are answered here; consistent reads go to the leader.
	n0 := len(leader.requests())
	var s model.Service
	checkRead(t, call(t, "GET", base+"/v1/services/web", ""), &s)
	if len(leader.requests()) != n0 {
		t.Fatal("a local read was forwarded")
	}
	leader.answer(http.StatusOK, nil, `{"name":"from-leader"}`)
	r := call(t, "GET", base+"/v1/services/web?consistent=1", "", bearer(testToken)...)
	if r.status != http.StatusOK || string(r.body) != `{"name":"from-leader"}` {
		t.Fatalf("consistent read: %d %s", r.status, r.body)
	}
	got := leader.requests()
	if len(got) != n0+1 || (got[n0] != seen{method: "GET", uri: "/v1/services/web?consistent=1", auth: "Bearer " + testToken, forwardedBy: "f1"}) {
		t.Fatalf("leader saw %+v", got[n0:])
	}

	// The leader's refusals are relayed as they are.
	leader.answer(http.StatusUnauthorized, map[string]string{"WWW-Authenticate": `Bearer realm="raftlb"`}, `{"code":"unauthorized","message":"nope"}`)
	r = call(t, "POST", base+"/v1/services", body, bearer(testToken)...)
	checkError(t, r, http.StatusUnauthorized, wire.CodeUnauthorized, "")
	if r.header.Get("WWW-Authenticate") != `Bearer realm="raftlb"` {
		t.Errorf("WWW-Authenticate not relayed: %v", r.header)
	}
}

// TestForwardWaitsForLocalApply: a forwarded write is answered only once
// this director has applied it, so a read sent here next sees it.
func TestForwardWaitsForLocalApply(t *testing.T) {
	t.Parallel()
	leader := newStubLeader(t)
	fr, base := follower(t, "L", hostOf(leader.srv.URL), api.Config{})
	next := fr.fsm.Index() + 1
	leader.answer(http.StatusCreated, map[string]string{wire.HeaderIndex: strconv.FormatUint(next, 10)}, fmt.Sprintf(`{"index":%d}`, next))

	type result struct {
		status int
		err    error
	}
	done := make(chan result, 1)
	go func() {
		resp, err := httpClient.Post(base+"/v1/vips", "application/json", strings.NewReader(`{"address":"192.0.2.1/24","interface":"eth0"}`))
		if err != nil {
			done <- result{err: err}
			return
		}
		resp.Body.Close()
		done <- result{status: resp.StatusCode}
	}()
	waitUntil(t, 10*time.Second, "the forwarded request", func() bool { return len(leader.requests()) == 1 })
	// The leader's entry reaches this director's FSM.
	fr.applyLocal(t, &fsm.CreateVIP{VIP: model.VIP{Address: "192.0.2.1/24", Interface: "eth0", Group: "default"}})
	r := <-done
	if r.err != nil || r.status != http.StatusCreated {
		t.Fatalf("%d %v", r.status, r.err)
	}
	if _, ok := fr.fsm.VIP("192.0.2.1"); !ok {
		t.Fatal("answered before the write was applied here")
	}
}

func TestForwardFailures(t *testing.T) {
	t.Parallel()
	leader := newStubLeader(t)

	// A listener that is closed: dialling it fails.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()

	// A leader that drops the connection mid-request.
	dropper := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.ReadAll(r.Body)
		c, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			c.Close()
		}
	}))
	t.Cleanup(dropper.Close)

	const body = `{"address":"192.0.2.1/24","interface":"eth0"}`
	for _, c := range []struct {
		name     string
		apiAddr  string // registered API address of leader L ("" = none)
		leaderID string // "" = no leader known
		cfg      api.Config
		method   string
		path     string
		body     string
		hdr      []string
		status   int
		code     string
		field    string
		msg      string
	}{
		{name: "forwarded write at a non-leader", apiAddr: hostOf(leader.srv.URL), leaderID: "L", method: "POST", path: "/v1/vips", body: body,
			hdr: []string{wire.HeaderForwardedBy, "d7"}, status: 503, code: wire.CodeNoLeader, msg: "d7"},
		{name: "forwarded consistent read at a non-leader", apiAddr: hostOf(leader.srv.URL), leaderID: "L", method: "GET", path: "/v1/vips?consistent=1",
			hdr: []string{wire.HeaderForwardedBy, "d7"}, status: 503, code: wire.CodeNoLeader, msg: "d7"},
		{name: "no leader known", apiAddr: hostOf(leader.srv.URL), method: "POST", path: "/v1/vips", body: body,
			status: 503, code: wire.CodeNoLeader, msg: "no leader"},
		{name: "no leader known, consistent read", method: "GET", path: "/v1/settings?consistent=1",
			status: 503, code: wire.CodeNoLeader, msg: "no leader"},
		{name: "leader without registered API address", leaderID: "L", method: "DELETE", path: "/v1/vips/192.0.2.1",
			status: 503, code: wire.CodeNoLeader, msg: "L"},
		{name: "leader unreachable", apiAddr: closed, leaderID: "L", method: "POST", path: "/v1/vips", body: body,
			status: 503, code: wire.CodeNoLeader, msg: closed},
		{name: "connection lost mid-request", apiAddr: hostOf(dropper.URL), leaderID: "L", method: "POST", path: "/v1/vips", body: body,
			status: 503, code: wire.CodeLeadershipLost, msg: "may or may not"},
		// Refused locally before any forwarding.
		{name: "invalid body", apiAddr: hostOf(leader.srv.URL), leaderID: "L", method: "POST", path: "/v1/vips", body: `{"address":"nope","interface":"eth0"}`,
			status: 400, code: model.CodeInvalid, field: "address"},
		{name: "bad cas", apiAddr: hostOf(leader.srv.URL), leaderID: "L", method: "DELETE", path: "/v1/vips/192.0.2.1?cas=x",
			status: 400, code: model.CodeInvalid, field: "cas"},
		{name: "no token", apiAddr: hostOf(leader.srv.URL), leaderID: "L", cfg: api.Config{Token: testToken, TokenForWrites: true},
			method: "POST", path: "/v1/vips", body: body, status: 401, code: wire.CodeUnauthorized},
		{name: "no token for a consistent read", apiAddr: hostOf(leader.srv.URL), leaderID: "L", cfg: api.Config{Token: testToken, TokenForReads: true},
			method: "GET", path: "/v1/vips?consistent=1", status: 401, code: wire.CodeUnauthorized},
		{name: "wrong method", apiAddr: hostOf(leader.srv.URL), leaderID: "L", method: "PATCH", path: "/v1/vips",
			status: 405, code: wire.CodeMethod},
		{name: "too large", apiAddr: hostOf(leader.srv.URL), leaderID: "L", cfg: api.Config{MaxBody: 10}, method: "POST", path: "/v1/vips", body: body,
			status: 413, code: wire.CodeTooLarge},
	} {
		t.Run(c.name, func(t *testing.T) {
			fr, base := follower(t, c.leaderID, c.apiAddr, c.cfg)
			before := snapshotState(t, fr.fsm, nil)
			n0 := len(leader.requests())
			e := checkError(t, call(t, c.method, base+c.path, c.body, c.hdr...), c.status, c.code, c.field)
			if !strings.Contains(e.Message, c.msg) {
				t.Errorf("message %q does not contain %q", e.Message, c.msg)
			}
			if n := len(leader.requests()) - n0; n != 0 {
				t.Errorf("the leader got %d requests", n)
			}
			checkUnchanged(t, before, fr.fsm, nil)
		})
	}
}

// TestLeaderSideFailures covers what raft reports on the leader itself.
func TestLeaderSideFailures(t *testing.T) {
	t.Parallel()
	const vip = `{"address":"192.0.2.1/24","interface":"eth0"}`
	for _, c := range []struct {
		name   string
		set    func(*fakeRaft)
		method string
		path   string
		body   string
		status int
		code   string
		field  string
	}{
		{"leadership lost during apply", func(f *fakeRaft) {
			f.applyErr = fmt.Errorf("%w: %w", cluster.ErrNotLeader, errors.New("leadership lost while committing log"))
		}, "POST", "/v1/vips", vip, 503, wire.CodeLeadershipLost, ""},
		{"not leader any more at apply", func(f *fakeRaft) { f.applyErr = cluster.ErrNotLeader }, "PUT", "/v1/settings", `{}`, 503, wire.CodeLeadershipLost, ""},
		{"raft shut down", func(f *fakeRaft) { f.applyErr = cluster.ErrShutdown }, "POST", "/v1/vips", vip, 500, model.CodeInternal, ""},
		{"barrier fails", func(f *fakeRaft) { f.barrierErr = errors.New("timed out enqueuing operation") }, "GET", "/v1/vips?consistent=1", "", 503, wire.CodeNoLeader, ""},
		{"peers fail", func(f *fakeRaft) { f.peersErr = errors.New("boom") }, "GET", "/v1/cluster/peers", "", 500, model.CodeInternal, ""},
		{"peers fail in status", func(f *fakeRaft) { f.peersErr = errors.New("boom") }, "GET", "/v1/status", "", 500, model.CodeInternal, ""},
		{"transfer to unknown", func(f *fakeRaft) {}, "POST", "/v1/cluster/transfer-leadership", `{"id":"zz"}`, 404, model.CodeNotFound, "id"},
	} {
		t.Run(c.name, func(t *testing.T) {
			fr := newFake("L")
			fr.leader = true
			c.set(fr)
			base := serve(t, api.Config{FSM: fr.fsm, Raft: fr}).URL
			before := snapshotState(t, fr.fsm, nil)
			checkError(t, call(t, c.method, base+c.path, c.body), c.status, c.code, c.field)
			checkUnchanged(t, before, fr.fsm, nil)
		})
	}

	// Membership changes that raft refuses.
	for _, c := range []struct {
		name, path, body string
		err              error
		status           int
		code, field      string
	}{
		{"join loses leadership", "/v1/cluster/join", `{"id":"n2","address":"127.0.0.1:2","api_addr":"127.0.0.1:3"}`, cluster.ErrNotLeader, 503, wire.CodeLeadershipLost, ""},
		{"join conflicts", "/v1/cluster/join", `{"id":"n2","address":"127.0.0.1:2"}`, fmt.Errorf("%w: taken", cluster.ErrConflict), 409, model.CodeConflict, "id"},
		{"remove fails", "/v1/cluster/remove", `{"id":"L"}`, errors.New("configuration changed since 7"), 500, model.CodeInternal, ""},
		{"remove the last voter", "/v1/cluster/remove", `{"id":"n2"}`, nil, 409, model.CodeConflict, "id"},
	} {
		t.Run(c.name, func(t *testing.T) {
			fr := newFake("L")
			fr.leader, fr.memberErr = true, c.err
			fr.others = []cluster.Peer{{ID: "n2", Address: "127.0.0.1:2", Suffrage: "voter"}}
			if c.name == "remove the last voter" {
				fr.id, fr.others = "n2", nil // the fake is the only voter, n2
			}
			base := serve(t, api.Config{FSM: fr.fsm, Raft: fr}).URL
			before := snapshotState(t, fr.fsm, nil)
			checkError(t, call(t, "POST", base+c.path, c.body), c.status, c.code, c.field)
			checkUnchanged(t, before, fr.fsm, nil)
		})
	}

	// Removing a registered member forgets its API address first.
	t.Run("remove a registered member", func(t *testing.T) {
		fr := newFake("L")
		fr.leader = true
		fr.others = []cluster.Peer{{ID: "n2", Address: "127.0.0.1:2", Suffrage: "voter"}}
		fr.applyLocal(t, &fsm.RegisterNode{Node: model.Node{ID: "L", RaftAddr: "127.0.0.1:1", APIAddr: "127.0.0.1:2"}})
		base := serve(t, api.Config{FSM: fr.fsm, Raft: fr}).URL
		w := checkWrite(t, call(t, "POST", base+"/v1/cluster/remove", `{"id":"L"}`), http.StatusOK)
		if _, ok := fr.fsm.Node("L"); ok || w.Index != fr.fsm.Index() {
			t.Fatalf("after remove: %+v, nodes %+v", w, fr.fsm.Nodes())
		}
	})

	// Readiness follows the raft status.
	fr := newFake("f1")
	base := serve(t, api.Config{FSM: fr.fsm, Raft: fr}).URL
	check := func(status int, ready bool, reason string) {
		t.Helper()
		r := call(t, "GET", base+"/readyz", "")
		var rd wire.Ready
		decodeExact(t, r.body, &rd)
		if r.status != status || rd.Ready != ready || !strings.Contains(rd.Reason, reason) || r.header.Get("Content-Type") != "application/json" {
			t.Errorf("readyz %d %+v, want %d ready=%v reason ~%q", r.status, rd, status, ready, reason)
		}
		if r = call(t, "GET", base+"/healthz", ""); r.status != http.StatusOK {
			t.Errorf("healthz %d", r.status)
		}
	}
	check(503, false, "no leader")
	fr.mu.Lock()
	fr.leaderID, fr.commit = "L", 5000
	fr.mu.Unlock()
	check(503, false, "catching up")
	fr.mu.Lock()
	fr.commit = 0
	fr.mu.Unlock()
	check(200, true, "")

	// A follower's status reports its last contact with the leader.
	var st wire.Status
	checkRead(t, call(t, "GET", base+"/v1/status", ""), &st)
	if st.Role != "follower" || st.LeaderID != "L" || st.LastContact == nil || st.LastContact.Year() != 2024 || len(st.Peers) != 1 {
		t.Fatalf("follower status %+v", st)
	}
}

// TestForwardEndToEnd forwards through a follower to a leader running on
// real raft: the token is checked by the leader, the write commits there.
func TestForwardEndToEnd(t *testing.T) {
	t.Parallel()
	f, n := startNode(t, "n1")
	leader := serve(t, api.Config{FSM: f, Raft: n, Token: testToken, TokenForWrites: true, TokenForReads: true})
	checkWrite(t, call(t, "POST", leader.URL+"/v1/cluster/nodes",
		fmt.Sprintf(`{"id":"n1","raft_addr":%q,"api_addr":%q}`, n.Addr(), hostOf(leader.URL)), bearer(testToken)...), http.StatusOK)

	// The follower shares the leader's FSM (as if replicated instantly)
	// and checks no token itself.
	fr := &fakeRaft{fsm: f, id: "f2", addr: "127.0.0.1:3", leaderID: "n1", leaderAddr: n.Addr()}
	base := serve(t, api.Config{FSM: f, Raft: fr}).URL

	w := checkWrite(t, call(t, "POST", base+"/v1/services", `{"name":"web","protocol":"tcp","address":"192.0.2.10","port":80,"reals":[{"address":"10.0.0.1"}]}`,
		bearer(testToken)...), http.StatusCreated)
	if s, ok := f.Service("web"); !ok || s.ModifyIndex != w.Index {
		t.Fatalf("not committed on the leader: %+v", s)
	}
	var s model.Service
	checkRead(t, call(t, "GET", base+"/v1/services/web?consistent=1", "", bearer(testToken)...), &s)
	if s.ModifyIndex != w.Index {
		t.Fatalf("consistent read through the follower %+v", s)
	}

	// The leader refuses what it would refuse directly, and the follower
	// relays it; nothing changes.
	before := snapshotState(t, f, n)
	checkError(t, call(t, "POST", base+"/v1/services", `{"name":"web2","protocol":"tcp","address":"192.0.2.11","port":80}`, bearer("wrong")...),
		http.StatusUnauthorized, wire.CodeUnauthorized, "")
	checkError(t, call(t, "GET", base+"/v1/services?consistent=1", ""), http.StatusUnauthorized, wire.CodeUnauthorized, "")
	checkError(t, call(t, "POST", base+"/v1/services", `{"name":"web","protocol":"tcp","address":"192.0.2.11","port":80}`, bearer(testToken)...),
		http.StatusConflict, model.CodeConflict, "name")
	checkError(t, call(t, "DELETE", base+"/v1/services/web?cas=1", "", bearer(testToken)...),
		http.StatusConflict, model.CodeCASMismatch, "cas")
	checkUnchanged(t, before, f, n)
	if n := fr.applyCount(); n != 0 {
		t.Errorf("the follower applied %d commands itself", n)
	}
}
