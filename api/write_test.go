package api_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/raftlb/raftlb/api"
	"github.com/raftlb/raftlb/fsm"
	"github.com/raftlb/raftlb/model"
)

func getService(t *testing.T, base, name string) (model.Service, uint64) {
	t.Helper()
	var s model.Service
	idx := checkRead(t, call(t, "GET", base+"/v1/services/"+name, ""), &s)
	return s, idx
}

func TestServiceLifecycle(t *testing.T) {
	t.Parallel()
	f, n := startNode(t, "n1")
	base := serve(t, api.Config{FSM: f, Raft: n}).URL

	// Create: protocol lower-cased, IPv6 canonical, family set, defaults
	// filled in, real ports following the service's.
	w := checkWrite(t, call(t, "POST", base+"/v1/services",
		`{"name":"web6","protocol":"TCP","address":"2001:DB8:0:0::1","port":443,"sched_flags":[],
		  "reals":[{"address":"2001:db8:0::3","weight":0,"state":"drain"},{"address":"2001:DB8::2"},{"address":"2001:db8::4","port":8443,"forward":"nat"}]}`,
		"Content-Type", "application/json; charset=utf-8"), http.StatusCreated)
	if w.Real != nil || w.VIP != nil || w.Settings != nil || w.Node != nil {
		t.Errorf("create answered with more than the service: %+v", w)
	}
	got := w.Service
	if got == nil {
		t.Fatal("no service in the answer")
	}
	want := model.Service{
		ServiceSpec: model.ServiceSpec{Name: "web6", Protocol: "tcp", Address: "2001:db8::1", Port: 443, Family: "inet6",
			Scheduler: "wlc", Forward: "nat"},
		Reals: []model.RealServer{
			{Address: "2001:db8::2", Port: 443, Weight: 1, State: "enabled"},
			{Address: "2001:db8::3", Port: 443, Weight: 0, State: "drain"},
			{Address: "2001:db8::4", Port: 8443, Weight: 1, Forward: "nat", State: "enabled"},
		},
		CreateIndex: w.Index, ModifyIndex: w.Index,
	}
	for i := range want.Reals {
		want.Reals[i].CreateIndex, want.Reals[i].ModifyIndex = w.Index, w.Index
	}
	if !reflect.DeepEqual(*got, want) {
		t.Fatalf("created\n%+v\nwant\n%+v", *got, want)
	}
	if f.Index() < w.Index {
		t.Errorf("FSM index %d below the write's %d", f.Index(), w.Index)
	}

	// GET returns the same object, at an index covering the write.
	s, idx := getService(t, base, "web6")
	if !reflect.DeepEqual(s, want) {
		t.Fatalf("GET\n%+v\nwant\n%+v", s, want)
	}
	if idx < w.Index {
		t.Errorf("GET index %d below the write's %d", idx, w.Index)
	}
	var list []model.Service
	checkRead(t, call(t, "GET", base+"/v1/services", ""), &list)
	if len(list) != 1 || !reflect.DeepEqual(list[0], want) {
		t.Fatalf("list %+v", list)
	}
	var reals []model.RealServer
	checkRead(t, call(t, "GET", base+"/v1/services/web6/reals", ""), &reals)
	if !reflect.DeepEqual(reals, want.Reals) {
		t.Fatalf("reals %+v", reals)
	}

	// The raw GET body sent back as is: PUT refuses reals (they are
	// changed through /reals), and nothing changes.
	raw := call(t, "GET", base+"/v1/services/web6", "")
	before := snapshotState(t, f, n)
	checkError(t, call(t, "PUT", base+"/v1/services/web6?cas="+strconv.FormatUint(s.ModifyIndex, 10), string(raw.body)),
		http.StatusBadRequest, model.CodeInvalid, "reals")
	checkUnchanged(t, before, f, n)

	// GET → modify → PUT with the indexes and without reals, under CAS.
	var m map[string]any
	if err := json.Unmarshal(raw.body, &m); err != nil {
		t.Fatal(err)
	}
	delete(m, "reals")
	m["scheduler"] = "sh"
	m["sched_flags"] = []string{"sh-port", "sh-fallback", "sh-port"}
	m["persistence"] = 300
	m["persist_netmask"] = 128 // the whole address: canonically 0
	cas := s.ModifyIndex
	u := base + "/v1/services/web6?cas=" + strconv.FormatUint(cas, 10)
	w2 := checkWrite(t, call(t, "PUT", u, mustJSON(t, m)), http.StatusOK)
	if w2.Index <= cas {
		t.Errorf("update index %d not above %d", w2.Index, cas)
	}
	want.Scheduler, want.SchedFlags, want.Persistence, want.PersistNetmask = "sh", []string{"sh-fallback", "sh-port"}, 300, 0
	want.ModifyIndex = w2.Index
	if w2.Service == nil || !reflect.DeepEqual(*w2.Service, want) {
		t.Fatalf("updated\n%+v\nwant\n%+v", w2.Service, want)
	}
	if s, _ := getService(t, base, "web6"); !reflect.DeepEqual(s, want) {
		t.Fatalf("GET after update\n%+v\nwant\n%+v", s, want)
	}

	// The same CAS again is stale.
	before = snapshotState(t, f, n)
	e := checkError(t, call(t, "PUT", u, mustJSON(t, m)), http.StatusConflict, model.CodeCASMismatch, "cas")
	if !strings.Contains(e.Message, strconv.FormatUint(w2.Index, 10)) {
		t.Errorf("cas_mismatch message %q does not give the current modify_index %d", e.Message, w2.Index)
	}
	checkUnchanged(t, before, f, n)

	// An unconditional PUT without the name takes it from the path.
	w3 := checkWrite(t, call(t, "PUT", base+"/v1/services/web6",
		`{"protocol":"udp","address":"2001:db8::1","port":443,"sched_flags":["ops"],"scheduler":"rr"}`), http.StatusOK)
	if w3.Service == nil || w3.Service.Name != "web6" || w3.Service.Protocol != "udp" || len(w3.Service.Reals) != 3 ||
		w3.Service.CreateIndex != w.Index || w3.Service.ModifyIndex != w3.Index {
		t.Fatalf("name-less PUT: %+v", w3.Service)
	}

	// A fwmark service gets its family; the same mark in the other family
	// is another key.
	fw := checkWrite(t, call(t, "POST", base+"/v1/services", `{"name":"fw","fwmark":7}`), http.StatusCreated)
	if fw.Service == nil || fw.Service.Family != "inet" || fw.Service.Key() != "fwmark/inet/7" || fw.Service.Reals == nil {
		t.Fatalf("fwmark service %+v", fw.Service)
	}
	fw6 := checkWrite(t, call(t, "POST", base+"/v1/services", `{"name":"fw6","fwmark":7,"family":"inet6","reals":[{"address":"10.0.0.1","forward":"tun"}]}`), http.StatusCreated)
	if fw6.Service == nil || fw6.Service.Key() != "fwmark/inet6/7" || fw6.Service.Reals[0].Port != 0 {
		t.Fatalf("fwmark inet6 service %+v", fw6.Service)
	}

	// DELETE: a stale CAS is refused, the current one deletes.
	cur, _ := getService(t, base, "web6")
	before = snapshotState(t, f, n)
	checkError(t, call(t, "DELETE", base+"/v1/services/web6?cas="+strconv.FormatUint(cas, 10), ""), http.StatusConflict, model.CodeCASMismatch, "cas")
	checkUnchanged(t, before, f, n)
	d := checkWrite(t, call(t, "DELETE", base+"/v1/services/web6?cas="+strconv.FormatUint(cur.ModifyIndex, 10), ""), http.StatusOK)
	if d.Service != nil || d.Real != nil || d.Index <= cur.ModifyIndex {
		t.Errorf("delete answered %+v", d)
	}
	checkError(t, call(t, "GET", base+"/v1/services/web6", ""), http.StatusNotFound, model.CodeNotFound, "name")
	checkError(t, call(t, "GET", base+"/v1/services/web6/reals", ""), http.StatusNotFound, model.CodeNotFound, "service")
	// Deleting frees the name and the key.
	checkWrite(t, call(t, "POST", base+"/v1/services", `{"name":"web6","protocol":"tcp","address":"2001:db8::1","port":443}`), http.StatusCreated)
	checkWrite(t, call(t, "DELETE", base+"/v1/services/web6", ""), http.StatusOK)
	checkWrite(t, call(t, "POST", base+"/v1/services", `{"name":"other","protocol":"tcp","address":"2001:db8::1","port":443}`), http.StatusCreated)

	// The media type is case-insensitive and may carry parameters.
	checkWrite(t, call(t, "POST", base+"/v1/services", `{"name":"ct","protocol":"sctp","address":"192.0.2.9","port":9}`,
		"Content-Type", "Application/JSON ; charset=UTF-8"), http.StatusCreated)
	// A body-less DELETE needs no Content-Type.
	checkWrite(t, call(t, "DELETE", base+"/v1/services/ct", "", "Content-Type", noCT), http.StatusOK)
	// Trailing white space after the object is fine.
	checkWrite(t, call(t, "POST", base+"/v1/services", "{\"name\":\"ws\",\"protocol\":\"tcp\",\"address\":\"192.0.2.9\",\"port\":9}\n\n"), http.StatusCreated)
}

func TestRealLifecycle(t *testing.T) {
	t.Parallel()
	f, n := startNode(t, "n1")
	base := serve(t, api.Config{FSM: f, Raft: n}).URL
	checkWrite(t, call(t, "POST", base+"/v1/services", `{"name":"web","protocol":"tcp","address":"192.0.2.10","port":80,"forward":"dr"}`), http.StatusCreated)
	checkWrite(t, call(t, "POST", base+"/v1/services", `{"name":"v6","protocol":"tcp","address":"2001:db8::10","port":443}`), http.StatusCreated)

	// Create: port 0 becomes the service's, defaults filled in.
	w := checkWrite(t, call(t, "POST", base+"/v1/services/web/reals", `{"address":"10.0.1.3"}`), http.StatusCreated)
	want := model.RealServer{Address: "10.0.1.3", Port: 80, Weight: 1, State: "enabled", CreateIndex: w.Index, ModifyIndex: w.Index}
	if w.Service != nil || w.Real == nil || !reflect.DeepEqual(*w.Real, want) {
		t.Fatalf("created %+v, want %+v", w, want)
	}
	var r model.RealServer
	checkRead(t, call(t, "GET", base+"/v1/services/web/reals/10.0.1.3:80", ""), &r)
	if !reflect.DeepEqual(r, want) {
		t.Fatalf("GET %+v, want %+v", r, want)
	}
	// The service's own view shows it too.
	if s, _ := getService(t, base, "web"); len(s.Reals) != 1 || !reflect.DeepEqual(s.Reals[0], want) {
		t.Fatalf("service reals %+v", s.Reals)
	}

	// Read-modify-write under CAS; the indexes in the body are ignored.
	r.Weight, r.State, r.UpperThreshold = 5, "drain", 100
	u := base + "/v1/services/web/reals/10.0.1.3:80?cas=" + strconv.FormatUint(r.ModifyIndex, 10)
	w2 := checkWrite(t, call(t, "PUT", u, mustJSON(t, r)), http.StatusOK)
	want.Weight, want.State, want.UpperThreshold, want.ModifyIndex = 5, "drain", 100, w2.Index
	if w2.Real == nil || !reflect.DeepEqual(*w2.Real, want) {
		t.Fatalf("updated %+v, want %+v", w2.Real, want)
	}
	before := snapshotState(t, f, n)
	checkError(t, call(t, "PUT", u, mustJSON(t, r)), http.StatusConflict, model.CodeCASMismatch, "cas")
	checkUnchanged(t, before, f, n)

	// PUT replaces: absent fields take their defaults; the address comes
	// from the path when the body has none.
	w3 := checkWrite(t, call(t, "PUT", base+"/v1/services/web/reals/10.0.1.3:80", `{"weight":7}`), http.StatusOK)
	want = model.RealServer{Address: "10.0.1.3", Port: 80, Weight: 7, State: "enabled", CreateIndex: w.Index, ModifyIndex: w3.Index}
	if w3.Real == nil || !reflect.DeepEqual(*w3.Real, want) {
		t.Fatalf("PUT without address %+v, want %+v", w3.Real, want)
	}

	// IPv6 keys: canonicalised, with or without percent-encoded brackets.
	w4 := checkWrite(t, call(t, "POST", base+"/v1/services/v6/reals", `{"address":"2001:DB8:0::20","port":8443}`), http.StatusCreated)
	if w4.Real == nil || w4.Real.Address != "2001:db8::20" || w4.Real.Port != 8443 {
		t.Fatalf("v6 real %+v", w4.Real)
	}
	for _, key := range []string{"[2001:db8::20]:8443", url.PathEscape("[2001:db8::20]:8443"), "[2001:DB8:0:0::20]:8443"} {
		var got model.RealServer
		checkRead(t, call(t, "GET", base+"/v1/services/v6/reals/"+key, ""), &got)
		if got != *w4.Real {
			t.Errorf("GET %s: %+v, want %+v", key, got, *w4.Real)
		}
	}
	w5 := checkWrite(t, call(t, "PUT", base+"/v1/services/v6/reals/[2001:DB8::20]:8443", `{"weight":3}`), http.StatusOK)
	if w5.Real == nil || w5.Real.Weight != 3 || w5.Real.Address != "2001:db8::20" {
		t.Fatalf("PUT v6 %+v", w5.Real)
	}

	// DELETE under CAS.
	before = snapshotState(t, f, n)
	checkError(t, call(t, "DELETE", base+"/v1/services/web/reals/10.0.1.3:80?cas="+strconv.FormatUint(w2.Index, 10), ""),
		http.StatusConflict, model.CodeCASMismatch, "cas")
	checkUnchanged(t, before, f, n)
	d := checkWrite(t, call(t, "DELETE", base+"/v1/services/web/reals/10.0.1.3:80?cas="+strconv.FormatUint(w3.Index, 10), ""), http.StatusOK)
	if d.Real != nil || d.Service != nil {
		t.Errorf("delete answered %+v", d)
	}
	checkError(t, call(t, "GET", base+"/v1/services/web/reals/10.0.1.3:80", ""), http.StatusNotFound, model.CodeNotFound, "address")
	checkWrite(t, call(t, "DELETE", base+"/v1/services/v6/reals/%5B2001:db8::20%5D:8443", ""), http.StatusOK)
	if s, _ := getService(t, base, "v6"); len(s.Reals) != 0 || s.Reals == nil {
		t.Fatalf("reals left: %#v", s.Reals)
	}
}

func TestVIPLifecycle(t *testing.T) {
	t.Parallel()
	f, n := startNode(t, "n1")
	base := serve(t, api.Config{FSM: f, Raft: n}).URL

	// A bare address gets its full prefix length and the default group.
	w := checkWrite(t, call(t, "POST", base+"/v1/vips", `{"address":"192.0.2.50","interface":"eth0"}`), http.StatusCreated)
	want := model.VIP{Address: "192.0.2.50/32", Interface: "eth0", Group: "default", CreateIndex: w.Index, ModifyIndex: w.Index}
	if w.VIP == nil || *w.VIP != want || w.Service != nil {
		t.Fatalf("created %+v, want %+v", w, want)
	}
	var v model.VIP
	checkRead(t, call(t, "GET", base+"/v1/vips/192.0.2.50", ""), &v)
	if v != want {
		t.Fatalf("GET %+v", v)
	}
	w6 := checkWrite(t, call(t, "POST", base+"/v1/vips", `{"address":"2001:DB8::50/64","interface":"bond0.100","group":"edge"}`), http.StatusCreated)
	if w6.VIP == nil || w6.VIP.Address != "2001:db8::50/64" || w6.VIP.Group != "edge" {
		t.Fatalf("v6 VIP %+v", w6.VIP)
	}
	var list []model.VIP
	checkRead(t, call(t, "GET", base+"/v1/vips", ""), &list)
	if len(list) != 2 {
		t.Fatalf("list %+v", list)
	}

	// GET → modify → PUT under CAS: prefix length, interface and group
	// may change.
	v.Address, v.Interface, v.Group = "192.0.2.50/24", "eth1", "g2"
	u := base + "/v1/vips/192.0.2.50?cas=" + strconv.FormatUint(v.ModifyIndex, 10)
	w2 := checkWrite(t, call(t, "PUT", u, mustJSON(t, v)), http.StatusOK)
	want = model.VIP{Address: "192.0.2.50/24", Interface: "eth1", Group: "g2", CreateIndex: w.Index, ModifyIndex: w2.Index}
	if w2.VIP == nil || *w2.VIP != want {
		t.Fatalf("updated %+v, want %+v", w2.VIP, want)
	}
	before := snapshotState(t, f, n)
	checkError(t, call(t, "PUT", u, mustJSON(t, v)), http.StatusConflict, model.CodeCASMismatch, "cas")
	checkUnchanged(t, before, f, n)
	checkRead(t, call(t, "GET", base+"/v1/vips/192.0.2.50", ""), &v)
	if v != want {
		t.Fatalf("GET after update %+v", v)
	}

	// IPv6 keys in the path are canonicalised.
	checkRead(t, call(t, "GET", base+"/v1/vips/2001:DB8:0::50", ""), &v)
	if v != *w6.VIP {
		t.Fatalf("GET v6 %+v", v)
	}
	checkWrite(t, call(t, "DELETE", base+"/v1/vips/2001:db8:0:0::50", ""), http.StatusOK)
	d := checkWrite(t, call(t, "DELETE", base+"/v1/vips/192.0.2.50?cas="+strconv.FormatUint(w2.Index, 10), ""), http.StatusOK)
	if d.VIP != nil {
		t.Errorf("delete answered %+v", d)
	}
	checkRead(t, call(t, "GET", base+"/v1/vips", ""), &list)
	if len(list) != 0 || list == nil {
		t.Fatalf("VIPs left: %#v", list)
	}
}

func TestSettingsLifecycle(t *testing.T) {
	t.Parallel()
	f, n := startNode(t, "n1")
	base := serve(t, api.Config{FSM: f, Raft: n}).URL

	var s model.Settings
	checkRead(t, call(t, "GET", base+"/v1/settings", ""), &s)
	if !reflect.DeepEqual(s, model.DefaultSettings()) {
		t.Fatalf("initial settings %+v", s)
	}

	// Absent fields take their defaults, also inside nested objects; the
	// multicast group is canonicalised.
	w := checkWrite(t, call(t, "PUT", base+"/v1/settings",
		`{"timing_profile":"fast","ipvs_timeouts":{"tcp":900},"sync":{"enabled":true,"interface":"eth1","mcast_group":"FF02:0::0:12"}}`), http.StatusOK)
	want := model.DefaultSettings()
	want.TimingProfile, want.Timeouts.TCP = "fast", 900
	want.Sync.Enabled, want.Sync.Interface, want.Sync.McastGroup = true, "eth1", "ff02::12"
	want.ModifyIndex = w.Index
	if w.Settings == nil || !reflect.DeepEqual(*w.Settings, want) {
		t.Fatalf("updated %+v, want %+v", w.Settings, want)
	}
	checkRead(t, call(t, "GET", base+"/v1/settings", ""), &s)
	if !reflect.DeepEqual(s, want) {
		t.Fatalf("GET %+v, want %+v", s, want)
	}

	// GET → modify → PUT under CAS, then the same CAS again.
	s.Sync.Mode, s.Timeouts.UDP = "leader", 60
	u := base + "/v1/settings?cas=" + strconv.FormatUint(s.ModifyIndex, 10)
	w2 := checkWrite(t, call(t, "PUT", u, mustJSON(t, s)), http.StatusOK)
	want.Sync.Mode, want.Timeouts.UDP, want.ModifyIndex = "leader", 60, w2.Index
	if w2.Settings == nil || !reflect.DeepEqual(*w2.Settings, want) {
		t.Fatalf("updated %+v, want %+v", w2.Settings, want)
	}
	before := snapshotState(t, f, n)
	checkError(t, call(t, "PUT", u, mustJSON(t, s)), http.StatusConflict, model.CodeCASMismatch, "cas")
	checkUnchanged(t, before, f, n)

	// An empty object resets everything to the defaults.
	w3 := checkWrite(t, call(t, "PUT", base+"/v1/settings", `{}`), http.StatusOK)
	want = model.DefaultSettings()
	want.ModifyIndex = w3.Index
	if w3.Settings == nil || !reflect.DeepEqual(*w3.Settings, want) {
		t.Fatalf("reset %+v, want %+v", w3.Settings, want)
	}
}

// TestPlainRealUpdateEncodesAsVersion1: a real server update that changes
// only v1 fields is written in encoding version 1, also when the body is the
// real server as read back, with the cluster's health decision and its
// indexes (a read-modify-write): those are not the writer's, and carrying
// them made every such update a version-2 entry that a director of an older
// release cannot apply.
func TestPlainRealUpdateEncodesAsVersion1(t *testing.T) {
	fr := newFake("L")
	fr.leader = true
	base := serve(t, api.Config{FSM: fr.fsm, Raft: fr}).URL
	checkWrite(t, call(t, "POST", base+"/v1/services", `{"name":"web","protocol":"tcp","address":"192.0.2.10","port":80,
		"check":{"type":"tcp"},"reals":[{"address":"10.0.0.1","weight":1}]}`), http.StatusCreated)
	fr.applyLocal(t, &fsm.SetHealth{Changes: []fsm.HealthChange{{Service: "web", Key: "10.0.0.1:80", Up: false, Reason: "down"}}})
	var r model.RealServer
	checkRead(t, call(t, "GET", base+"/v1/services/web/reals/10.0.0.1:80", ""), &r)
	if r.Health == nil {
		t.Fatal("no decision to echo")
	}
	r.Weight = 5
	body, _ := json.Marshal(r)
	w := checkWrite(t, call(t, "PUT", base+"/v1/services/web/reals/10.0.0.1:80", string(body)), http.StatusOK)
	if e := fr.lastEntry(); len(e) < 2 || e[1]&0x3f != 1 {
		t.Fatalf("a weight update was written as encoding version %d: %s", e[1]&0x3f, e)
	}
	if w.Real == nil || w.Real.Weight != 5 || w.Real.Health == nil || w.Real.Health.Up {
		t.Fatalf("the update lost the cluster's decision: %+v", w.Real)
	}
}
