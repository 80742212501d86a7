package api_test

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/raftlb/raftlb/api"
	"github.com/raftlb/raftlb/api/wire"
	"github.com/raftlb/raftlb/fsm"
	"github.com/raftlb/raftlb/model"
)

// TestSlowBodyIsCutOff: a client that sends its body slowly (authorised
// or not) does not hold the connection past the body deadline.
func TestSlowBodyIsCutOff(t *testing.T) {
	t.Parallel()
	fr := newFake("L")
	fr.leader = true
	srv := serve(t, api.Config{FSM: fr.fsm, Raft: fr, BodyTimeout: 200 * time.Millisecond})
	c, err := net.Dial("tcp", hostOf(srv.URL))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "POST /v1/vips HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"addr")
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("no answer after the body deadline: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestTimeout {
		t.Fatalf("status %d, want 408", resp.StatusCode)
	}
	if len(fr.fsm.VIPs()) != 0 {
		t.Fatal("a VIP was created")
	}
}

func TestRequestLimits(t *testing.T) {
	t.Parallel()
	fr := newFake("L")
	fr.leader = true
	base := serve(t, api.Config{FSM: fr.fsm, Raft: fr, MaxReals: 3, MaxEntry: 400}).URL
	svc := func(n int) string {
		var rs []string
		for i := range n {
			rs = append(rs, fmt.Sprintf(`{"address":"10.0.0.%d"}`, i+1))
		}
		return fmt.Sprintf(`{"name":"web","protocol":"tcp","address":"192.0.2.10","port":80,"reals":[%s]}`, strings.Join(rs, ","))
	}
	before := snapshotState(t, fr.fsm, nil)
	e := checkError(t, call(t, "POST", base+"/v1/services", svc(4)), 400, model.CodeInvalid, "reals")
	if !strings.Contains(e.Message, "-api-max-reals") {
		t.Errorf("message %q does not name the flag", e.Message)
	}
	// Within the count, but more than 400 bytes as a log entry.
	e = checkError(t, call(t, "POST", base+"/v1/services", svc(3)), 413, wire.CodeTooLarge, "")
	if !strings.Contains(e.Message, "-api-max-entry") {
		t.Errorf("message %q does not name the flag", e.Message)
	}
	checkUnchanged(t, before, fr.fsm, nil)
	checkWrite(t, call(t, "POST", base+"/v1/services", svc(0)), http.StatusCreated)
}

// TestForwardWaitsForARestartedDirectorToCatchUp: a director that knows the
// leader from its first heartbeat, before it replayed the entry that
// registered the leader's API address, forwards once it has (it answered
// "leader has not registered its API address yet").
func TestForwardWaitsForARestartedDirectorToCatchUp(t *testing.T) {
	t.Parallel()
	leader := newStubLeader(t)
	fr, base := follower(t, "L", "", api.Config{})
	fr.mu.Lock()
	fr.commit = fr.fsm.Index() + 1 // the registration is committed, not yet applied here
	fr.mu.Unlock()
	go func() {
		time.Sleep(100 * time.Millisecond) // the replay, a moment later
		fr.applyLocal(t, &fsm.RegisterNode{Node: model.Node{ID: "L", RaftAddr: "127.0.0.1:2", APIAddr: hostOf(leader.srv.URL)}})
	}()
	r := call(t, "POST", base+"/v1/vips", `{"address":"192.0.2.9/24","interface":"eth0"}`)
	if r.status != http.StatusCreated || len(leader.requests()) != 1 {
		t.Fatalf("status %d %s, %d requests forwarded", r.status, r.body, len(leader.requests()))
	}
}
