package api_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/raftlb/raftlb/api"
	"github.com/raftlb/raftlb/api/wire"
	"github.com/raftlb/raftlb/model"
)

func TestAuth(t *testing.T) {
	t.Parallel()
	f, n := startNode(t, "n1")
	servers := map[string]string{}
	for name, cfg := range map[string]api.Config{
		"beyond-loopback": {Token: testToken, TokenForReads: true, TokenForWrites: true},
		"loopback":        {Token: testToken, TokenForWrites: true},
		"no-token":        {TokenForWrites: true},
		"no-token-reads":  {TokenForReads: true, TokenForWrites: true},
		"dev":             {},
	} {
		cfg.FSM, cfg.Raft = f, n
		servers[name] = serve(t, cfg).URL
	}
	const (
		write    = `{"timing_profile":"lan"}`
		realAuth = "Bearer " + testToken
	)
	type authCase struct {
		server, method, path, body, auth string
		status                           int
		noTokenMsg                       bool // 401 message says no token is configured
	}
	var cases []authCase
	add := func(server, method, path, body, auth string, status int) {
		cases = append(cases, authCase{server: server, method: method, path: path, body: body, auth: auth, status: status})
	}
	// Reads and writes need the token beyond loopback.
	for _, p := range []string{"/v1/services", "/v1/services/web", "/v1/services/nope", "/v1/vips", "/v1/settings", "/v1/status",
		"/v1/cluster/peers", "/v1/cluster/nodes", "/v1/services?consistent=1"} {
		add("beyond-loopback", "GET", p, "", "", 401)
		add("beyond-loopback", "GET", p, "", "Bearer wrong", 401)
		add("loopback", "GET", p, "", "", 0) // free: 200 or 404
		add("loopback", "GET", p, "", "Bearer wrong", 0)
		add("dev", "GET", p, "", "", 0)
	}
	for _, a := range []string{"", "Bearer wrong", "Bearer " + testToken + "x", "Bearer " + testToken[:len(testToken)-1], "Bearer", "Bearer ",
		testToken, "Basic " + testToken, "Token " + testToken, "Bearer" + testToken} {
		add("beyond-loopback", "GET", "/v1/settings", "", a, 401)
		add("beyond-loopback", "PUT", "/v1/settings", write, a, 401)
		add("loopback", "PUT", "/v1/settings", write, a, 401)
		add("loopback", "GET", "/v1/settings", "", a, 200)
	}
	// RFC 7235: the scheme is case-insensitive and may be followed by more
	// than one space.
	for _, a := range []string{realAuth, "bearer " + testToken, "BEARER " + testToken, "Bearer  " + testToken} {
		add("beyond-loopback", "GET", "/v1/settings", "", a, 200)
	}
	add("beyond-loopback", "PUT", "/v1/settings", write, realAuth, 200)
	add("loopback", "PUT", "/v1/settings", write, realAuth, 200)
	// The token is checked before the body is read or validated, and
	// before the target is looked up.
	for _, s := range []string{"beyond-loopback", "loopback", "no-token"} {
		for _, c := range []authCase{
			{method: "POST", path: "/v1/services", body: `{"name":`},
			{method: "POST", path: "/v1/services", body: strings.Repeat("x", 100), auth: "Bearer wrong"},
			{method: "DELETE", path: "/v1/services/nope"},
			{method: "PUT", path: "/v1/services/web/reals/bad-key?cas=x", body: write},
			{method: "POST", path: "/v1/cluster/join", body: `{}`},
			{method: "POST", path: "/v1/cluster/remove", body: `{"id":"n1"}`},
			{method: "POST", path: "/v1/cluster/transfer-leadership"},
			{method: "POST", path: "/v1/cluster/nodes", body: `{}`},
			{method: "DELETE", path: "/v1/vips/192.0.2.1"},
		} {
			c.server, c.status, c.noTokenMsg = s, 401, s == "no-token"
			cases = append(cases, c)
		}
	}
	// Health checks never need the token.
	for s := range servers {
		add(s, "GET", "/healthz", "", "", 200)
		add(s, "GET", "/readyz", "", "", 200)
	}
	// Without a configured token, nothing that needs one is accepted, not
	// even an empty bearer token.
	for _, a := range []string{"", "Bearer ", "Bearer anything", realAuth} {
		cases = append(cases,
			authCase{server: "no-token", method: "PUT", path: "/v1/settings", body: write, auth: a, status: 401, noTokenMsg: true},
			authCase{server: "no-token-reads", method: "GET", path: "/v1/settings", auth: a, status: 401, noTokenMsg: true},
			authCase{server: "no-token", method: "GET", path: "/v1/settings", auth: a, status: 200},
			authCase{server: "dev", method: "PUT", path: "/v1/settings", body: write, auth: a, status: 200},
		)
	}

	for _, c := range cases {
		t.Run(c.server+" "+c.method+" "+c.path+" auth="+c.auth, func(t *testing.T) {
			before := snapshotState(t, f, n)
			var hdr []string
			if c.auth != "" {
				hdr = []string{"Authorization", c.auth}
			}
			r := call(t, c.method, servers[c.server]+c.path, c.body, hdr...)
			if c.status != 401 {
				if r.status == 401 || (c.status != 0 && r.status != c.status) {
					t.Fatalf("status %d, want %d: %s", r.status, c.status, r.body)
				}
				if r.header.Get("WWW-Authenticate") != "" {
					t.Errorf("WWW-Authenticate on a %d", r.status)
				}
				return
			}
			e := checkError(t, r, http.StatusUnauthorized, wire.CodeUnauthorized, "")
			if got := r.header.Get("WWW-Authenticate"); got != `Bearer realm="raftlb"` {
				t.Errorf("WWW-Authenticate %q", got)
			}
			if c.noTokenMsg != strings.Contains(e.Message, "no token configured") {
				t.Errorf("message %q (no token configured: %v)", e.Message, c.noTokenMsg)
			}
			if !c.noTokenMsg && !strings.Contains(e.Message, "Bearer") {
				t.Errorf("message %q does not say how to authenticate", e.Message)
			}
			checkUnchanged(t, before, f, n)
		})
	}

	// A write with the token commits and is visible without one on
	// loopback.
	w := checkWrite(t, call(t, "POST", servers["loopback"]+"/v1/vips", `{"address":"192.0.2.7/24","interface":"eth0"}`, bearer(testToken)...), http.StatusCreated)
	var v model.VIP
	checkRead(t, call(t, "GET", servers["loopback"]+"/v1/vips/192.0.2.7", ""), &v)
	if v.ModifyIndex != w.Index {
		t.Fatalf("VIP %+v", v)
	}
}
