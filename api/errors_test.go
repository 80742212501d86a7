package api_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/raftlb/raftlb/api"
	"github.com/raftlb/raftlb/api/wire"
	"github.com/raftlb/raftlb/cluster"
	"github.com/raftlb/raftlb/fsm"
	"github.com/raftlb/raftlb/model"
)

// smallBody is Config.MaxBody of fixture.small.
const smallBody = 256

// fixture is a real one-node cluster with an API server over it, holding a
// few objects of every kind.
type fixture struct {
	fsm   *fsm.FSM
	node  *cluster.Node
	srv   string // base URL, default limits, no token needed
	small string // base URL of a server with MaxBody smallBody
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f, n := startNode(t, "n1")
	fx := &fixture{fsm: f, node: n}
	fx.srv = serve(t, api.Config{FSM: f, Raft: n, Version: "test"}).URL
	fx.small = serve(t, api.Config{FSM: f, Raft: n, MaxBody: smallBody}).URL
	for _, w := range []struct{ method, path, body string }{
		{"POST", "/v1/services", `{"name":"web","protocol":"tcp","address":"192.0.2.10","port":80,"reals":[{"address":"10.0.1.1"},{"address":"10.0.1.2","weight":2}]}`},
		{"POST", "/v1/services", `{"name":"v6","protocol":"tcp","address":"2001:db8::10","port":443,"reals":[{"address":"2001:db8::20"}]}`},
		{"POST", "/v1/services", `{"name":"dns","protocol":"udp","address":"192.0.2.10","port":53,"scheduler":"sh","sched_flags":["sh-port"]}`},
		{"POST", "/v1/services", `{"name":"fw","fwmark":7}`},
		{"POST", "/v1/services", `{"name":"dr","protocol":"tcp","address":"192.0.2.11","port":80,"forward":"dr","reals":[{"address":"10.0.2.1"}]}`},
		{"PUT", "/v1/services/web", `{"name":"web","protocol":"tcp","address":"192.0.2.10","port":80,"scheduler":"rr"}`},
		{"POST", "/v1/vips", `{"address":"192.0.2.100/24","interface":"eth0"}`},
		{"PUT", "/v1/settings", `{"timing_profile":"fast"}`},
		{"POST", "/v1/cluster/nodes", fmt.Sprintf(`{"id":"n1","raft_addr":%q,"api_addr":%q}`, n.Addr(), strings.TrimPrefix(fx.srv, "http://"))},
	} {
		r := call(t, w.method, fx.srv+w.path, w.body)
		if r.status != http.StatusOK && r.status != http.StatusCreated {
			t.Fatalf("fixture %s %s: %d %s", w.method, w.path, r.status, r.body)
		}
	}
	return fx
}

// errCase is one request that must be refused and change nothing.
type errCase struct {
	name   string
	method string
	path   string
	body   string
	hdr    []string
	small  bool // send to the server with a small MaxBody
	status int
	code   string
	field  string
	allow  string // expected Allow header (405)
}

func bad(name, method, path, body string, status int, code, field string) errCase {
	return errCase{name: name, method: method, path: path, body: body, status: status, code: code, field: field}
}

func invalid(name, method, path, body, field string) errCase {
	return bad(name, method, path, body, http.StatusBadRequest, model.CodeInvalid, field)
}

// syntaxCases are the body errors every JSON write endpoint shares.
func syntaxCases(method, path, valid string) []errCase {
	p := method + " " + path + ": "
	return []errCase{
		invalid(p+"malformed JSON", method, path, `{"id":`, "body"),
		invalid(p+"syntax error", method, path, `{"id": nope}`, "body"),
		invalid(p+"empty body", method, path, ``, "body"),
		invalid(p+"blank body", method, path, " \n\t ", "body"),
		invalid(p+"trailing object", method, path, valid+`{}`, "body"),
		invalid(p+"trailing garbage", method, path, valid+` x`, "body"),
		invalid(p+"array instead of object", method, path, `[`+valid+`]`, "body"),
		invalid(p+"string instead of object", method, path, `"x"`, "body"),
		invalid(p+"unknown field", method, path, strings.Replace(valid, "{", `{"bogus":1,`, 1), "bogus"),
		{name: p + "text/plain", method: method, path: path, body: valid, hdr: []string{"Content-Type", "text/plain"},
			status: http.StatusUnsupportedMediaType, code: wire.CodeUnsupportedMedia, field: "Content-Type"},
		{name: p + "no Content-Type", method: method, path: path, body: valid, hdr: []string{"Content-Type", noCT},
			status: http.StatusUnsupportedMediaType, code: wire.CodeUnsupportedMedia, field: "Content-Type"},
		{name: p + "form encoded", method: method, path: path, body: valid, hdr: []string{"Content-Type", "application/x-www-form-urlencoded"},
			status: http.StatusUnsupportedMediaType, code: wire.CodeUnsupportedMedia, field: "Content-Type"},
		{name: p + "oversized", method: method, path: path, body: strings.Replace(valid, "{", `{`+strings.Repeat(" ", smallBody), 1), small: true,
			status: http.StatusRequestEntityTooLarge, code: wire.CodeTooLarge},
	}
}

func errorCases(nodeAddr string) []errCase {
	const (
		svc     = `{"name":"new","protocol":"tcp","address":"192.0.2.20","port":80}`
		webSpec = `{"name":"web","protocol":"tcp","address":"192.0.2.10","port":80}`
		real    = `{"address":"10.0.1.3"}`
		vip     = `{"address":"192.0.2.101/24","interface":"eth0"}`
		sets    = `{"timing_profile":"lan"}`
		node    = `{"id":"n9","raft_addr":"127.0.0.1:9","api_addr":"127.0.0.1:10"}`
		join    = `{"id":"n1","address":"127.0.0.1:1"}`
		remove  = `{"id":"nobody"}`
		xfer    = `{"id":"nobody"}`
		stale   = "?cas=1"
	)
	svcWith := func(kv string) string {
		return `{"name":"new","protocol":"tcp","address":"192.0.2.20","port":80,` + kv + `}`
	}
	webWith := func(kv string) string {
		return `{"name":"web","protocol":"tcp","address":"192.0.2.10","port":80,` + kv + `}`
	}
	withReals := func(reals string) string { return svcWith(`"reals":[` + reals + `]`) }
	conflict := func(name, method, path, body, field string) errCase {
		return bad(name, method, path, body, http.StatusConflict, model.CodeConflict, field)
	}
	notFound := func(name, method, path, body, field string) errCase {
		return bad(name, method, path, body, http.StatusNotFound, model.CodeNotFound, field)
	}
	casMismatch := func(name, method, path, body string) errCase {
		return bad(name, method, path, body, http.StatusConflict, model.CodeCASMismatch, "cas")
	}
	method := func(m, path, allow string) errCase {
		return errCase{name: m + " " + path, method: m, path: path, status: http.StatusMethodNotAllowed, code: wire.CodeMethod, allow: allow}
	}

	var cs []errCase
	// Body syntax, media type and size, on every endpoint that takes JSON.
	for _, e := range []struct{ method, path, valid string }{
		{"POST", "/v1/services", svc},
		{"PUT", "/v1/services/web", webSpec},
		{"POST", "/v1/services/web/reals", real},
		{"PUT", "/v1/services/web/reals/10.0.1.1:80", `{"weight":3}`},
		{"POST", "/v1/vips", vip},
		{"PUT", "/v1/vips/192.0.2.100", `{"address":"192.0.2.100/25","interface":"eth1"}`},
		{"PUT", "/v1/settings", sets},
		{"POST", "/v1/cluster/nodes", node},
		{"POST", "/v1/cluster/join", join},
		{"POST", "/v1/cluster/remove", remove},
		{"POST", "/v1/cluster/transfer-leadership", xfer},
	} {
		for _, c := range syntaxCases(e.method, e.path, e.valid) {
			if e.path == "/v1/cluster/transfer-leadership" && (c.body == "" || strings.TrimSpace(c.body) == "") {
				continue // an empty body asks raft to pick the target: not an error
			}
			cs = append(cs, c)
		}
	}
	// Bodies of deletes are read for their size and type too.
	cs = append(cs,
		errCase{name: "DELETE service: text/plain", method: "DELETE", path: "/v1/services/web", body: "x", hdr: []string{"Content-Type", "text/plain"},
			status: http.StatusUnsupportedMediaType, code: wire.CodeUnsupportedMedia, field: "Content-Type"},
		errCase{name: "DELETE vip: oversized", method: "DELETE", path: "/v1/vips/192.0.2.100", body: strings.Repeat(" ", smallBody+1), small: true,
			status: http.StatusRequestEntityTooLarge, code: wire.CodeTooLarge},
	)

	cs = append(cs,
		// POST /v1/services: wrong JSON types.
		invalid("service: port as string", "POST", "/v1/services", `{"name":"new","protocol":"tcp","address":"192.0.2.20","port":"80"}`, "port"),
		invalid("service: port as float", "POST", "/v1/services", `{"name":"new","protocol":"tcp","address":"192.0.2.20","port":80.5}`, "port"),
		invalid("service: port overflows int", "POST", "/v1/services", `{"name":"new","protocol":"tcp","address":"192.0.2.20","port":99999999999999999999}`, "port"),
		invalid("service: name as number", "POST", "/v1/services", `{"name":7,"protocol":"tcp","address":"192.0.2.20","port":80}`, "name"),
		invalid("service: fwmark negative", "POST", "/v1/services", `{"name":"new","fwmark":-1}`, "fwmark"),
		invalid("service: sched_flags as string", "POST", "/v1/services", svcWith(`"sched_flags":"sh-port"`), "sched_flags"),
		invalid("service: reals as object", "POST", "/v1/services", svcWith(`"reals":{}`), "reals"),
		invalid("service: reals[1].weight as string", "POST", "/v1/services", withReals(`{"address":"10.0.0.1"},{"address":"10.0.0.2","weight":"2"}`), "reals[1].weight"),
		invalid("service: reals[0] not an object", "POST", "/v1/services", withReals(`"10.0.0.1"`), "reals[0]"),
		invalid("service: reals[1] is an array", "POST", "/v1/services", withReals(`{"address":"10.0.0.1"},[]`), "reals[1]"),
		invalid("service: reals[0] is null", "POST", "/v1/services", withReals(`null`), "reals[0].address"),
		// Unknown fields nested in reals[].
		invalid("service: unknown field in reals[1]", "POST", "/v1/services", withReals(`{"address":"10.0.0.1"},{"address":"10.0.0.2","bogus":true}`), "reals[1].bogus"),
		invalid("service: unknown field key in reals[0]", "POST", "/v1/services", withReals(`{"address":"10.0.0.1","key":"x"}`), "reals[0].key"),
		// Addresses.
		invalid("service: address missing", "POST", "/v1/services", `{"name":"new","protocol":"tcp","port":80}`, "address"),
		invalid("service: address not an IP", "POST", "/v1/services", svcWith(`"address":"300.1.1.1"`), "address"),
		invalid("service: address host name", "POST", "/v1/services", `{"name":"new","protocol":"tcp","address":"example.com","port":80}`, "address"),
		invalid("service: address with prefix", "POST", "/v1/services", `{"name":"new","protocol":"tcp","address":"192.0.2.20/24","port":80}`, "address"),
		invalid("service: multicast address", "POST", "/v1/services", `{"name":"new","protocol":"tcp","address":"224.0.0.1","port":80}`, "address"),
		invalid("service: unspecified address", "POST", "/v1/services", `{"name":"new","protocol":"tcp","address":"::","port":80}`, "address"),
		invalid("service: v4-mapped address", "POST", "/v1/services", `{"name":"new","protocol":"tcp","address":"::ffff:192.0.2.20","port":80}`, "address"),
		invalid("service: zoned address", "POST", "/v1/services", `{"name":"new","protocol":"tcp","address":"fe80::1%eth0","port":80}`, "address"),
		invalid("service: family mismatch", "POST", "/v1/services", svcWith(`"family":"inet6"`), "family"),
		// Ports.
		invalid("service: port too large", "POST", "/v1/services", `{"name":"new","protocol":"tcp","address":"192.0.2.20","port":65536}`, "port"),
		invalid("service: port negative", "POST", "/v1/services", `{"name":"new","protocol":"tcp","address":"192.0.2.20","port":-1}`, "port"),
		invalid("service: port 0 without persistence", "POST", "/v1/services", `{"name":"new","protocol":"tcp","address":"192.0.2.20"}`, "port"),
		// Protocol, scheduler, forwarding, persistence, flags.
		invalid("service: protocol missing", "POST", "/v1/services", `{"name":"new","address":"192.0.2.20","port":80}`, "protocol"),
		invalid("service: protocol unknown", "POST", "/v1/services", svcWith(`"protocol":"icmp"`), "protocol"),
		invalid("service: scheduler unknown", "POST", "/v1/services", svcWith(`"scheduler":"fastest"`), "scheduler"),
		invalid("service: scheduler upper case", "POST", "/v1/services", svcWith(`"scheduler":"WLC"`), "scheduler"),
		invalid("service: forward unknown", "POST", "/v1/services", svcWith(`"forward":"masq"`), "forward"),
		invalid("service: persistence negative", "POST", "/v1/services", svcWith(`"persistence":-1`), "persistence"),
		invalid("service: persistence too long", "POST", "/v1/services", svcWith(fmt.Sprintf(`"persistence":%d`, model.MaxPersistence+1)), "persistence"),
		invalid("service: persist_netmask too long", "POST", "/v1/services", svcWith(`"persistence":60,"persist_netmask":33`), "persist_netmask"),
		invalid("service: persist_netmask without persistence", "POST", "/v1/services", svcWith(`"persist_netmask":24`), "persist_netmask"),
		invalid("service: sched flag unknown", "POST", "/v1/services", svcWith(`"sched_flags":["bogus"]`), "sched_flags"),
		invalid("service: sh flag with wlc", "POST", "/v1/services", svcWith(`"sched_flags":["sh-port"]`), "sched_flags"),
		invalid("service: mh flag with sh", "POST", "/v1/services", svcWith(`"scheduler":"sh","sched_flags":["mh-port"]`), "sched_flags"),
		invalid("service: ops with tcp", "POST", "/v1/services", svcWith(`"sched_flags":["ops"]`), "sched_flags"),
		// Fwmark services.
		invalid("service: fwmark with address", "POST", "/v1/services", `{"name":"new","fwmark":8,"address":"192.0.2.20"}`, "fwmark"),
		invalid("service: fwmark with protocol", "POST", "/v1/services", `{"name":"new","fwmark":8,"protocol":"tcp"}`, "fwmark"),
		invalid("service: fwmark with port", "POST", "/v1/services", `{"name":"new","fwmark":8,"port":80}`, "fwmark"),
		invalid("service: fwmark bad family", "POST", "/v1/services", `{"name":"new","fwmark":8,"family":"ipx"}`, "family"),
		// Names.
		invalid("service: name missing", "POST", "/v1/services", `{"protocol":"tcp","address":"192.0.2.20","port":80}`, "name"),
		invalid("service: name starts with dash", "POST", "/v1/services", `{"name":"-x","protocol":"tcp","address":"192.0.2.20","port":80}`, "name"),
		invalid("service: name with slash", "POST", "/v1/services", `{"name":"a/b","protocol":"tcp","address":"192.0.2.20","port":80}`, "name"),
		invalid("service: name too long", "POST", "/v1/services", `{"name":"`+strings.Repeat("a", 64)+`","protocol":"tcp","address":"192.0.2.20","port":80}`, "name"),
		// reals[i] validation names the index.
		invalid("service: reals[1].weight too large", "POST", "/v1/services", withReals(`{"address":"10.0.0.1"},{"address":"10.0.0.2","weight":65536}`), "reals[1].weight"),
		invalid("service: reals[0].weight negative", "POST", "/v1/services", withReals(`{"address":"10.0.0.1","weight":-1}`), "reals[0].weight"),
		invalid("service: reals[0].address bad", "POST", "/v1/services", withReals(`{"address":"nope"}`), "reals[0].address"),
		invalid("service: reals[1].address missing", "POST", "/v1/services", withReals(`{"address":"10.0.0.1"},{"weight":1}`), "reals[1].address"),
		invalid("service: reals[0] v6 under a v4 nat service", "POST", "/v1/services", withReals(`{"address":"2001:db8::1"}`), "reals[0].address"),
		invalid("service: reals[0].port too large", "POST", "/v1/services", withReals(`{"address":"10.0.0.1","port":65536}`), "reals[0].port"),
		invalid("service: reals[0].state unknown", "POST", "/v1/services", withReals(`{"address":"10.0.0.1","state":"paused"}`), "reals[0].state"),
		invalid("service: reals[0].forward unknown", "POST", "/v1/services", withReals(`{"address":"10.0.0.1","forward":"masq"}`), "reals[0].forward"),
		invalid("service: reals[0].lower above upper", "POST", "/v1/services", withReals(`{"address":"10.0.0.1","upper_threshold":5,"lower_threshold":6}`), "reals[0].lower_threshold"),
		invalid("service: reals[1] dr cannot change the port", "POST", "/v1/services",
			svcWith(`"forward":"dr","reals":[{"address":"10.0.0.1"},{"address":"10.0.0.2","port":8080}]`), "reals[1].port"),
		// Duplicates.
		conflict("service: reals listed twice", "POST", "/v1/services", withReals(`{"address":"10.0.0.1"},{"address":"10.0.0.1","port":80}`), "reals[1].address"),
		conflict("service: duplicate name", "POST", "/v1/services", `{"name":"web","protocol":"tcp","address":"192.0.2.99","port":80}`, "name"),
		conflict("service: duplicate key", "POST", "/v1/services", `{"name":"web2","protocol":"tcp","address":"192.0.2.10","port":80}`, "address"),
		conflict("service: duplicate key, protocol upper case", "POST", "/v1/services", `{"name":"web2","protocol":"TCP","address":"192.0.2.10","port":80}`, "address"),
		conflict("service: duplicate key, v6 not canonical", "POST", "/v1/services", `{"name":"v6b","protocol":"tcp","address":"2001:DB8:0::10","port":443}`, "address"),
		conflict("service: duplicate fwmark", "POST", "/v1/services", `{"name":"fw2","fwmark":7,"family":"inet"}`, "fwmark"),

		// PUT /v1/services/{name}.
		casMismatch("PUT service: stale cas", "PUT", "/v1/services/web"+stale, webSpec),
		invalid("PUT service: cas not a number", "PUT", "/v1/services/web?cas=abc", webSpec, "cas"),
		invalid("PUT service: cas 0", "PUT", "/v1/services/web?cas=0", webSpec, "cas"),
		invalid("PUT service: cas negative", "PUT", "/v1/services/web?cas=-3", webSpec, "cas"),
		invalid("PUT service: cas fraction", "PUT", "/v1/services/web?cas=1.5", webSpec, "cas"),
		invalid("PUT service: rename", "PUT", "/v1/services/web", `{"name":"web2","protocol":"tcp","address":"192.0.2.10","port":80}`, "name"),
		invalid("PUT service: reals", "PUT", "/v1/services/web", webWith(`"reals":[{"address":"10.0.1.9"}]`), "reals"),
		invalid("PUT service: empty reals", "PUT", "/v1/services/web", webWith(`"reals":[]`), "reals"),
		invalid("PUT service: port as string", "PUT", "/v1/services/web", `{"name":"web","protocol":"tcp","address":"192.0.2.10","port":"80"}`, "port"),
		invalid("PUT service: modify_index as string", "PUT", "/v1/services/web", webWith(`"modify_index":"7"`), "modify_index"),
		invalid("PUT service: port too large", "PUT", "/v1/services/web", `{"name":"web","protocol":"tcp","address":"192.0.2.10","port":70000}`, "port"),
		invalid("PUT service: scheduler unknown", "PUT", "/v1/services/web", webWith(`"scheduler":"x"`), "scheduler"),
		invalid("PUT service: bad address", "PUT", "/v1/services/web", `{"name":"web","protocol":"tcp","address":"192.0.2","port":80}`, "address"),
		invalid("PUT service: forward unknown", "PUT", "/v1/services/web", webWith(`"forward":"gre"`), "forward"),
		invalid("PUT service: dr port change strands reals", "PUT", "/v1/services/dr", `{"name":"dr","protocol":"tcp","address":"192.0.2.11","port":8080,"forward":"dr"}`, "reals[10.0.2.1:80].port"),
		invalid("PUT service: v6 address strands v4 reals", "PUT", "/v1/services/web", `{"name":"web","protocol":"tcp","address":"2001:db8::99","port":80}`, "reals[10.0.1.1:80].address"),
		conflict("PUT service: key of another service", "PUT", "/v1/services/web", `{"name":"web","protocol":"udp","address":"192.0.2.10","port":53}`, "address"),
		conflict("PUT service: fwmark of another service", "PUT", "/v1/services/web", `{"name":"web","fwmark":7}`, "fwmark"),
		notFound("PUT service: unknown", "PUT", "/v1/services/nope", `{"name":"nope","protocol":"tcp","address":"192.0.2.30","port":80}`, "name"),
		notFound("PUT service: unknown, name from path", "PUT", "/v1/services/nope", `{"protocol":"tcp","address":"192.0.2.30","port":80}`, "name"),

		// DELETE /v1/services/{name}.
		notFound("DELETE service: unknown", "DELETE", "/v1/services/nope", "", "name"),
		casMismatch("DELETE service: stale cas", "DELETE", "/v1/services/web"+stale, ""),
		invalid("DELETE service: cas not a number", "DELETE", "/v1/services/web?cas=abc", "", "cas"),
		invalid("DELETE service: cas 0", "DELETE", "/v1/services/web?cas=0", "", "cas"),

		// POST /v1/services/{name}/reals.
		invalid("real: weight as string", "POST", "/v1/services/web/reals", `{"address":"10.0.1.3","weight":"2"}`, "weight"),
		invalid("real: port as string", "POST", "/v1/services/web/reals", `{"address":"10.0.1.3","port":"80"}`, "port"),
		invalid("real: weight too large", "POST", "/v1/services/web/reals", `{"address":"10.0.1.3","weight":65536}`, "weight"),
		invalid("real: weight negative", "POST", "/v1/services/web/reals", `{"address":"10.0.1.3","weight":-1}`, "weight"),
		invalid("real: address missing", "POST", "/v1/services/web/reals", `{"weight":1}`, "address"),
		invalid("real: address bad", "POST", "/v1/services/web/reals", `{"address":"10.0.1"}`, "address"),
		invalid("real: address with port", "POST", "/v1/services/web/reals", `{"address":"10.0.1.3:80"}`, "address"),
		invalid("real: multicast address", "POST", "/v1/services/web/reals", `{"address":"239.1.1.1"}`, "address"),
		invalid("real: v6 under v4 nat", "POST", "/v1/services/web/reals", `{"address":"2001:db8::3"}`, "address"),
		invalid("real: port too large", "POST", "/v1/services/web/reals", `{"address":"10.0.1.3","port":65536}`, "port"),
		invalid("real: port negative", "POST", "/v1/services/web/reals", `{"address":"10.0.1.3","port":-1}`, "port"),
		invalid("real: state unknown", "POST", "/v1/services/web/reals", `{"address":"10.0.1.3","state":"up"}`, "state"),
		invalid("real: forward unknown", "POST", "/v1/services/web/reals", `{"address":"10.0.1.3","forward":"snat"}`, "forward"),
		invalid("real: upper threshold negative", "POST", "/v1/services/web/reals", `{"address":"10.0.1.3","upper_threshold":-1}`, "upper_threshold"),
		invalid("real: lower threshold negative", "POST", "/v1/services/web/reals", `{"address":"10.0.1.3","lower_threshold":-1}`, "lower_threshold"),
		invalid("real: lower threshold without an upper one", "POST", "/v1/services/web/reals", `{"address":"10.0.1.3","lower_threshold":5}`, "lower_threshold"),
		invalid("real: dr port change", "POST", "/v1/services/dr/reals", `{"address":"10.0.2.2","port":8080}`, "port"),
		conflict("real: duplicate, port from service", "POST", "/v1/services/web/reals", `{"address":"10.0.1.1"}`, "address"),
		conflict("real: duplicate, explicit port", "POST", "/v1/services/web/reals", `{"address":"10.0.1.2","port":80,"weight":9}`, "address"),
		conflict("real: duplicate v6, not canonical", "POST", "/v1/services/v6/reals", `{"address":"2001:DB8:0:0::20"}`, "address"),
		notFound("real: unknown service", "POST", "/v1/services/nope/reals", `{"address":"10.0.1.3"}`, "service"),

		// PUT /v1/services/{name}/reals/{key}.
		invalid("PUT real: key without port", "PUT", "/v1/services/web/reals/10.0.1.1", `{"weight":3}`, "address"),
		invalid("PUT real: key not an address", "PUT", "/v1/services/web/reals/nope:80", `{"weight":3}`, "address"),
		invalid("PUT real: key port too large", "PUT", "/v1/services/web/reals/10.0.1.1:65536", `{"weight":3}`, "address"),
		invalid("PUT real: v6 key without brackets", "PUT", "/v1/services/v6/reals/2001:db8::20:443", `{"weight":3}`, "address"),
		invalid("PUT real: bad key before bad cas", "PUT", "/v1/services/web/reals/x?cas=x", `{"weight":3}`, "address"),
		invalid("PUT real: cas not a number", "PUT", "/v1/services/web/reals/10.0.1.1:80?cas=x", `{"weight":3}`, "cas"),
		invalid("PUT real: cas 0", "PUT", "/v1/services/web/reals/10.0.1.1:80?cas=0", `{"weight":3}`, "cas"),
		casMismatch("PUT real: stale cas", "PUT", "/v1/services/web/reals/10.0.1.1:80"+stale, `{"weight":3}`),
		invalid("PUT real: weight too large", "PUT", "/v1/services/web/reals/10.0.1.1:80", `{"weight":65536}`, "weight"),
		invalid("PUT real: weight as string", "PUT", "/v1/services/web/reals/10.0.1.1:80", `{"weight":"3"}`, "weight"),
		invalid("PUT real: state unknown", "PUT", "/v1/services/web/reals/10.0.1.1:80", `{"state":"off"}`, "state"),
		invalid("PUT real: address change", "PUT", "/v1/services/web/reals/10.0.1.1:80", `{"address":"10.0.1.9"}`, "address"),
		invalid("PUT real: port change", "PUT", "/v1/services/web/reals/10.0.1.1:80", `{"address":"10.0.1.1","port":81}`, "address"),
		invalid("PUT real: port change without address", "PUT", "/v1/services/web/reals/10.0.1.1:80", `{"port":8080,"weight":3}`, "address"),
		notFound("PUT real: unknown real", "PUT", "/v1/services/web/reals/10.0.1.9:80", `{"weight":3}`, "address"),
		notFound("PUT real: unknown service", "PUT", "/v1/services/nope/reals/10.0.1.1:80", `{"weight":3}`, "service"),

		// DELETE /v1/services/{name}/reals/{key}.
		invalid("DELETE real: bad key", "DELETE", "/v1/services/web/reals/10.0.1.1", "", "address"),
		invalid("DELETE real: cas not a number", "DELETE", "/v1/services/web/reals/10.0.1.1:80?cas=x", "", "cas"),
		casMismatch("DELETE real: stale cas", "DELETE", "/v1/services/web/reals/10.0.1.1:80"+stale, ""),
		notFound("DELETE real: unknown real", "DELETE", "/v1/services/web/reals/10.0.1.9:80", "", "address"),
		notFound("DELETE real: unknown service", "DELETE", "/v1/services/nope/reals/10.0.1.1:80", "", "service"),

		// POST /v1/vips.
		invalid("vip: interface as number", "POST", "/v1/vips", `{"address":"192.0.2.101/24","interface":1}`, "interface"),
		invalid("vip: address missing", "POST", "/v1/vips", `{"interface":"eth0"}`, "address"),
		invalid("vip: address not an IP", "POST", "/v1/vips", `{"address":"nope","interface":"eth0"}`, "address"),
		invalid("vip: prefix too long", "POST", "/v1/vips", `{"address":"192.0.2.101/33","interface":"eth0"}`, "address"),
		invalid("vip: loopback", "POST", "/v1/vips", `{"address":"127.0.0.2/8","interface":"lo"}`, "address"),
		invalid("vip: link-local", "POST", "/v1/vips", `{"address":"fe80::5/64","interface":"eth0"}`, "address"),
		invalid("vip: multicast", "POST", "/v1/vips", `{"address":"224.0.0.5/32","interface":"eth0"}`, "address"),
		invalid("vip: unspecified", "POST", "/v1/vips", `{"address":"0.0.0.0/0","interface":"eth0"}`, "address"),
		invalid("vip: interface missing", "POST", "/v1/vips", `{"address":"192.0.2.101/24"}`, "interface"),
		invalid("vip: interface too long", "POST", "/v1/vips", `{"address":"192.0.2.101/24","interface":"a-very-long-ifname"}`, "interface"),
		invalid("vip: interface with slash", "POST", "/v1/vips", `{"address":"192.0.2.101/24","interface":"eth/0"}`, "interface"),
		invalid("vip: bad group", "POST", "/v1/vips", `{"address":"192.0.2.101/24","interface":"eth0","group":"-g"}`, "group"),
		conflict("vip: duplicate, other prefix", "POST", "/v1/vips", `{"address":"192.0.2.100/32","interface":"eth1"}`, "address"),
		conflict("vip: duplicate, bare address", "POST", "/v1/vips", `{"address":"192.0.2.100","interface":"eth0"}`, "address"),

		// PUT and DELETE /v1/vips/{addr}.
		invalid("PUT vip: bad key", "PUT", "/v1/vips/nope", `{"address":"192.0.2.100/24","interface":"eth0"}`, "address"),
		invalid("PUT vip: key with prefix", "PUT", "/v1/vips/192.0.2.100%2F24", `{"address":"192.0.2.100/24","interface":"eth0"}`, "address"),
		invalid("PUT vip: address change", "PUT", "/v1/vips/192.0.2.100", `{"address":"192.0.2.102/24","interface":"eth0"}`, "address"),
		invalid("PUT vip: address missing", "PUT", "/v1/vips/192.0.2.100", `{"interface":"eth0"}`, "address"),
		invalid("PUT vip: interface bad", "PUT", "/v1/vips/192.0.2.100", `{"address":"192.0.2.100/24","interface":"e th0"}`, "interface"),
		invalid("PUT vip: cas not a number", "PUT", "/v1/vips/192.0.2.100?cas=x", `{"address":"192.0.2.100/24","interface":"eth0"}`, "cas"),
		casMismatch("PUT vip: stale cas", "PUT", "/v1/vips/192.0.2.100"+stale, `{"address":"192.0.2.100/24","interface":"eth1"}`),
		notFound("PUT vip: unknown", "PUT", "/v1/vips/192.0.2.99", `{"address":"192.0.2.99/24","interface":"eth0"}`, "address"),
		invalid("DELETE vip: bad key", "DELETE", "/v1/vips/192.0.2", "", "address"),
		invalid("DELETE vip: cas 0", "DELETE", "/v1/vips/192.0.2.100?cas=0", "", "cas"),
		casMismatch("DELETE vip: stale cas", "DELETE", "/v1/vips/192.0.2.100"+stale, ""),
		notFound("DELETE vip: unknown", "DELETE", "/v1/vips/192.0.2.99", "", "address"),

		// PUT /v1/settings.
		invalid("settings: timing profile unknown", "PUT", "/v1/settings", `{"timing_profile":"wan"}`, "timing_profile"),
		invalid("settings: timing profile as number", "PUT", "/v1/settings", `{"timing_profile":5}`, "timing_profile"),
		invalid("settings: tcp timeout negative", "PUT", "/v1/settings", `{"ipvs_timeouts":{"tcp":-1}}`, "ipvs_timeouts.tcp"),
		invalid("settings: tcpfin timeout too long", "PUT", "/v1/settings", fmt.Sprintf(`{"ipvs_timeouts":{"tcpfin":%d}}`, model.MaxTimeout+1), "ipvs_timeouts.tcpfin"),
		invalid("settings: udp timeout negative", "PUT", "/v1/settings", `{"ipvs_timeouts":{"udp":-5}}`, "ipvs_timeouts.udp"),
		invalid("settings: timeout as string", "PUT", "/v1/settings", `{"ipvs_timeouts":{"tcp":"900"}}`, "ipvs_timeouts.tcp"),
		invalid("settings: sync mode unknown", "PUT", "/v1/settings", `{"sync":{"mode":"all"}}`, "sync.mode"),
		invalid("settings: sync id too large", "PUT", "/v1/settings", `{"sync":{"sync_id":256}}`, "sync.sync_id"),
		invalid("settings: sync enabled without interface", "PUT", "/v1/settings", `{"sync":{"enabled":true}}`, "sync.interface"),
		invalid("settings: sync interface bad", "PUT", "/v1/settings", `{"sync":{"interface":"a/b"}}`, "sync.interface"),
		invalid("settings: mcast group unicast", "PUT", "/v1/settings", `{"sync":{"mcast_group":"10.0.0.1"}}`, "sync.mcast_group"),
		invalid("settings: mcast group empty", "PUT", "/v1/settings", `{"sync":{"mcast_group":""}}`, "sync.mcast_group"),
		invalid("settings: mcast port 0", "PUT", "/v1/settings", `{"sync":{"mcast_port":0}}`, "sync.mcast_port"),
		invalid("settings: mcast port too large", "PUT", "/v1/settings", `{"sync":{"mcast_port":65536}}`, "sync.mcast_port"),
		invalid("settings: mcast ttl 0", "PUT", "/v1/settings", `{"sync":{"mcast_ttl":0}}`, "sync.mcast_ttl"),
		invalid("settings: maxlen too small", "PUT", "/v1/settings", `{"sync":{"maxlen":100}}`, "sync.maxlen"),
		invalid("settings: enabled as string", "PUT", "/v1/settings", `{"sync":{"enabled":"yes"}}`, "sync.enabled"),
		invalid("settings: sync as array", "PUT", "/v1/settings", `{"sync":[]}`, "sync"),
		invalid("settings: cas not a number", "PUT", "/v1/settings?cas=x", sets, "cas"),
		invalid("settings: cas 0", "PUT", "/v1/settings?cas=0", sets, "cas"),
		casMismatch("settings: stale cas", "PUT", "/v1/settings"+stale, sets),

		// POST /v1/cluster/nodes.
		invalid("node: id missing", "POST", "/v1/cluster/nodes", `{"raft_addr":"127.0.0.1:9","api_addr":"127.0.0.1:10"}`, "id"),
		invalid("node: id with space", "POST", "/v1/cluster/nodes", `{"id":"a b","raft_addr":"127.0.0.1:9","api_addr":"127.0.0.1:10"}`, "id"),
		invalid("node: id as number", "POST", "/v1/cluster/nodes", `{"id":9,"raft_addr":"127.0.0.1:9","api_addr":"127.0.0.1:10"}`, "id"),
		invalid("node: raft_addr not host:port", "POST", "/v1/cluster/nodes", `{"id":"n9","raft_addr":"127.0.0.1","api_addr":"127.0.0.1:10"}`, "raft_addr"),
		invalid("node: api_addr missing", "POST", "/v1/cluster/nodes", `{"id":"n9","raft_addr":"127.0.0.1:9"}`, "api_addr"),
		invalid("node: api_scheme unknown", "POST", "/v1/cluster/nodes", `{"id":"n9","raft_addr":"127.0.0.1:9","api_addr":"127.0.0.1:10","api_scheme":"ftp"}`, "api_scheme"),

		// POST /v1/cluster/join.
		invalid("join: id missing", "POST", "/v1/cluster/join", `{"address":"127.0.0.1:1"}`, "id"),
		invalid("join: id bad", "POST", "/v1/cluster/join", `{"id":"-x","address":"127.0.0.1:1"}`, "id"),
		invalid("join: address missing", "POST", "/v1/cluster/join", `{"id":"n2"}`, "address"),
		invalid("join: address without port", "POST", "/v1/cluster/join", `{"id":"n2","address":"127.0.0.1"}`, "address"),
		invalid("join: address without host", "POST", "/v1/cluster/join", `{"id":"n2","address":":7481"}`, "address"),
		invalid("join: port 0", "POST", "/v1/cluster/join", `{"id":"n2","address":"127.0.0.1:0"}`, "address"),
		invalid("join: port too large", "POST", "/v1/cluster/join", `{"id":"n2","address":"127.0.0.1:65536"}`, "address"),
		invalid("join: unspecified v4", "POST", "/v1/cluster/join", `{"id":"n2","address":"0.0.0.0:7481"}`, "address"),
		invalid("join: unspecified v6", "POST", "/v1/cluster/join", `{"id":"n2","address":"[::]:7481"}`, "address"),
		invalid("join: api_addr bad", "POST", "/v1/cluster/join", `{"id":"n2","address":"127.0.0.1:2","api_addr":"nope"}`, "api_addr"),
		invalid("join: api_scheme bad", "POST", "/v1/cluster/join", `{"id":"n2","address":"127.0.0.1:2","api_addr":"127.0.0.1:3","api_scheme":"gopher"}`, "api_scheme"),
		conflict("join: own id at another address", "POST", "/v1/cluster/join", `{"id":"n1","address":"127.0.0.1:1","api_addr":"127.0.0.1:3"}`, "id"),
		conflict("join: own address under another id", "POST", "/v1/cluster/join", fmt.Sprintf(`{"id":"n2","address":%q,"api_addr":"127.0.0.1:3"}`, nodeAddr), "id"),

		// POST /v1/cluster/remove and transfer-leadership.
		invalid("remove: id missing", "POST", "/v1/cluster/remove", `{}`, "id"),
		invalid("remove: id bad", "POST", "/v1/cluster/remove", `{"id":"a b"}`, "id"),
		notFound("remove: unknown id", "POST", "/v1/cluster/remove", `{"id":"nobody"}`, "id"),
		invalid("transfer: id bad", "POST", "/v1/cluster/transfer-leadership", `{"id":"-x"}`, "id"),
		notFound("transfer: unknown id", "POST", "/v1/cluster/transfer-leadership", `{"id":"nobody"}`, "id"),

		// Reads that fail.
		notFound("GET service: unknown", "GET", "/v1/services/nope", "", "name"),
		notFound("GET reals: unknown service", "GET", "/v1/services/nope/reals", "", "service"),
		invalid("GET real: bad key", "GET", "/v1/services/web/reals/10.0.1.1", "", "address"),
		notFound("GET real: unknown real", "GET", "/v1/services/web/reals/10.0.1.9:80", "", "address"),
		notFound("GET real: unknown service", "GET", "/v1/services/nope/reals/10.0.1.1:80", "", "service"),
		invalid("GET vip: bad key", "GET", "/v1/vips/nope", "", "address"),
		notFound("GET vip: unknown", "GET", "/v1/vips/192.0.2.99", "", "address"),

		// Methods.
		method("PATCH", "/v1/services", "GET, POST"),
		method("DELETE", "/v1/services", "GET, POST"),
		method("POST", "/v1/services/web", "DELETE, GET, PUT"),
		method("PUT", "/v1/services/web/reals", "GET, POST"),
		method("POST", "/v1/services/web/reals/10.0.1.1:80", "DELETE, GET, PUT"),
		method("PUT", "/v1/vips", "GET, POST"),
		method("POST", "/v1/vips/192.0.2.100", "DELETE, GET, PUT"),
		method("DELETE", "/v1/settings", "GET, PUT"),
		method("POST", "/v1/status", "GET"),
		method("DELETE", "/v1/cluster/peers", "GET"),
		method("PUT", "/v1/cluster/nodes", "GET, POST"),
		method("GET", "/v1/cluster/join", "POST"),
		method("PUT", "/v1/cluster/remove", "POST"),
		method("GET", "/v1/cluster/transfer-leadership", "POST"),
		method("POST", "/healthz", "GET"),
		method("DELETE", "/readyz", "GET"),

		// Paths.
		notFound("unknown path", "GET", "/v1/nope", "", ""),
		notFound("unknown path, POST", "POST", "/v1/nope", `{}`, ""),
		notFound("unknown version", "GET", "/v2/services", "", ""),
		notFound("root", "GET", "/", "", ""),
		notFound("too deep", "GET", "/v1/services/web/reals/10.0.1.1:80/extra", "", ""),
		notFound("trailing slash", "POST", "/v1/services/web/reals/", `{"address":"10.0.1.3"}`, ""),
	)
	return cs
}

// TestWriteErrors sends every refused request of the table to a real
// one-node cluster and checks the JSON error and that nothing changed.
func TestWriteErrors(t *testing.T) {
	t.Parallel()
	fx := newFixture(t)
	cases := errorCases(fx.node.Addr())
	names := map[string]bool{}
	for _, c := range cases {
		if names[c.name] {
			t.Fatalf("duplicate case name %q", c.name)
		}
		names[c.name] = true
		t.Run(c.name, func(t *testing.T) {
			before := snapshotState(t, fx.fsm, fx.node)
			base := fx.srv
			if c.small {
				base = fx.small
			}
			r := call(t, c.method, base+c.path, c.body, c.hdr...)
			e := checkError(t, r, c.status, c.code, c.field)
			if got := r.header.Get(wire.HeaderIndex); got != "" && c.method != "GET" {
				t.Errorf("a refused write carries %s %q", wire.HeaderIndex, got)
			}
			if c.status == http.StatusMethodNotAllowed {
				if got := r.header.Get("Allow"); got != c.allow {
					t.Errorf("Allow %q, want %q", got, c.allow)
				}
				if !strings.Contains(e.Message, c.method) {
					t.Errorf("405 message %q does not name the method", e.Message)
				}
			}
			checkUnchanged(t, before, fx.fsm, fx.node)
		})
	}
	if len(cases) < 150 {
		t.Errorf("only %d cases", len(cases))
	}
}

// TestBodyLimitBoundary: a body of exactly MaxBody bytes is read, one more
// byte is refused.
func TestBodyLimitBoundary(t *testing.T) {
	t.Parallel()
	fx := newFixture(t)
	body := `{"name":"edge","protocol":"tcp","address":"192.0.2.40","port":80}`
	pad := func(n int) string { return body + strings.Repeat(" ", n-len(body)) }

	before := snapshotState(t, fx.fsm, fx.node)
	checkError(t, call(t, "POST", fx.small+"/v1/services", pad(smallBody+1)), http.StatusRequestEntityTooLarge, wire.CodeTooLarge, "")
	checkUnchanged(t, before, fx.fsm, fx.node)

	w := checkWrite(t, call(t, "POST", fx.small+"/v1/services", pad(smallBody)), http.StatusCreated)
	if w.Service == nil || w.Service.Name != "edge" {
		t.Fatalf("created %+v", w)
	}
}
