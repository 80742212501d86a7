package fsm

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/raftlb/raftlb/model"
)

// memSink is an in-memory raft.SnapshotSink.
type memSink struct {
	bytes.Buffer
	cancelled bool
}

func (m *memSink) ID() string    { return "mem" }
func (m *memSink) Cancel() error { m.cancelled = true; return nil }
func (m *memSink) Close() error  { return nil }

func applyCmd(t testing.TB, f *FSM, idx uint64, c Command) *Result {
	t.Helper()
	b, err := Encode(c)
	if err != nil {
		t.Fatalf("encode %T: %v", c, err)
	}
	return f.Apply(&raft.Log{Index: idx, Type: raft.LogCommand, Data: b}).(*Result)
}

func snapshotBytes(t testing.TB, f *FSM) []byte {
	t.Helper()
	s, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var sink memSink
	if err := s.Persist(&sink); err != nil {
		t.Fatal(err)
	}
	s.Release()
	return sink.Bytes()
}

// withoutIndex returns d with the applied index zeroed, for comparing states
// across commands.
func withoutIndex(d Dump) Dump { d.Index = 0; return d }

// cmdGen makes random commands over small pools of names and addresses so
// that sequences hit duplicates, conflicts, CAS races and invalid input.
type cmdGen struct {
	r *rand.Rand
	f *FSM // read to pick CAS values that are sometimes right
}

func (g *cmdGen) pick(xs ...string) string { return xs[g.r.IntN(len(xs))] }

// field returns one of good, or now and then one of bad.
func (g *cmdGen) field(good, bad []string) string {
	if len(bad) > 0 && g.r.IntN(12) == 0 {
		return g.pick(bad...)
	}
	return g.pick(good...)
}

func (g *cmdGen) num(good, bad []int) int {
	if len(bad) > 0 && g.r.IntN(12) == 0 {
		return bad[g.r.IntN(len(bad))]
	}
	return good[g.r.IntN(len(good))]
}

func (g *cmdGen) name() string {
	return g.field([]string{"web", "dns", "api", "mail"}, []string{"bad name", ""})
}

func (g *cmdGen) realAddr() string {
	return g.field([]string{"10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"}, []string{"2001:db8::1", "not-an-ip", "0.0.0.0", "224.0.0.1"})
}

func (g *cmdGen) cas(have uint64) uint64 {
	switch g.r.IntN(4) {
	case 0:
		return have + 1
	case 1:
		return have
	}
	return 0
}

func (g *cmdGen) spec(name string) model.ServiceSpec {
	s := model.NewServiceSpec()
	s.Name = name
	if g.r.IntN(8) == 0 {
		s.Fwmark = uint32(g.num([]int{1, 2}, []int{0}))
		s.Family = g.field([]string{"", "inet"}, []string{"inet6", "ipx"})
	} else {
		s.Protocol = g.field([]string{"tcp", "udp", "TCP"}, []string{"icmp", ""})
		s.Address = g.field([]string{"192.0.2.1", "192.0.2.2", "192.0.2.3"}, []string{"2001:db8::10", "bogus"})
		s.Port = g.num([]int{80, 443}, []int{0, 70000})
	}
	s.Scheduler = g.field([]string{"rr", "wrr", "wlc", "sh", ""}, []string{"nope"})
	if g.r.IntN(6) == 0 {
		s.SchedFlags = []string{g.field([]string{"sh-port"}, []string{"mh-port", "ops", "zzz"})}
		s.Scheduler = "sh"
	}
	if g.r.IntN(4) == 0 {
		s.Persistence = g.num([]int{300, 60}, []int{-1})
		s.PersistNetmask = g.num([]int{0, 24}, []int{200})
	}
	s.Forward = g.field([]string{"nat", "", "nat", "dr"}, []string{"tun", "bridge"})
	if g.r.IntN(3) == 0 {
		s.Check = &model.Check{Type: g.field([]string{"tcp", "http"}, []string{"smtp"}), StartDown: g.r.IntN(2) == 0}
		s.HealthPolicy = g.field([]string{"", "majority", "any", "all"}, []string{"most"})
		s.InhibitOnFailure = g.r.IntN(2) == 0
		s.Quorum = g.num([]int{0, 1, 2, 6}, []int{-1})
		s.Hysteresis = g.num([]int{0, 1}, []int{9})
		if g.r.IntN(2) == 0 {
			s.SorryServer = &model.SorryServer{Address: g.field([]string{"192.0.2.250", "192.0.2.251"}, []string{"nope"})}
		}
	}
	return s
}

func (g *cmdGen) real() model.RealServer {
	r := model.NewRealServer()
	r.Address = g.realAddr()
	r.Port = g.num([]int{0, 0, 8080}, []int{-1})
	r.Weight = g.num([]int{0, 1, 5, 65535}, []int{65536, -3})
	r.Forward = g.field([]string{"", "", "nat"}, []string{"dr", "tun", "x"})
	r.State = g.field([]string{"", "enabled", "drain", "disabled"}, []string{"off"})
	if g.r.IntN(5) == 0 {
		r.UpperThreshold, r.LowerThreshold = 10+g.r.IntN(10), g.r.IntN(12)
	}
	return r
}

func (g *cmdGen) existingReal(svc string) string {
	if s, ok := g.f.Service(svc); ok && len(s.Reals) > 0 && g.r.IntN(4) != 0 {
		return s.Reals[g.r.IntN(len(s.Reals))].Key()
	}
	return model.RealKey(g.realAddr(), 80)
}

func (g *cmdGen) next() Command {
	switch g.r.IntN(13) {
	case 0, 1:
		c := &CreateService{Service: g.spec(g.name())}
		for range g.r.IntN(3) {
			c.Reals = append(c.Reals, g.real())
		}
		return c
	case 2:
		n := g.name()
		s, _ := g.f.Service(n)
		return &UpdateService{Name: n, Spec: g.spec(n), CAS: g.cas(s.ModifyIndex)}
	case 3:
		n := g.name()
		s, _ := g.f.Service(n)
		return &DeleteService{Name: n, CAS: g.cas(s.ModifyIndex)}
	case 4, 5:
		return &CreateReal{Service: g.name(), Real: g.real()}
	case 6:
		n := g.name()
		k := g.existingReal(n)
		s, _ := g.f.Service(n)
		old, _ := s.Real(k)
		r := g.real()
		if g.r.IntN(2) == 0 {
			r.Address, r.Port = old.Address, old.Port
		}
		return &UpdateReal{Service: n, Key: k, Real: r, CAS: g.cas(old.ModifyIndex)}
	case 7:
		n := g.name()
		k := g.existingReal(n)
		s, _ := g.f.Service(n)
		old, _ := s.Real(k)
		return &DeleteReal{Service: n, Key: k, CAS: g.cas(old.ModifyIndex)}
	case 8:
		v := model.NewVIP()
		v.Address = g.field([]string{"192.0.2.100/24", "192.0.2.101", "2001:db8::100/64", "192.0.2.100/32"}, []string{"127.0.0.1/8", "x/33"})
		v.Interface = g.field([]string{"eth0", "bond0.100"}, []string{"", "waytoolonginterfacename"})
		v.Group = g.field([]string{"", "default", "g1"}, []string{"bad group"})
		return &CreateVIP{VIP: v}
	case 9:
		k := g.pick("192.0.2.100", "192.0.2.101", "2001:db8::100")
		old, _ := g.f.VIP(k)
		if g.r.IntN(2) == 0 {
			v := old
			v.Interface = g.field([]string{"eth1", "eth0"}, []string{""})
			return &UpdateVIP{Key: k, VIP: v, CAS: g.cas(old.ModifyIndex)}
		}
		return &DeleteVIP{Key: k, CAS: g.cas(old.ModifyIndex)}
	case 10:
		s := g.f.Settings()
		s.TimingProfile = g.field([]string{"lan", "fast", ""}, []string{"slow"})
		s.Timeouts.TCP = g.num([]int{0, 900}, []int{-1})
		s.Sync.Enabled = g.r.IntN(2) == 0
		s.Sync.Interface = g.field([]string{"eth0", "eth1"}, []string{"", "a/b"})
		s.Sync.SyncID = g.num([]int{0, 7}, []int{300})
		return &UpdateSettings{Settings: s, CAS: g.cas(s.ModifyIndex)}
	case 11:
		if g.r.IntN(4) == 0 {
			return &ReleaseLease{Node: "d1", Cancel: g.r.IntN(2) == 0}
		}
		c := &SetHealth{}
		for range 1 + g.r.IntN(3) {
			n := g.name()
			c.Changes = append(c.Changes, HealthChange{Service: n, Key: g.existingReal(n), Up: g.r.IntN(2) == 0, Reason: "test"})
		}
		return c
	default:
		if g.r.IntN(3) == 0 {
			return &DeregisterNode{ID: g.pick("d1", "d2", "d3")}
		}
		return &RegisterNode{Node: model.Node{ID: g.field([]string{"d1", "d2"}, []string{"bad id!"}),
			RaftAddr: g.field([]string{"127.0.0.1:7000", "127.0.0.1:7001"}, []string{"nope"}), APIAddr: "127.0.0.1:7480"}}
	}
}

// TestPropertyRandomSequences drives random command sequences and checks, after
// every command: a rejected command changes nothing but the applied index; the
// state's invariants hold; a second FSM fed the same log is identical
// (determinism); and Snapshot → Restore reproduces the state exactly.
func TestPropertyRandomSequences(t *testing.T) {
	seeds := 40
	steps := 250
	if testing.Short() {
		seeds = 8
	}
	for seed := range seeds {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			f, twin := New(nil), New(nil)
			g := &cmdGen{r: rand.New(rand.NewPCG(uint64(seed), 42)), f: f}
			accepted := 0
			rd := &deltaReader{services: map[string]model.Service{}}
			for i := 1; i <= steps; i++ {
				c := g.next()
				before := withoutIndex(f.Dump())
				res := applyCmd(t, f, uint64(i), c)
				applyCmd(t, twin, uint64(i), c)
				if res.Index != uint64(i) || f.Index() != uint64(i) {
					t.Fatalf("step %d: result index %d, applied %d", i, res.Index, f.Index())
				}
				after := f.Dump()
				if res.Err != nil {
					if !reflect.DeepEqual(before, withoutIndex(after)) {
						t.Fatalf("step %d: rejected %T (%v) changed the state", i, c, res.Err)
					}
					if res.Err.Code == "" || res.Err.Message == "" {
						t.Fatalf("step %d: error without code or message: %+v", i, res.Err)
					}
				} else {
					accepted++
				}
				checkInvariants(t, after)
				if !reflect.DeepEqual(after, twin.Dump()) {
					t.Fatalf("step %d: two FSMs fed the same log differ", i)
				}
				if g.r.IntN(3) == 0 {
					rd.follow(t, f)
				}
				if i%25 == 0 || i == steps {
					snap := snapshotBytes(t, f)
					restored := New(nil)
					if err := restored.Restore(io.NopCloser(bytes.NewReader(snap))); err != nil {
						t.Fatalf("step %d: restore: %v", i, err)
					}
					if !reflect.DeepEqual(after, restored.Dump()) {
						t.Fatalf("step %d: Snapshot → Restore changed the state", i)
					}
					if !bytes.Equal(snap, snapshotBytes(t, restored)) {
						t.Fatalf("step %d: snapshot of the restored state differs", i)
					}
					// A reader of the restored FSM must rebuild, then follow.
					if c := restored.ServicesChangedSince(rd.since); !c.Full && rd.since < restored.Index() {
						t.Fatalf("step %d: changes since %d across a restore were not Full", i, rd.since)
					}
				}
			}
			t.Logf("%d of %d commands accepted; final: %d services, %d VIPs", accepted, steps, len(f.Dump().Services), len(f.Dump().VIPs))
			if accepted == 0 {
				t.Fatal("no command was accepted: the generator is broken")
			}
		})
	}
}

// checkInvariants asserts what every reachable state holds.
func checkInvariants(t *testing.T, d Dump) {
	t.Helper()
	keys := map[string]bool{}
	for _, s := range d.Services {
		n, err := model.NormalizeService(s.ServiceSpec)
		if err != nil || !reflect.DeepEqual(n, s.ServiceSpec) {
			t.Fatalf("service %q is not normalised/valid: %v", s.Name, err)
		}
		if keys[s.Key()] {
			t.Fatalf("service key %s twice", s.Key())
		}
		keys[s.Key()] = true
		for i, r := range s.Reals {
			if i > 0 && netip.MustParseAddrPort(s.Reals[i-1].Key()).Compare(netip.MustParseAddrPort(r.Key())) >= 0 {
				t.Fatalf("reals of %q not sorted/unique", s.Name)
			}
			nr, err := model.NormalizeReal(s.ServiceSpec, r)
			if err != nil || !reflect.DeepEqual(nr, r) {
				t.Fatalf("real %s of %q is not valid: %v", r.Key(), s.Name, err)
			}
			if r.CreateIndex == 0 || r.ModifyIndex < r.CreateIndex {
				t.Fatalf("real %s indexes %d/%d", r.Key(), r.CreateIndex, r.ModifyIndex)
			}
		}
		if s.CreateIndex == 0 || s.ModifyIndex < s.CreateIndex {
			t.Fatalf("service %q indexes %d/%d", s.Name, s.CreateIndex, s.ModifyIndex)
		}
	}
	for _, v := range d.VIPs {
		if nv, err := model.NormalizeVIP(v); err != nil || nv != v {
			t.Fatalf("VIP %s not valid: %v", v.Address, err)
		}
	}
	if ns, err := model.NormalizeSettings(d.Settings); err != nil || !reflect.DeepEqual(ns, d.Settings) {
		t.Fatalf("settings not valid: %v", err)
	}
}

func TestCASAndIndexes(t *testing.T) {
	f := New(nil)
	spec := model.NewServiceSpec()
	spec.Name, spec.Protocol, spec.Address, spec.Port = "web", "tcp", "192.0.2.1", 80
	res := applyCmd(t, f, 5, &CreateService{Service: spec, Reals: []model.RealServer{{Address: "10.0.0.1", Weight: 3}}})
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	svc := res.Object.(model.Service)
	if svc.CreateIndex != 5 || svc.ModifyIndex != 5 || svc.Reals[0].Port != 80 || svc.Reals[0].State != model.StateEnabled {
		t.Fatalf("created %+v", svc)
	}
	spec.Scheduler = "rr"
	if r := applyCmd(t, f, 6, &UpdateService{Name: "web", Spec: spec, CAS: 4}); r.Err == nil || r.Err.Code != model.CodeCASMismatch {
		t.Fatalf("stale CAS accepted: %+v", r.Err)
	}
	if r := applyCmd(t, f, 7, &UpdateService{Name: "web", Spec: spec, CAS: 5}); r.Err != nil {
		t.Fatal(r.Err)
	}
	got, _ := f.Service("web")
	if got.Scheduler != "rr" || got.ModifyIndex != 7 || got.CreateIndex != 5 || got.Reals[0].ModifyIndex != 5 {
		t.Fatalf("after update %+v", got)
	}
	// DR cannot remap the port of an existing NAT real server with a different port.
	r := applyCmd(t, f, 8, &CreateReal{Service: "web", Real: model.RealServer{Address: "10.0.0.2", Port: 8080, Weight: 1}})
	if r.Err != nil {
		t.Fatal(r.Err)
	}
	spec.Forward = model.ForwardDR
	r = applyCmd(t, f, 9, &UpdateService{Name: "web", Spec: spec})
	if r.Err == nil || r.Err.Field != "reals[10.0.0.2:8080].port" {
		t.Fatalf("want reals[10.0.0.2:8080].port error, got %+v", r.Err)
	}
}

func TestRejectsDuplicates(t *testing.T) {
	f := New(nil)
	spec := model.NewServiceSpec()
	spec.Name, spec.Protocol, spec.Address, spec.Port = "web", "tcp", "192.0.2.1", 80
	if r := applyCmd(t, f, 1, &CreateService{Service: spec}); r.Err != nil {
		t.Fatal(r.Err)
	}
	cases := []struct {
		cmd   Command
		code  string
		field string
	}{
		{&CreateService{Service: spec}, model.CodeConflict, "name"},
		{&CreateService{Service: func() model.ServiceSpec { s := spec; s.Name = "web2"; return s }()}, model.CodeConflict, "address"},
		{&CreateService{Service: func() model.ServiceSpec { s := spec; s.Name = "web3"; s.Port = 81; return s }(),
			Reals: []model.RealServer{{Address: "10.0.0.1", Port: 81, Weight: 1}, {Address: "10.0.0.1", Weight: 1}}}, model.CodeConflict, "reals[1].address"},
		{&CreateReal{Service: "nope", Real: model.RealServer{Address: "10.0.0.1"}}, model.CodeNotFound, "service"},
		{&DeleteService{Name: "nope"}, model.CodeNotFound, "name"},
		{&UpdateService{Name: "web", Spec: func() model.ServiceSpec { s := spec; s.Name = "other"; return s }()}, model.CodeInvalid, "name"},
	}
	for i, c := range cases {
		r := applyCmd(t, f, uint64(10+i), c.cmd)
		if r.Err == nil || r.Err.Code != c.code || r.Err.Field != c.field {
			t.Errorf("case %d %T: got %+v, want %s on %s", i, c.cmd, r.Err, c.code, c.field)
		}
	}
}

func TestDecodeRejectsBadEntries(t *testing.T) {
	good, _ := Encode(&DeleteVIP{Key: "192.0.2.1"})
	legacy, _ := encode(&DeleteVIP{Key: "192.0.2.1"}, false)
	cases := map[string][]byte{
		"empty":            {},
		"short":            {byte(TypeDeleteVIP)},
		"unknown type":     {99, 1, '{', '}'},
		"bad version":      append([]byte{legacy[0], 9}, legacy[2:]...),
		"bad json":         {byte(TypeDeleteVIP), 1, '{'},
		"unknown field":    append([]byte{byte(TypeDeleteVIP), 1}, []byte(`{"key":"x","zzz":1}`)...),
		"trailing data":    append(slices.Clone(legacy), []byte(` {}`)...),
		"checksum cut":     good[:len(good)-1],
		"checksum only":    {byte(TypeDeleteVIP), 1 | checksumFlag, 0, 0},
		"ignorable (0x81)": {0x81, 1, '{', '}'},
	}
	for name, b := range cases {
		if _, err := Decode(b); err == nil {
			t.Errorf("%s: decoded", name)
		} else if name != "ignorable (0x81)" && !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: %v does not wrap ErrCorrupt", name, err)
		}
	}
	if _, err := Decode(legacy); err != nil {
		t.Fatalf("an entry of an older release (no checksum) is refused: %v", err)
	}
}

// TestChecksumCatchesEveryFlippedByte: the damage a JSON decoder cannot
// see (a digit of a weight, a letter of a name) is caught by the CRC.
func TestChecksumCatchesEveryFlippedByte(t *testing.T) {
	good, _ := Encode(&CreateReal{Service: "web", Real: model.RealServer{Address: "10.0.0.1", Port: 80, Weight: 3, State: "enabled"}})
	for i := range good {
		for _, bit := range []byte{0x01, 0x10, 0x80} {
			b := slices.Clone(good)
			b[i] ^= bit
			if c, err := Decode(b); err == nil {
				t.Fatalf("byte %d ^ %#x decoded as %+v", i, bit, c)
			}
		}
	}
}

// TestDamagedEntryStopsTheFSM: an entry that cannot be decoded is never
// skipped; the FSM stops there, refuses every later entry and snapshot,
// and says where.
func TestDamagedEntryStopsTheFSM(t *testing.T) {
	f := New(nil)
	applyCmd(t, f, 1, &CreateVIP{VIP: model.VIP{Address: "192.0.2.1/24", Interface: "eth0"}})
	before := f.Dump()
	changed := f.Changed()
	bad, _ := Encode(&DeleteVIP{Key: "192.0.2.1"})
	bad[5] ^= 0x20
	res := f.Apply(&raft.Log{Index: 2, Term: 3, Type: raft.LogCommand, Data: bad}).(*Result)
	if res.Err == nil || !strings.Contains(res.Err.Message, "index 2") {
		t.Fatalf("damaged entry: %+v", res.Err)
	}
	select {
	case <-changed:
	default:
		t.Fatal("watchers were not told")
	}
	fl := f.Failure()
	if fl == nil || fl.Index != 2 || fl.Term != 3 || !strings.Contains(fl.Err, "checksum mismatch") {
		t.Fatalf("failure: %+v", fl)
	}
	good, _ := Encode(&DeleteVIP{Key: "192.0.2.1"})
	if r := f.Apply(&raft.Log{Index: 3, Type: raft.LogCommand, Data: good}).(*Result); r.Err == nil {
		t.Fatal("an entry after the damaged one was applied")
	}
	if !reflect.DeepEqual(before, f.Dump()) || f.Index() != 1 {
		t.Fatalf("the state moved past the damaged entry: index %d", f.Index())
	}
	if _, err := f.Snapshot(); err == nil {
		t.Fatal("a stopped FSM took a snapshot")
	}
	if err := f.Restore(io.NopCloser(bytes.NewBufferString(`{"version":1}`))); err == nil {
		t.Fatal("a stopped FSM restored a snapshot")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := f.WaitIndex(ctx, 3); err == nil || !strings.Contains(err.Error(), "stopped at raft index 2") {
		t.Fatalf("WaitIndex past the failure: %v", err)
	}
}

func TestIgnorableEntryIsSkipped(t *testing.T) {
	f := New(nil)
	before := withoutIndex(f.Dump())
	res := f.Apply(&raft.Log{Index: 1, Type: raft.LogCommand, Data: []byte{0x81, 1, '{', '}'}}).(*Result)
	if res.Err != nil || f.Failure() != nil {
		t.Fatalf("ignorable type: %v %v", res.Err, f.Failure())
	}
	if !reflect.DeepEqual(before, withoutIndex(f.Dump())) || f.Index() != 1 {
		t.Fatal("an ignorable entry changed the state")
	}
}

// TestEncodeWaitsForEveryDirector: checksummed entries are written only
// once every registered director reads them.
func TestEncodeWaitsForEveryDirector(t *testing.T) {
	f := New(nil)
	cmd := &DeleteVIP{Key: "192.0.2.1"}
	if b, _ := f.Encode(cmd); b[1]&checksumFlag == 0 {
		t.Fatal("a new cluster writes no checksum")
	}
	applyCmd(t, f, 1, &RegisterNode{Node: model.Node{ID: "d1", RaftAddr: "127.0.0.1:1", APIAddr: "127.0.0.1:2", LogChecksums: true}})
	applyCmd(t, f, 2, &RegisterNode{Node: model.Node{ID: "d2", RaftAddr: "127.0.0.1:3", APIAddr: "127.0.0.1:4"}})
	if b, _ := f.Encode(cmd); b[1]&checksumFlag != 0 {
		t.Fatal("checksums written while d2 (an older release) cannot read them")
	}
	applyCmd(t, f, 3, &RegisterNode{Node: model.Node{ID: "d2", RaftAddr: "127.0.0.1:3", APIAddr: "127.0.0.1:4", LogChecksums: true}})
	if b, _ := f.Encode(cmd); b[1]&checksumFlag == 0 {
		t.Fatal("no checksum once every director reads them")
	}
}

func TestRestoreRejectsCorruptSnapshot(t *testing.T) {
	f := New(nil)
	for name, data := range map[string]string{
		"garbage":       "not json",
		"version":       `{"version":99}`,
		"duplicate svc": `{"version":1,"services":[{"name":"a","protocol":"tcp","address":"192.0.2.1","port":80},{"name":"a","protocol":"tcp","address":"192.0.2.2","port":80}]}`,
	} {
		if err := f.Restore(io.NopCloser(bytes.NewBufferString(data))); err == nil {
			t.Errorf("%s: restored", name)
		}
	}
}

func FuzzDecodeApply(f *testing.F) {
	for _, c := range []Command{
		&CreateService{Service: model.ServiceSpec{Name: "w", Protocol: "tcp", Address: "192.0.2.1", Port: 80}},
		&CreateReal{Service: "w", Real: model.RealServer{Address: "10.0.0.1", Weight: 1}},
		&UpdateSettings{Settings: model.DefaultSettings()},
	} {
		b, _ := Encode(c)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m := New(nil)
		res := m.Apply(&raft.Log{Index: 1, Type: raft.LogCommand, Data: b}).(*Result)
		if res.Err == nil {
			// Anything accepted must leave a valid state.
			d := m.Dump()
			var buf bytes.Buffer
			if err := json.NewEncoder(&buf).Encode(d); err != nil {
				t.Fatal(err)
			}
		}
	})
}

func TestDataplaneCapabilitiesRefuseWhatADirectorCannotProgram(t *testing.T) {
	f := New(nil)
	caps := &model.DataplaneCaps{Schedulers: []string{"rr", "wrr", "sh"}, Forwards: []string{"nat"}}
	if r := applyCmd(t, f, 1, &RegisterNode{Node: model.Node{ID: "d2", RaftAddr: "127.0.0.1:1", APIAddr: "127.0.0.1:2", Dataplane: "nft", Caps: caps}}); r.Err != nil {
		t.Fatal(r.Err)
	}
	spec := model.NewServiceSpec() // wlc
	spec.Name, spec.Protocol, spec.Address, spec.Port = "web", "tcp", "192.0.2.1", 80
	r := applyCmd(t, f, 2, &CreateService{Service: spec})
	if r.Err == nil || r.Err.Field != "scheduler" || !strings.Contains(r.Err.Message, "nft dataplane of director d2") {
		t.Fatalf("wlc on an nft director: %+v", r.Err)
	}
	spec.Scheduler = "wrr"
	if r := applyCmd(t, f, 3, &CreateService{Service: spec}); r.Err != nil {
		t.Fatal(r.Err)
	}
	if r := applyCmd(t, f, 4, &CreateReal{Service: "web", Real: model.RealServer{Address: "10.0.0.1", Weight: 1, Forward: "dr"}}); r.Err == nil || r.Err.Field != "forward" {
		t.Fatalf("dr real on an nft director: %+v", r.Err)
	}
	p := spec
	p.Persistence = 300
	if r := applyCmd(t, f, 5, &UpdateService{Name: "web", Spec: p}); r.Err == nil || r.Err.Field != "persistence" {
		t.Fatalf("persistence on an nft director without it: %+v", r.Err)
	}
	// Once that director is gone, the limits go with it.
	applyCmd(t, f, 6, &DeregisterNode{ID: "d2"})
	if r := applyCmd(t, f, 7, &UpdateService{Name: "web", Spec: p}); r.Err != nil {
		t.Fatal(r.Err)
	}
}

func TestVIPCannotBeADirectorsOwnAddress(t *testing.T) {
	f := New(nil)
	applyCmd(t, f, 1, &RegisterNode{Node: model.Node{ID: "d1", RaftAddr: "10.0.0.1:7481", APIAddr: "10.0.0.1:7480"}})
	r := applyCmd(t, f, 2, &CreateVIP{VIP: model.VIP{Address: "10.0.0.1/24", Interface: "eth0"}})
	if r.Err == nil || r.Err.Field != "address" || !strings.Contains(r.Err.Message, "director d1") {
		t.Fatalf("got %+v", r.Err)
	}
	if r := applyCmd(t, f, 3, &CreateVIP{VIP: model.VIP{Address: "10.0.0.100/24", Interface: "eth0"}}); r.Err != nil {
		t.Fatal(r.Err)
	}
}

// deltaReader follows an FSM through ServicesChangedSince only.
type deltaReader struct {
	since    uint64
	services map[string]model.Service
}

func (d *deltaReader) follow(t *testing.T, f *FSM) {
	t.Helper()
	c := f.ServicesChangedSince(d.since)
	if c.Full {
		d.services = map[string]model.Service{}
	}
	for _, s := range c.Changed {
		d.services[s.Name] = s
	}
	for _, n := range c.Deleted {
		delete(d.services, n)
	}
	d.since = c.Index
	want := f.Services()
	if len(want) != len(d.services) {
		t.Fatalf("delta reader has %d services, FSM %d", len(d.services), len(want))
	}
	for _, s := range want {
		if !reflect.DeepEqual(d.services[s.Name], s) {
			t.Fatalf("delta reader's %q differs from the FSM's", s.Name)
		}
	}
}

func TestServicesChangedSinceAfterRestoreIsFull(t *testing.T) {
	f := New(nil)
	spec := model.NewServiceSpec()
	spec.Name, spec.Protocol, spec.Address, spec.Port = "web", "tcp", "192.0.2.1", 80
	applyCmd(t, f, 1, &CreateService{Service: spec})
	snap := snapshotBytes(t, f)
	g := New(nil)
	if err := g.Restore(io.NopCloser(bytes.NewReader(snap))); err != nil {
		t.Fatal(err)
	}
	if c := g.ServicesChangedSince(0); !c.Full || len(c.Changed) != 1 {
		t.Fatalf("%+v", c)
	}
	if c := g.ServicesChangedSince(1); c.Full || len(c.Changed) != 0 {
		t.Fatalf("caught-up reader: %+v", c)
	}
}

// TestCrossFamilyTunAndSyncDaemon: a real server or sorry server of the
// other address family (tun) and the connection-sync daemon exclude each
// other on a director whose dataplane tunnels (IPVS: the kernel refuses
// whichever comes second with EINVAL, on every retry), so Apply refuses
// the second write, naming the field and the director, and changes
// nothing. A director without limits (nil caps) imposes none.
func TestCrossFamilyTunAndSyncDaemon(t *testing.T) {
	f := New(nil)
	ipvsCaps := &model.DataplaneCaps{Schedulers: model.Schedulers, Flags: []string{"mh-fallback", "mh-port", "ops", "sh-fallback", "sh-port"},
		Forwards: []string{model.ForwardNAT, model.ForwardDR, model.ForwardTUN}, Persistence: true, Fwmark: true, Thresholds: true}
	idx := uint64(0)
	apply := func(c Command) *Result { idx++; return applyCmd(t, f, idx, c) }
	mustApply := func(c Command) {
		t.Helper()
		if r := apply(c); r.Err != nil {
			t.Fatalf("%T: %+v", c, r.Err)
		}
	}
	refused := func(c Command, field string) {
		t.Helper()
		before := f.Dump()
		r := apply(c)
		if r.Err == nil || r.Err.Code != model.CodeInvalid || r.Err.Field != field ||
			!strings.Contains(r.Err.Message, "ipvs dataplane of director d1") || !strings.Contains(r.Err.Message, "sync") {
			t.Fatalf("%T: %+v, want %s refused naming the ipvs dataplane of director d1 and the sync daemon", c, r.Err, field)
		}
		after := f.Dump()
		after.Index = before.Index
		if !reflect.DeepEqual(before, after) {
			t.Fatalf("%T was refused but changed the state", c)
		}
		t.Logf("%s: %s", r.Err.Field, r.Err.Message)
	}
	mustApply(&RegisterNode{Node: model.Node{ID: "d1", RaftAddr: "127.0.0.1:1", APIAddr: "127.0.0.1:2", Dataplane: "ipvs", Caps: ipvsCaps}})
	spec := model.NewServiceSpec()
	spec.Name, spec.Protocol, spec.Address, spec.Port = "web", "tcp", "192.0.2.1", 80
	mustApply(&CreateService{Service: spec})
	withSync := model.DefaultSettings()
	withSync.Sync.Enabled, withSync.Sync.Interface = true, "eth1"
	mustApply(&UpdateSettings{Settings: withSync})

	cross := model.RealServer{Address: "2001:db8::1", Weight: 1, Forward: model.ForwardTUN, State: model.StateEnabled}
	refused(&CreateReal{Service: "web", Real: cross}, "address")
	spec2 := spec
	spec2.Name, spec2.Address = "api", "192.0.2.2"
	refused(&CreateService{Service: spec2, Reals: []model.RealServer{{Address: "10.0.0.1", Weight: 1}, cross}}, "reals[1].address")
	sorry := spec
	sorry.SorryServer = &model.SorryServer{Address: "2001:db8::9", Forward: model.ForwardTUN}
	refused(&UpdateService{Name: "web", Spec: sorry}, "sorry_server.address")
	// Same-family tun is not affected; a service whose address changes
	// family turns its tun real servers into cross-family ones.
	mustApply(&CreateReal{Service: "web", Real: model.RealServer{Address: "10.0.0.5", Weight: 1, Forward: model.ForwardTUN, State: model.StateEnabled}})
	six := spec
	six.Address = "2001:db8::80"
	refused(&UpdateService{Name: "web", Spec: six}, "reals[10.0.0.5:80].address")
	mustApply(&DeleteReal{Service: "web", Key: "10.0.0.5:80"})

	// Without the daemon the real server is fine; then the daemon is not.
	mustApply(&UpdateSettings{Settings: model.DefaultSettings()})
	mustApply(&CreateReal{Service: "web", Real: cross})
	refused(&UpdateSettings{Settings: withSync}, "sync.enabled")

	// A director without limits does not refuse either.
	mustApply(&DeregisterNode{ID: "d1"})
	mustApply(&RegisterNode{Node: model.Node{ID: "d2", RaftAddr: "127.0.0.1:3", APIAddr: "127.0.0.1:4", Dataplane: "none"}})
	mustApply(&UpdateSettings{Settings: withSync})
}
