package api_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/raftlb/raftlb/api"
	"github.com/raftlb/raftlb/api/wire"
	"github.com/raftlb/raftlb/model"
)

func TestClusterEndpoints(t *testing.T) {
	t.Parallel()
	f, n := startNode(t, "n1")
	srv := serve(t, api.Config{FSM: f, Raft: n, Version: "v-test"})
	base := srv.URL
	apiAddr := strings.TrimPrefix(base, "http://")

	// Register this director's API address: normalised (scheme default),
	// indexed.
	w := checkWrite(t, call(t, "POST", base+"/v1/cluster/nodes", fmt.Sprintf(`{"id":"n1","raft_addr":%q,"api_addr":%q}`, n.Addr(), apiAddr)), http.StatusOK)
	wantNode := model.Node{ID: "n1", RaftAddr: n.Addr(), APIAddr: apiAddr, APIScheme: "http", ModifyIndex: w.Index}
	if w.Node == nil || *w.Node != wantNode {
		t.Fatalf("registered %+v, want %+v", w.Node, wantNode)
	}
	// Registering the same again commits a new entry but keeps the node's
	// index.
	w2 := checkWrite(t, call(t, "POST", base+"/v1/cluster/nodes", mustJSON(t, wantNode)), http.StatusOK)
	if w2.Index <= w.Index || w2.Node == nil || *w2.Node != wantNode {
		t.Fatalf("re-registered %+v (index %d)", w2.Node, w2.Index)
	}
	var nodes []model.Node
	checkRead(t, call(t, "GET", base+"/v1/cluster/nodes", ""), &nodes)
	if len(nodes) != 1 || nodes[0] != wantNode {
		t.Fatalf("nodes %+v", nodes)
	}

	// Peers carry the registered API address.
	var peers []wire.Peer
	checkRead(t, call(t, "GET", base+"/v1/cluster/peers", ""), &peers)
	if len(peers) != 1 || peers[0] != (wire.Peer{ID: "n1", Address: n.Addr(), Suffrage: "voter", Leader: true, APIAddr: apiAddr}) {
		t.Fatalf("peers %+v", peers)
	}

	// Status of a leader.
	var st wire.Status
	idx := checkRead(t, call(t, "GET", base+"/v1/status", ""), &st)
	if st.NodeID != "n1" || st.RaftAddr != n.Addr() || st.Role != "leader" || st.LeaderID != "n1" || st.LeaderAddr != n.Addr() ||
		st.Term == 0 || st.AppliedIndex < w2.Index || st.CommitIndex < w2.Index || st.TimingProfile != "fast" ||
		st.Version != "v-test" || st.LastContact != nil || len(st.Peers) != 1 || st.Peers[0] != peers[0] {
		t.Fatalf("status %+v", st)
	}
	if idx < w2.Index {
		t.Errorf("status index %d below %d", idx, w2.Index)
	}

	// Joining this director itself at its own address is a no-op that
	// (re)registers its API address.
	j := checkWrite(t, call(t, "POST", base+"/v1/cluster/join", fmt.Sprintf(`{"id":"n1","address":%q,"api_addr":%q,"api_scheme":"http"}`, n.Addr(), apiAddr)), http.StatusOK)
	if j.Node == nil || *j.Node != wantNode {
		t.Fatalf("join answered %+v", j)
	}
	j2 := checkWrite(t, call(t, "POST", base+"/v1/cluster/join", fmt.Sprintf(`{"id":"n1","address":%q}`, n.Addr())), http.StatusOK)
	if j2.Node != nil || j2.Index < j.Index {
		t.Fatalf("join without API address answered %+v", j2)
	}
	// Transferring leadership to itself is a no-op.
	tr := checkWrite(t, call(t, "POST", base+"/v1/cluster/transfer-leadership", `{"id":"n1"}`), http.StatusOK)
	if tr.Index < j.Index || !n.IsLeader() {
		t.Fatalf("transfer to self: %+v, leader %v", tr, n.IsLeader())
	}
	checkRead(t, call(t, "GET", base+"/v1/cluster/peers", ""), &peers)
	if len(peers) != 1 {
		t.Fatalf("peers after no-ops %+v", peers)
	}

	// Health.
	for _, p := range []string{"/healthz", "/readyz"} {
		r := call(t, "GET", base+p, "")
		var rd wire.Ready
		decodeExact(t, r.body, &rd)
		if r.status != http.StatusOK || !rd.Ready || r.header.Get("Content-Type") != "application/json" {
			t.Errorf("%s: %d %+v", p, r.status, rd)
		}
	}
}

func TestConsistentReads(t *testing.T) {
	t.Parallel()
	f, n := startNode(t, "n1")
	base := serve(t, api.Config{FSM: f, Raft: n}).URL
	w := checkWrite(t, call(t, "POST", base+"/v1/services", `{"name":"web","protocol":"tcp","address":"192.0.2.10","port":80,"reals":[{"address":"10.0.0.1"}]}`), http.StatusCreated)
	vip := checkWrite(t, call(t, "POST", base+"/v1/vips", `{"address":"192.0.2.10/24","interface":"eth0"}`), http.StatusCreated)

	for _, q := range []string{"?consistent=1", "?consistent=true", "?consistent=yes"} {
		for _, c := range []struct {
			path string
			into any
		}{
			{"/v1/services", &[]model.Service{}},
			{"/v1/services/web", &model.Service{}},
			{"/v1/services/web/reals", &[]model.RealServer{}},
			{"/v1/services/web/reals/10.0.0.1:80", &model.RealServer{}},
			{"/v1/vips", &[]model.VIP{}},
			{"/v1/vips/192.0.2.10", &model.VIP{}},
			{"/v1/settings", &model.Settings{}},
			{"/v1/cluster/nodes", &[]model.Node{}},
			{"/v1/cluster/peers", &[]wire.Peer{}},
			{"/v1/status", &wire.Status{}},
		} {
			idx := checkRead(t, call(t, "GET", base+c.path+q, ""), c.into)
			if idx < vip.Index {
				t.Errorf("%s%s: index %d below the last write %d", c.path, q, idx, vip.Index)
			}
		}
	}
	var s model.Service
	checkRead(t, call(t, "GET", base+"/v1/services/web?consistent=1", ""), &s)
	if s.ModifyIndex != w.Index || len(s.Reals) != 1 {
		t.Fatalf("consistent GET %+v", s)
	}
	// consistent=0 and =false are plain local reads.
	for _, q := range []string{"?consistent=0", "?consistent=false", "?consistent="} {
		checkRead(t, call(t, "GET", base+"/v1/services/web"+q, ""), &s)
	}
	// Errors of a consistent read are the same as a local one's.
	checkError(t, call(t, "GET", base+"/v1/services/nope?consistent=1", ""), http.StatusNotFound, model.CodeNotFound, "name")
}
