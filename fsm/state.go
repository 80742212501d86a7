package fsm

import (
	"fmt"
	"maps"
	"net"
	"net/netip"
	"slices"
	"sort"
	"strings"

	"github.com/raftlb/raftlb/model"
)

// state is the replicated state. It is only changed by apply, which is a
// deterministic function of (state, index, command).
type state struct {
	index    uint64 // last applied raft index
	services map[string]*service
	keys     map[string]string     // service key -> service name
	vips     map[string]*model.VIP // by VIPKey
	settings model.Settings
	nodes    map[string]*model.Node
	release  *model.LeaseRelease // the last planned VIP release (nil: none, or cancelled)
	cluster  string              // the cluster's id (InitCluster; "" until the first leader names it)
	term     uint64              // raft term of the entry being applied (not replicated state)

	// Change tracking for incremental readers (not replicated state: it
	// is derived from the order of Apply and is not in snapshots).
	tombs      map[string]uint64 // deleted service name -> index of the deletion
	fullBefore uint64            // changes since an index below this cannot be told
}

type service struct {
	spec          model.ServiceSpec
	reals         map[string]*model.RealServer
	create, modif uint64
	touched       uint64 // last index that changed the spec or any real server
	quorumLost    bool
}

// healthyWeight is the total weight of the real servers that serve:
// enabled and not decided down.
func (e *service) healthyWeight() int {
	w := 0
	for _, r := range e.reals {
		w += r.HealthyWeight()
	}
	return w
}

// updateQuorums applies the quorum hysteresis to the services touched at
// idx that use health checking, a quorum or a sorry server (keepalived's rule: down below quorum-hysteresis, up again at
// quorum+hysteresis).
func (s *state) updateQuorums(idx uint64) {
	for _, e := range s.services {
		if e.touched != idx {
			continue
		}
		if !e.spec.UsesHealth() { // no health fields: nothing to be lost
			e.quorumLost = false
			continue
		}
		w, q, h := e.healthyWeight(), e.spec.EffectiveQuorum(), e.spec.Hysteresis
		switch {
		case !e.quorumLost && w < q-h:
			e.quorumLost = true
		case e.quorumLost && w >= q+h:
			e.quorumLost = false
		}
	}
}

// maxTombs bounds the deletion history; past it, readers rebuild fully.
const maxTombs = 4096

func newState() *state {
	return &state{
		services: map[string]*service{},
		keys:     map[string]string{},
		vips:     map[string]*model.VIP{},
		settings: model.DefaultSettings(),
		nodes:    map[string]*model.Node{},
		tombs:    map[string]uint64{},
	}
}

// Result is what Apply returns for a command, handed back to the writer by
// raft on the leader.
type Result struct {
	Index  uint64       // the raft index the command was applied at
	Err    *model.Error // nil on success; the state is unchanged otherwise
	Object any          // the created or updated object (Service, RealServer, VIP, Settings, Node); nil on delete
}

func checkCAS(cas, have uint64) *model.Error {
	if cas != 0 && cas != have {
		return model.CASMismatch(cas, have)
	}
	return nil
}

// apply runs one command at index. On error the state is unchanged.
func (s *state) apply(idx uint64, c Command) (any, *model.Error) {
	d, ok := commands[c.Type()]
	if !ok {
		return nil, &model.Error{Code: model.CodeInternal, Message: fmt.Sprintf("no handler for command %T", c)}
	}
	out, err := d.apply(s, idx, c)
	if err == nil {
		if d.track != nil {
			d.track(s, idx, c)
		}
		s.updateQuorums(idx)
		if svc, ok := out.(model.Service); ok { // the returned copy predates the quorum update
			if e := s.services[svc.Name]; e != nil {
				svc.QuorumLost = e.quorumLost
				out = svc
			}
		}
	}
	return out, err
}

// existing is the lookup every update and delete starts with: the object
// under key, refused with notFound if there is none or with a CAS
// mismatch if cas is set and differs from its modify index.
func existing[V any](objs map[string]*V, key string, cas uint64, modifyIndex func(*V) uint64, notFound func() *model.Error) (*V, *model.Error) {
	v := objs[key]
	if v == nil {
		return nil, notFound()
	}
	if err := checkCAS(cas, modifyIndex(v)); err != nil {
		return nil, err
	}
	return v, nil
}

func (s *state) service(name, field string, cas uint64) (*service, *model.Error) {
	return existing(s.services, name, cas, func(e *service) uint64 { return e.modif },
		func() *model.Error { return model.NotFound(field, "no service named %q", name) })
}

func (e *service) real(service, key string, cas uint64) (*model.RealServer, *model.Error) {
	return existing(e.reals, key, cas, func(r *model.RealServer) uint64 { return r.ModifyIndex },
		func() *model.Error {
			return model.NotFound("address", "service %q has no real server %s", service, key)
		})
}

func (s *state) vip(key string, cas uint64) (*model.VIP, *model.Error) {
	return existing(s.vips, key, cas, func(v *model.VIP) uint64 { return v.ModifyIndex },
		func() *model.Error { return model.NotFound("address", "no VIP %s", key) })
}

// keyUnchanged refuses an update that would change an object's key
// (what: "real server's address and port").
func keyUnchanged(what, old, updated string) *model.Error {
	if updated != old {
		return model.Invalid("address", "a %s cannot change (%s → %s): add the new one and delete the old", what, old, updated)
	}
	return nil
}

func (s *state) deleteService(_ uint64, c *DeleteService) (any, *model.Error) {
	e, err := s.service(c.Name, "name", c.CAS)
	if err != nil {
		return nil, err
	}
	delete(s.keys, e.spec.Key())
	delete(s.services, c.Name)
	return nil, nil
}

// tombstone records a deleted service for ServicesChangedSince.
func (s *state) tombstone(idx uint64, c *DeleteService) {
	if len(s.tombs) >= maxTombs {
		s.tombs = map[string]uint64{}
		s.fullBefore = idx
	}
	s.tombs[c.Name] = idx
}

func (s *state) createReal(idx uint64, c *CreateReal) (any, *model.Error) {
	e, err := s.service(c.Service, "service", 0)
	if err != nil {
		return nil, err
	}
	r, nerr := model.NormalizeReal(e.spec, c.Real)
	if nerr != nil {
		return nil, model.AsError(nerr)
	}
	if _, dup := e.reals[r.Key()]; dup {
		return nil, model.Conflict("address", "service %q already has real server %s", c.Service, r.Key())
	}
	if err := s.checkCaps(e.spec, []model.RealServer{r}, true); err != nil {
		return nil, err
	}
	if err := s.checkSyncConflict(e.spec, []model.RealServer{r}, realField(true, nil)); err != nil {
		return nil, err
	}
	r.CreateIndex, r.ModifyIndex = idx, idx
	r.Health = initialHealth(e.spec, idx)
	e.reals[r.Key()] = &r
	return r, nil
}

func (s *state) updateReal(idx uint64, c *UpdateReal) (any, *model.Error) {
	e, err := s.service(c.Service, "service", 0)
	if err != nil {
		return nil, err
	}
	old, err := e.real(c.Service, c.Key, c.CAS)
	if err != nil {
		return nil, err
	}
	r, nerr := model.NormalizeReal(e.spec, c.Real)
	if nerr != nil {
		return nil, model.AsError(nerr)
	}
	if err := keyUnchanged("real server's address and port", c.Key, r.Key()); err != nil {
		return nil, err
	}
	if err := s.checkCaps(e.spec, []model.RealServer{r}, true); err != nil {
		return nil, err
	}
	if err := s.checkSyncConflict(e.spec, []model.RealServer{r}, realField(true, nil)); err != nil {
		return nil, err
	}
	r.CreateIndex, r.ModifyIndex = old.CreateIndex, idx
	r.Health = old.Health // decided by the cluster, not by the writer
	e.reals[c.Key] = &r
	return r, nil
}

func (s *state) deleteReal(_ uint64, c *DeleteReal) (any, *model.Error) {
	e, err := s.service(c.Service, "service", 0)
	if err != nil {
		return nil, err
	}
	if _, err := e.real(c.Service, c.Key, c.CAS); err != nil {
		return nil, err
	}
	delete(e.reals, c.Key)
	return nil, nil
}

func (s *state) createVIP(idx uint64, c *CreateVIP) (any, *model.Error) {
	v, err := model.NormalizeVIP(c.VIP)
	if err != nil {
		return nil, model.AsError(err)
	}
	if _, dup := s.vips[v.Key()]; dup {
		return nil, model.Conflict("address", "VIP %s already exists", v.Key())
	}
	if err := s.checkNotDirectorAddr(v); err != nil {
		return nil, err
	}
	v.CreateIndex, v.ModifyIndex = idx, idx
	s.vips[v.Key()] = &v
	return v, nil
}

func (s *state) updateVIP(idx uint64, c *UpdateVIP) (any, *model.Error) {
	old, err := s.vip(c.Key, c.CAS)
	if err != nil {
		return nil, err
	}
	v, nerr := model.NormalizeVIP(c.VIP)
	if nerr != nil {
		return nil, model.AsError(nerr)
	}
	if err := keyUnchanged("VIP's address", c.Key, v.Key()); err != nil {
		return nil, err
	}
	if err := s.checkNotDirectorAddr(v); err != nil {
		return nil, err
	}
	v.CreateIndex, v.ModifyIndex = old.CreateIndex, idx
	s.vips[c.Key] = &v
	return v, nil
}

func (s *state) deleteVIP(_ uint64, c *DeleteVIP) (any, *model.Error) {
	if _, err := s.vip(c.Key, c.CAS); err != nil {
		return nil, err
	}
	delete(s.vips, c.Key)
	return nil, nil
}

func (s *state) updateSettings(idx uint64, c *UpdateSettings) (any, *model.Error) {
	if err := checkCAS(c.CAS, s.settings.ModifyIndex); err != nil {
		return nil, err
	}
	st, err := model.NormalizeSettings(c.Settings)
	if err != nil {
		return nil, model.AsError(err)
	}
	if st.Sync.Enabled && !s.settings.Sync.Enabled {
		if err := s.checkSyncCanStart(); err != nil {
			return nil, err
		}
	}
	st.ModifyIndex = idx
	s.settings = st
	return st, nil
}

func (s *state) registerNode(idx uint64, c *RegisterNode) (any, *model.Error) {
	n, err := model.NormalizeNode(c.Node)
	if err != nil {
		return nil, model.AsError(err)
	}
	if old := s.nodes[n.ID]; old != nil && old.Equal(n) {
		return *old, nil // unchanged: keep its index
	}
	n.ModifyIndex = idx
	s.nodes[n.ID] = &n
	return n, nil
}

func (s *state) deregisterNode(_ uint64, c *DeregisterNode) (any, *model.Error) {
	if s.nodes[c.ID] == nil {
		return nil, model.NotFound("id", "no node %q", c.ID)
	}
	delete(s.nodes, c.ID)
	return nil, nil
}

func (s *state) initCluster(_ uint64, c *InitCluster) (any, *model.Error) {
	if !model.ValidName(c.ID) {
		return nil, model.Invalid("id", "%q is not a valid cluster id", c.ID)
	}
	if s.cluster == "" {
		s.cluster = c.ID
	}
	return nil, nil // the first id stays; a later one (two leaders racing) changes nothing
}

func (s *state) releaseLease(idx uint64, c *ReleaseLease) (any, *model.Error) {
	if c.Cancel {
		s.release = nil
		return nil, nil
	}
	s.release = &model.LeaseRelease{Node: c.Node, Term: s.term, Index: idx}
	return *s.release, nil
}

func (s *state) createService(idx uint64, c *CreateService) (any, *model.Error) {
	spec, err := model.NormalizeService(c.Service)
	if err != nil {
		return nil, model.AsError(err)
	}
	if _, dup := s.services[spec.Name]; dup {
		return nil, model.Conflict("name", "a service named %q already exists", spec.Name)
	}
	if other, dup := s.keys[spec.Key()]; dup {
		return nil, model.Conflict(keyField(spec), "service %q already uses %s", other, spec.Key())
	}
	if err := s.checkCaps(spec, c.Reals, false); err != nil {
		return nil, err
	}
	if err := s.checkSyncConflict(spec, c.Reals, realField(false, nil)); err != nil {
		return nil, err
	}
	e := &service{spec: spec, reals: make(map[string]*model.RealServer, len(c.Reals)), create: idx, modif: idx}
	for i, r := range c.Reals {
		nr, err := model.NormalizeReal(spec, r)
		if err != nil {
			return nil, model.AsError(model.PrefixField(fmt.Sprintf("reals[%d]", i), err))
		}
		if _, dup := e.reals[nr.Key()]; dup {
			return nil, model.Conflict(fmt.Sprintf("reals[%d].address", i), "real server %s is listed twice", nr.Key())
		}
		nr.CreateIndex, nr.ModifyIndex = idx, idx
		nr.Health = initialHealth(spec, idx)
		e.reals[nr.Key()] = &nr
	}
	s.services[spec.Name] = e
	s.keys[spec.Key()] = spec.Name
	return e.export(), nil
}

func (s *state) updateService(idx uint64, c *UpdateService) (any, *model.Error) {
	e, ferr := s.service(c.Name, "name", c.CAS)
	if ferr != nil {
		return nil, ferr
	}
	spec, err := model.NormalizeService(c.Spec)
	if err != nil {
		return nil, model.AsError(err)
	}
	if spec.Name != c.Name {
		return nil, model.Invalid("name", "a service cannot be renamed (%q → %q)", c.Name, spec.Name)
	}
	if other, dup := s.keys[spec.Key()]; dup && other != c.Name {
		return nil, model.Conflict(keyField(spec), "service %q already uses %s", other, spec.Key())
	}
	if err := s.checkCaps(spec, nil, false); err != nil {
		return nil, err
	}
	// Every real server must still be valid under the new spec.
	keys := sortedKeys(e.reals)
	reals := make([]model.RealServer, 0, len(keys))
	for _, k := range keys {
		r := *e.reals[k]
		nr, err := model.NormalizeReal(spec, r)
		if err != nil {
			return nil, model.AsError(model.PrefixField("reals["+k+"]", err))
		}
		if nr.Port != r.Port {
			return nil, model.Invalid("reals["+k+"].port", "port 0 follows the client's port, which a service on port %d would change: give the real server a port first", spec.Port)
		}
		reals = append(reals, nr)
	}
	if err := s.checkSyncConflict(spec, reals, realField(false, keys)); err != nil {
		return nil, err
	}
	delete(s.keys, e.spec.Key())
	s.keys[spec.Key()] = spec.Name
	if spec.Check == nil {
		// Not checked any more: earlier decisions no longer apply.
		for _, r := range e.reals {
			r.Health = nil
		}
	}
	e.spec, e.modif = spec, idx
	return e.export(), nil
}

// initialHealth is a new real server's health: down until checked when the
// service's check starts down, else no decision (up).
func initialHealth(spec model.ServiceSpec, idx uint64) *model.RealHealth {
	if spec.Check != nil && spec.Check.StartDown {
		return &model.RealHealth{Up: false, Since: idx, Reason: "start_down: not checked yet"}
	}
	return nil
}

// setHealth applies a batch of health transitions; it returns how many
// took effect.
func (s *state) setHealth(idx uint64, c *SetHealth) (any, *model.Error) {
	if len(c.Changes) > MaxHealthBatch {
		return nil, model.Invalid("changes", "%d changes in one batch (at most %d)", len(c.Changes), MaxHealthBatch)
	}
	for i, ch := range c.Changes {
		if ch.Weight != nil && (*ch.Weight < 0 || *ch.Weight > model.MaxWeight) {
			return nil, model.Invalid(fmt.Sprintf("changes[%d].weight", i), "%d is out of range (0-%d)", *ch.Weight, model.MaxWeight)
		}
	}
	n := 0
	for _, ch := range c.Changes {
		e := s.services[ch.Service]
		if e == nil || e.spec.Check == nil {
			continue
		}
		if ch.Check != "" && ch.Check != e.spec.Check.Hash() {
			continue // decided for a check that has changed since
		}
		r := e.reals[ch.Key]
		if r == nil {
			continue
		}
		weight := ch.Weight
		if !ch.Up {
			weight = nil // a real server decided down has no dynamic weight
		}
		since := idx
		if r.Health != nil && r.Health.Up == ch.Up {
			if model.SameWeight(r.Health.Weight, weight) {
				continue
			}
			since = r.Health.Since // a weight change alone: up since the same index
		}
		reason := ch.Reason
		if len(reason) > 512 {
			reason = reason[:512]
		}
		r.Health = &model.RealHealth{Up: ch.Up, Since: since, Reason: reason, Weight: model.CloneWeight(weight)}
		n++
	}
	return n, nil
}

func keyField(s model.ServiceSpec) string {
	if s.Fwmark != 0 {
		return "fwmark"
	}
	return "address"
}

func sortedKeys[V any](m map[string]V) []string {
	ks := slices.Collect(maps.Keys(m))
	sort.Strings(ks)
	return ks
}

// export returns a deep copy of the service as the public type, its real
// servers in address order (numeric, IPv4 before IPv6), then port order.
func (e *service) export() model.Service {
	out := model.Service{ServiceSpec: e.spec, CreateIndex: e.create, ModifyIndex: e.modif, Reals: make([]model.RealServer, 0, len(e.reals)), QuorumLost: e.quorumLost}
	out.SchedFlags = slices.Clone(e.spec.SchedFlags)
	type keyed struct {
		ap netip.AddrPort
		r  *model.RealServer
	}
	ks := make([]keyed, 0, len(e.reals))
	for k, r := range e.reals {
		ap, _ := netip.ParseAddrPort(k) // keys are canonical addr:port
		ks = append(ks, keyed{ap, r})
	}
	slices.SortFunc(ks, func(a, b keyed) int { return a.ap.Compare(b.ap) })
	for _, k := range ks {
		out.Reals = append(out.Reals, *k.r)
	}
	return out
}

// Dump is a complete, canonical view of the state: slices sorted by key. It
// is also the snapshot format, so two directors with equal state produce
// byte-identical snapshots.
type Dump struct {
	Version  int             `json:"version"`
	Index    uint64          `json:"index"`
	Services []model.Service `json:"services"`
	VIPs     []model.VIP     `json:"vips"`
	Settings model.Settings  `json:"settings"`
	Nodes    []model.Node    `json:"nodes"`
	// LastRelease: the last planned VIP release not cancelled since.
	LastRelease *model.LeaseRelease `json:"last_release,omitempty"`
	// ClusterID names the cluster (InitCluster); "" before it is named.
	ClusterID string `json:"cluster_id,omitempty"`
}

const dumpVersion = 1

func (s *state) dump() Dump {
	d := Dump{Version: dumpVersion, Index: s.index, Settings: s.settings, ClusterID: s.cluster,
		Services: make([]model.Service, 0, len(s.services)), VIPs: make([]model.VIP, 0, len(s.vips)), Nodes: make([]model.Node, 0, len(s.nodes))}
	for _, k := range sortedKeys(s.services) {
		d.Services = append(d.Services, s.services[k].export())
	}
	for _, k := range sortedKeys(s.vips) {
		d.VIPs = append(d.VIPs, *s.vips[k])
	}
	for _, k := range sortedKeys(s.nodes) {
		d.Nodes = append(d.Nodes, *s.nodes[k])
	}
	if s.release != nil {
		r := *s.release
		d.LastRelease = &r
	}
	return d
}

// stateFromDump rebuilds a state from a dump, checking the invariants a
// state must hold (unique names and keys) so a corrupt snapshot is refused.
func stateFromDump(d Dump) (*state, error) {
	if d.Version != dumpVersion {
		return nil, fmt.Errorf("snapshot version %d is not supported (this director reads %d)", d.Version, dumpVersion)
	}
	s := newState()
	s.index = d.Index
	s.fullBefore = d.Index // readers behind a restore rebuild fully
	s.settings = d.Settings
	s.cluster = d.ClusterID
	for _, sv := range d.Services {
		if _, dup := s.services[sv.Name]; dup {
			return nil, fmt.Errorf("snapshot: service %q twice", sv.Name)
		}
		if _, dup := s.keys[sv.Key()]; dup {
			return nil, fmt.Errorf("snapshot: service key %s twice", sv.Key())
		}
		e := &service{spec: sv.ServiceSpec, reals: make(map[string]*model.RealServer, len(sv.Reals)), create: sv.CreateIndex, modif: sv.ModifyIndex, touched: d.Index, quorumLost: sv.QuorumLost}
		for i := range sv.Reals {
			r := sv.Reals[i]
			e.reals[r.Key()] = &r
		}
		s.services[sv.Name] = e
		s.keys[sv.Key()] = sv.Name
	}
	for i := range d.VIPs {
		v := d.VIPs[i]
		s.vips[v.Key()] = &v
	}
	for i := range d.Nodes {
		n := d.Nodes[i]
		s.nodes[n.ID] = &n
	}
	if d.LastRelease != nil {
		r := *d.LastRelease
		s.release = &r
	}
	return s, nil
}

// checkCaps refuses a service (and real servers) that the dataplane of a
// registered director cannot express, naming the director: every director
// programs every service, so one that cannot would silently differ.
// With single, reals holds the one real server being written and fields are
// named without a reals[i] prefix.
func (s *state) checkCaps(spec model.ServiceSpec, reals []model.RealServer, single bool) *model.Error {
	field := realField(single, nil)
	for _, id := range sortedKeys(s.nodes) {
		n := s.nodes[id]
		c := n.Caps
		if c == nil {
			continue
		}
		who := fmt.Sprintf("the %s dataplane of director %s", n.Dataplane, n.ID)
		if !slices.Contains(c.Schedulers, spec.Scheduler) {
			return model.Invalid("scheduler", "%q cannot be expressed by %s (it supports %s)", spec.Scheduler, who, strings.Join(c.Schedulers, ", "))
		}
		for _, f := range spec.SchedFlags {
			if !slices.Contains(c.Flags, f) {
				return model.Invalid("sched_flags", "%q cannot be expressed by %s", f, who)
			}
		}
		if spec.Persistence != 0 && !c.Persistence {
			return model.Invalid("persistence", "persistence cannot be expressed by %s", who)
		}
		if spec.Fwmark != 0 && !c.Fwmark {
			return model.Invalid("fwmark", "fwmark services cannot be expressed by %s", who)
		}
		if !slices.Contains(c.Forwards, spec.Forward) {
			return model.Invalid("forward", "%s forwarding cannot be expressed by %s (it supports %s)", spec.Forward, who, strings.Join(c.Forwards, ", "))
		}
		if ss := spec.SorryServer; ss != nil {
			f := ss.Forward
			if f == "" {
				f = spec.Forward
			}
			if !slices.Contains(c.Forwards, f) {
				return model.Invalid("sorry_server.forward", "%s forwarding cannot be expressed by %s", f, who)
			}
		}
		for i, r := range reals {
			if f := spec.EffectiveForward(r); !slices.Contains(c.Forwards, f) {
				return model.Invalid(field(i, "forward"), "%s forwarding cannot be expressed by %s", f, who)
			}
			if (r.UpperThreshold != 0 || r.LowerThreshold != 0) && !c.Thresholds {
				return model.Invalid(field(i, "upper_threshold"), "connection thresholds cannot be expressed by %s", who)
			}
		}
	}
	return nil
}

// realField names field f of the i-th real server of a write: f alone for
// a write of one real server (single), reals[i].f, or reals[key].f when
// keys are given (a service update checking the real servers it has).
func realField(single bool, keys []string) func(i int, f string) string {
	return func(i int, f string) string {
		switch {
		case single:
			return f
		case keys != nil:
			return "reals[" + keys[i] + "]." + f
		}
		return fmt.Sprintf("reals[%d].%s", i, f)
	}
}

// crossTarget is a destination of a service in the other address family:
// a real server or the sorry server.
type crossTarget struct {
	field, addr, fwd string
	what             string // "real server 192.0.2.1:80", "sorry server 192.0.2.9"
}

// crossTargets returns the real servers (raw or normalised) and the sorry
// server of spec whose address is of the other family than the service.
func crossTargets(spec model.ServiceSpec, reals []model.RealServer, field func(int, string) string) []crossTarget {
	other := func(addr string) bool {
		a, err := netip.ParseAddr(addr)
		if err != nil {
			return false // refused by NormalizeReal
		}
		fam := model.FamilyInet6
		if a.Unmap().Is4() {
			fam = model.FamilyInet
		}
		return fam != spec.Family
	}
	var out []crossTarget
	for i, r := range reals {
		if other(r.Address) {
			out = append(out, crossTarget{field(i, "address"), r.Address, spec.EffectiveForward(r), "real server " + r.Key()})
		}
	}
	if ss := spec.SorryServer; ss != nil && other(ss.Address) {
		fwd := ss.Forward
		if fwd == "" {
			fwd = spec.Forward
		}
		out = append(out, crossTarget{"sorry_server.address", ss.Address, fwd, "sorry server " + ss.Address})
	}
	return out
}

// syncConflict names the first registered director whose dataplane cannot
// program t while the connection-sync daemon runs ("the ipvs dataplane of
// director d1"; model.DataplaneCaps.CrossesFamilies), or returns "".
func (s *state) syncConflict(t crossTarget) (who string) {
	for _, id := range sortedKeys(s.nodes) {
		n := s.nodes[id]
		if n.Caps == nil {
			continue
		}
		if ok, syncOK := n.Caps.CrossesFamilies(t.fwd); ok && !syncOK {
			return fmt.Sprintf("the %s dataplane of director %s", n.Dataplane, n.ID)
		}
	}
	return ""
}

// checkSyncConflict refuses, while the connection-sync daemon is enabled, a
// real server or sorry server of the other address family that a
// registered director's dataplane would have to program beside the daemon:
// the kernel refuses the two together, on every retry.
func (s *state) checkSyncConflict(spec model.ServiceSpec, reals []model.RealServer, field func(int, string) string) *model.Error {
	if !s.settings.Sync.Enabled {
		return nil
	}
	for _, t := range crossTargets(spec, reals, field) {
		if who := s.syncConflict(t); who != "" {
			return model.Invalid(t.field, "%s is not of service %s's family (%s): %s cannot program a %s destination of the other family while the connection-sync daemon is enabled (sync.enabled; the kernel refuses the two together)",
				t.addr, spec.Name, spec.Family, who, t.fwd)
		}
	}
	return nil
}

// checkSyncCanStart refuses turning the connection-sync daemon on while a
// service has a real server or sorry server of the other address family
// that a registered director programs (see checkSyncConflict).
func (s *state) checkSyncCanStart() *model.Error {
	for _, name := range sortedKeys(s.services) {
		e := s.services[name]
		keys := sortedKeys(e.reals)
		reals := make([]model.RealServer, len(keys))
		for i, k := range keys {
			reals[i] = *e.reals[k]
		}
		for _, t := range crossTargets(e.spec, reals, realField(false, keys)) {
			if who := s.syncConflict(t); who != "" {
				return model.Invalid("sync.enabled", "the connection-sync daemon cannot run on %s while service %s has %s of the other address family (the kernel refuses the two together; remove it, or give it an address of the service's family, first)",
					who, name, t.what)
			}
		}
	}
	return nil
}

// checkNotDirectorAddr refuses a VIP that is a registered director's own
// raft or API address: the VIP moves between directors, and taking it away
// would cut that director off.
func (s *state) checkNotDirectorAddr(v model.VIP) *model.Error {
	for _, id := range sortedKeys(s.nodes) {
		n := s.nodes[id]
		for _, hp := range []string{n.RaftAddr, n.APIAddr} {
			if host, _, err := net.SplitHostPort(hp); err == nil && model.VIPKey(host) == v.Key() {
				return model.Invalid("address", "%s is director %s's own address; a VIP must be an address no director has", v.Key(), n.ID)
			}
		}
	}
	return nil
}
