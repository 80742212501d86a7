package api_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/raftlb/raftlb/model"
)

// TestCrossFamilyTunRefusedWhileSyncing: with an IPVS director registered
// and the connection-sync daemon enabled, a tun real server or sorry
// server of the other address family is refused with 400, naming the
// field, the director and its dataplane (the kernel would refuse it on
// every retry), and nothing changes; so is enabling the daemon while one
// exists. Same-family tun and, without the daemon, the other family are
// accepted.
func TestCrossFamilyTunRefusedWhileSyncing(t *testing.T) {
	t.Parallel()
	fx := newFixture(t)
	ipvs := fmt.Sprintf(`{"id":"n1","raft_addr":%q,"api_addr":%q,"dataplane":"ipvs","caps":{"schedulers":["rr","wrr","wlc"],"flags":[],"forwards":["nat","dr","tun"],"persistence":true,"fwmark":true,"thresholds":true}}`,
		fx.node.Addr(), strings.TrimPrefix(fx.srv, "http://"))
	const (
		syncOn  = `{"timing_profile":"fast","sync":{"enabled":true,"interface":"eth1"}}`
		syncOff = `{"timing_profile":"fast"}`
	)
	ok := func(method, path, body string) {
		t.Helper()
		if r := call(t, method, fx.srv+path, body); r.status != http.StatusOK && r.status != http.StatusCreated {
			t.Fatalf("%s %s: %d %s", method, path, r.status, r.body)
		}
	}
	refused := func(method, path, body, field string) {
		t.Helper()
		before := snapshotState(t, fx.fsm, fx.node)
		r := call(t, method, fx.srv+path, body)
		e := checkError(t, r, http.StatusBadRequest, model.CodeInvalid, field)
		if !strings.Contains(e.Message, "ipvs dataplane of director n1") || !strings.Contains(e.Message, "sync") {
			t.Errorf("%s %s: message %q does not name the director, its dataplane and the sync daemon", method, path, e.Message)
		}
		checkUnchanged(t, before, fx.fsm, fx.node)
	}
	ok("POST", "/v1/cluster/nodes", ipvs)
	ok("PUT", "/v1/settings", syncOn)

	refused("POST", "/v1/services/web/reals", `{"address":"2001:db8::30","forward":"tun"}`, "address")
	refused("POST", "/v1/services", `{"name":"tun6","protocol":"tcp","address":"192.0.2.30","port":80,"forward":"tun","reals":[{"address":"10.0.3.1"},{"address":"2001:db8::31"}]}`, "reals[1].address")
	refused("PUT", "/v1/services/web", `{"name":"web","protocol":"tcp","address":"192.0.2.10","port":80,"scheduler":"rr","sorry_server":{"address":"2001:db8::32","forward":"tun"}}`, "sorry_server.address")
	refused("POST", "/v1/services/v6/reals", `{"address":"10.0.3.2","forward":"tun"}`, "address")
	ok("POST", "/v1/services/web/reals", `{"address":"10.0.3.3","forward":"tun"}`)

	ok("PUT", "/v1/settings", syncOff)
	ok("POST", "/v1/services/web/reals", `{"address":"2001:db8::30","forward":"tun"}`)
	refused("PUT", "/v1/settings", syncOn, "sync.enabled")
}
