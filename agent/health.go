package agent

// Health checking, wired (issue 5). Every director that is not a witness
// probes the real servers of the checked services (health.Prober: one probe
// per unique checked address and spec, however many services share it) and
// publishes its changed results over encrypted memberlist gossip
// (cluster/gossip). The leader, and only while it leads, combines the views
// of the live directors with each service's policy (health.Decide) and
// commits the transitions in one fsm.SetHealth; every director's dataplane
// follows the replicated decision. A script check's dynamic weight rides
// along: in the prober's state, the gossiped observation (wire version 3),
// the decision and the committed RealHealth, once every registered
// director reads it (mayDeclareWeights, fsm.FSM.HealthWeights).

import (
	"bytes"
	"context"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/raftlb/raftlb/api/wire"
	"github.com/raftlb/raftlb/cluster/gossip"
	"github.com/raftlb/raftlb/fsm"
	"github.com/raftlb/raftlb/health"
	"github.com/raftlb/raftlb/model"
)

// Gossip defaults.
const (
	// DefaultGossipPort is the gossip port (UDP and TCP) when -gossip-addr
	// is not given: on the raft address's host.
	DefaultGossipPort = 7482
	// GossipKeyLabel is the HKDF-SHA256 info string that derives the
	// default gossip key from the cluster token (no salt, 32 bytes:
	// AES-256).
	GossipKeyLabel = "raftlb gossip key v1"

	// memberlist's own gossip rounds (membership changes, the leave
	// announcement); health observations do not wait for them
	// (cluster/gossip sends them in acknowledged batches).
	gossipInterval = 100 * time.Millisecond
	// Each of memberlist's own messages is sent 4 × ⌈log10(members+1)⌉
	// times (its default): with 2, peers picked at random with repeats
	// missed about 1 % of messages in a three-director cluster.
	gossipRetransmitMult = 4
	gossipTCPTimeout     = 3 * time.Second
	defaultHealthBatch   = 20 * time.Millisecond
	healthJoinEvery      = time.Second
	healthRepass         = time.Second // the leader re-evaluates at least this often
	healthFollowerRepass = 250 * time.Millisecond
)

// withdrawnErr marks an observation of a probe this director no longer
// runs (its service was deleted or its check changed). Gossip has no
// deletion, so the withdrawal is published as an observation that the
// decision ignores: a later service that brings the probe back must not
// inherit an old verdict.
const withdrawnErr = "\x00withdrawn: not checked here any more"

// DeriveGossipKey derives the AES-256 gossip key from the cluster token:
// HKDF-SHA256(token, salt none, info GossipKeyLabel), 32 bytes.
func DeriveGossipKey(token string) ([]byte, error) {
	return hkdf.Key(sha256.New, []byte(token), nil, GossipKeyLabel, 32)
}

// ParseGossipKey reads a -gossip-key-file's content: the base64 (standard
// or URL alphabet, padded or not) of 16, 24 or 32 bytes.
func ParseGossipKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil {
			switch len(b) {
			case 16, 24, 32:
				return b, nil
			}
			return nil, fmt.Errorf("the key is %d bytes; want 16, 24 or 32 (e.g. head -c 32 /dev/urandom | base64)", len(b))
		}
	}
	return nil, errors.New("not base64 (e.g. head -c 32 /dev/urandom | base64)")
}

// gossipNet is what the health wiring needs of cluster/gossip (faked in
// tests).
type gossipNet interface {
	Publish([]gossip.Observation) error
	Views() map[string]map[string]gossip.Observation
	Members() []gossip.Member
	Join([]string) (int, error)
	Addr() string
	Stats() gossip.Stats
}

// probeSet is what the health wiring needs of health.Prober.
type probeSet interface {
	SetTargets([]health.Target) error
	Snapshot() []health.State
	Stats() health.Stats
}

// healthCore is the health wiring of one director, independent of how the
// gossip, the prober and raft are provided.
type healthCore struct {
	self     string
	log      *slog.Logger
	fsm      *fsm.FSM
	isLeader func() bool
	leaderCh <-chan bool // may be nil
	apply    func(fsm.Command) error
	batch    time.Duration
	g        gossipNet
	p        probeSet // nil: this director does not probe (witness)

	wake chan struct{}

	mu        sync.Mutex
	targets   map[string]health.Key          // probes run here, by target name
	published map[string]gossip.Observation  // our last published observation per target
	seen      map[string]map[string]seenView // origin → target → when it last changed
	stats     wire.DeciderStats
}

type seenView struct {
	seq uint64
	at  time.Time
}

func newHealthCore(self string, log *slog.Logger, f *fsm.FSM, isLeader func() bool, leaderCh <-chan bool,
	apply func(fsm.Command) error, batch time.Duration) *healthCore {
	if batch <= 0 {
		batch = defaultHealthBatch
	}
	return &healthCore{self: self, log: log, fsm: f, isLeader: isLeader, leaderCh: leaderCh, apply: apply, batch: batch,
		wake: make(chan struct{}, 1), targets: map[string]health.Key{},
		published: map[string]gossip.Observation{}, seen: map[string]map[string]seenView{}}
}

// poke asks the decision loop for a pass; it never blocks (gossip's
// OnChange).
func (h *healthCore) poke() {
	select {
	case h.wake <- struct{}{}:
	default:
	}
}

// targetsOf returns a function giving the probe target and key of each
// real server of checked service s, false when its address does not parse.
// The spec part of a key (a hash of the JSON spec, Target.Key) is the same
// for every real server of s, so it is computed once: with 10,000 real
// servers the leader's every decision pass spent most of its time on
// those hashes.
func targetsOf(s model.Service) func(model.RealServer) (health.Target, health.Key, bool) {
	var spec string
	return func(r model.RealServer) (health.Target, health.Key, bool) {
		a, err := netip.ParseAddr(r.Address)
		if err != nil {
			return health.Target{}, health.Key{}, false
		}
		t := health.Target{Addr: netip.AddrPortFrom(a, uint16(r.Port)), Spec: *s.Check}
		if spec == "" {
			spec = t.Key().Spec
		}
		return t, health.Key{Addr: t.CheckAddr(), Spec: spec}, true
	}
}

// isChecked reports whether service s is health checked.
func isChecked(s model.Service) bool { return s.Check != nil && s.Check.Type != model.CheckNone }

// wantTargets returns the probes of every checked service, by target name.
func wantTargets(services []model.Service) (map[string]health.Key, []health.Target) {
	keys := map[string]health.Key{}
	var ts []health.Target
	for _, s := range services {
		if !isChecked(s) {
			continue
		}
		target := targetsOf(s)
		for _, r := range s.Reals {
			t, k, ok := target(r)
			if !ok {
				continue
			}
			name := health.TargetName(k)
			if _, dup := keys[name]; !dup {
				keys[name] = k
				ts = append(ts, t)
			}
		}
	}
	return keys, ts
}

// syncTargets gives the prober the probes of the current state and
// withdraws the observations of the probes that are gone.
func (h *healthCore) syncTargets() {
	if h.p == nil {
		return
	}
	keys, ts := wantTargets(h.fsm.Services())
	h.mu.Lock()
	defer h.mu.Unlock()
	if maps.Equal(keys, h.targets) {
		return
	}
	old := h.targets
	h.targets = keys // before SetTargets: the first events of new probes are published
	if err := h.p.SetTargets(ts); err != nil {
		h.log.Warn("some health checks cannot run", "err", err)
	}
	var gone []gossip.Observation
	for name := range old {
		if _, ok := keys[name]; ok {
			continue
		}
		if _, ok := h.published[name]; ok {
			gone = append(gone, gossip.Observation{Target: name, Up: true, Err: withdrawnErr})
			delete(h.published, name)
		}
	}
	if len(gone) > 0 {
		if err := h.g.Publish(gone); err != nil {
			h.log.Warn("gossip publish", "err", err)
		}
		h.poke()
	}
}

// onEvent is the prober's callback (worker goroutines): it publishes the
// target's state when its up/down, its dynamic weight or its error
// changed. Gossip sends a change of up/down or of the weight (or a first
// view) to the other directors at once, batched with the others of the
// moment and ahead of error-text-only changes, and sends every view of
// this director again to a director that joins or restarts.
func (h *healthCore) onEvent(ev health.Event) {
	name := health.TargetName(ev.Key)
	o := gossip.Observation{Target: name, Up: ev.Up, Latency: ev.LastLatency, Err: ev.LastErr, Weight: model.CloneWeight(ev.Weight)}
	h.mu.Lock()
	if _, ok := h.targets[name]; !ok {
		h.mu.Unlock()
		return // withdrawn meanwhile
	}
	last, ok := h.published[name]
	if ok && last.Up == o.Up && last.Err == o.Err && model.SameWeight(last.Weight, o.Weight) {
		h.mu.Unlock()
		return
	}
	h.published[name] = o
	err := h.g.Publish([]gossip.Observation{o})
	h.mu.Unlock()
	if err != nil {
		h.log.Warn("gossip publish", "err", err)
	}
	h.poke()
}

// targetLoop follows the replicated state with the prober's targets.
func (h *healthCore) targetLoop(ctx context.Context) {
	for {
		changed := h.fsm.Changed()
		h.syncTargets()
		select {
		case <-ctx.Done():
			return
		case <-changed:
		}
	}
}

// decideLoop runs a pass after every gossip change, own result, state
// change or leadership change, coalesced over the batching window, and at
// least every healthRepass.
func (h *healthCore) decideLoop(ctx context.Context) {
	tick := time.NewTicker(healthRepass)
	defer tick.Stop()
	leaderCh := h.leaderCh
	for {
		changed := h.fsm.Changed()
		select {
		case <-ctx.Done():
			return
		case <-h.wake:
		case <-changed:
		case <-tick.C:
		case _, ok := <-leaderCh:
			if !ok {
				leaderCh = nil
			}
		}
		if !sleep(ctx, h.batch) {
			return
		}
		select { // what arrived during the window is in this pass
		case <-h.wake:
		default:
		}
		h.pass()
		if !h.isLeader() {
			// A follower only notes when views change (updated_at in
			// /v1/health): at most a few times a second, as copying
			// every view costs with thousands of targets.
			t := time.NewTimer(healthFollowerRepass)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			case _, ok := <-leaderCh:
				if !ok {
					leaderCh = nil
				}
			}
			t.Stop()
		}
	}
}

// liveDirectors are the directors whose views count: alive (or suspect) in
// gossip and registered as non-witness directors.
func liveDirectors(members []gossip.Member, nodes []model.Node) []string {
	reg := make(map[string]model.Node, len(nodes))
	for _, n := range nodes {
		reg[n.ID] = n
	}
	var out []string
	for _, m := range members {
		if m.State != gossip.StateAlive && m.State != gossip.StateSuspect {
			continue
		}
		if n, ok := reg[m.Name]; ok && !n.Witness {
			out = append(out, m.Name)
		}
	}
	slices.Sort(out)
	return out
}

// checkedReals lists every real server of every checked service with its
// committed decision, for health.Decide.
func checkedReals(services []model.Service) []health.Checked {
	var out []health.Checked
	for _, s := range services {
		if !isChecked(s) {
			continue
		}
		hash := s.Check.Hash()
		target := targetsOf(s)
		for _, r := range s.Reals {
			_, k, ok := target(r)
			if !ok {
				continue
			}
			c := health.Checked{Service: s.Name, Real: r.Key(), Target: health.TargetName(k), Check: hash,
				Policy: s.EffectivePolicy(), Weight: r.Weight}
			if r.Health != nil {
				c.Decided, c.Up, c.Dynamic = true, r.Health.Up, r.Health.Weight
			}
			out = append(out, c)
		}
	}
	return out
}

// decisionViews converts gossiped views, dropping withdrawn observations.
// Without weights (the cluster cannot store them yet: a registered
// director does not read them) every view's weight is unknown, so the
// decision keeps the committed weights and commits none.
func decisionViews(views map[string]map[string]gossip.Observation, weights bool) map[string]map[string]health.View {
	out := make(map[string]map[string]health.View, len(views))
	for d, obs := range views {
		m := make(map[string]health.View, len(obs))
		for t, o := range obs {
			if o.Err == withdrawnErr {
				continue
			}
			v := health.View{Up: o.Up, Err: o.Err, Weight: o.Weight, WeightUnknown: o.WeightUnknown || !weights}
			if v.WeightUnknown {
				v.Weight = nil
			}
			m[t] = v
		}
		out[d] = m
	}
	return out
}

// mayDeclareWeights reports whether this director may register
// Node.HealthWeights, a field of encoding version 3 that a director of an
// older release cannot decode (its FSM would stop): once it has, or when
// every registered director is a live gossip member that reads wire
// version 3 (so runs this release or a later one). Once registered it is
// kept: a director that dies later still reads weights when it returns.
func (h *healthCore) mayDeclareWeights() bool {
	if n, ok := h.fsm.Node(h.self); ok && n.HealthWeights {
		return true
	}
	if h.g == nil {
		return false
	}
	reads := map[string]bool{}
	for _, m := range h.g.Members() {
		if m.State == gossip.StateAlive && m.Weights {
			reads[m.Name] = true
		}
	}
	nodes := h.fsm.Nodes()
	for _, n := range nodes {
		if !reads[n.ID] {
			return false
		}
	}
	return len(nodes) > 0
}

// track records when each gossiped view last changed (a new Seq).
func (h *healthCore) track(views map[string]map[string]gossip.Observation, now time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for origin := range h.seen {
		if _, ok := views[origin]; !ok {
			delete(h.seen, origin)
		}
	}
	for origin, obs := range views {
		s := h.seen[origin]
		if s == nil {
			s = make(map[string]seenView, len(obs))
			h.seen[origin] = s
		}
		for t, o := range obs {
			if v, ok := s[t]; !ok || v.seq != o.Seq {
				s[t] = seenView{seq: o.Seq, at: now}
			}
		}
		if len(s) > len(obs) {
			for t := range s {
				if _, ok := obs[t]; !ok {
					delete(s, t)
				}
			}
		}
	}
}

// pass records the views and, on the leader, decides and commits.
func (h *healthCore) pass() {
	views := h.g.Views()
	now := time.Now()
	h.track(views, now)
	if !h.isLeader() {
		return
	}
	checked := checkedReals(h.fsm.Services())
	if len(checked) == 0 {
		return
	}
	live := liveDirectors(h.g.Members(), h.fsm.Nodes())
	ts := health.Decide(checked, live, decisionViews(views, h.fsm.HealthWeights()))
	h.mu.Lock()
	h.stats.Passes++
	h.stats.LastPass = &now
	h.mu.Unlock()
	for len(ts) > 0 {
		n := min(len(ts), fsm.MaxHealthBatch)
		cmd := &fsm.SetHealth{Changes: make([]fsm.HealthChange, 0, n)}
		for _, t := range ts[:n] {
			cmd.Changes = append(cmd.Changes, fsm.HealthChange{Service: t.Service, Key: t.Real, Up: t.Up, Reason: t.Reason, Check: t.Check, Weight: t.Weight})
		}
		ts = ts[n:]
		err := h.apply(cmd)
		h.mu.Lock()
		if err != nil {
			h.stats.Errors++
			h.stats.LastError = err.Error()
		} else {
			h.stats.Commits++
			h.stats.Transitions += uint64(len(cmd.Changes))
		}
		h.mu.Unlock()
		if err != nil {
			h.log.Warn("cannot commit health decisions; retrying", "changes", len(cmd.Changes), "err", err)
			return
		}
		for _, c := range cmd.Changes {
			if c.Weight != nil {
				h.log.Info("health decision", "service", c.Service, "real", c.Key, "up", c.Up, "weight", *c.Weight, "reason", c.Reason)
			} else {
				h.log.Info("health decision", "service", c.Service, "real", c.Key, "up", c.Up, "reason", c.Reason)
			}
		}
	}
}

// joinLoop keeps this director in gossip with every registered director:
// whenever one is not a live member it joins its registered address again.
func (h *healthCore) joinLoop(ctx context.Context) {
	for {
		var missing []string
		alive := map[string]bool{}
		for _, m := range h.g.Members() {
			if m.State == gossip.StateAlive || m.State == gossip.StateSuspect {
				alive[m.Name] = true
			}
		}
		for _, n := range h.fsm.Nodes() {
			if n.ID != h.self && n.GossipAddr != "" && !alive[n.ID] {
				missing = append(missing, n.GossipAddr)
			}
		}
		if len(missing) > 0 {
			if n, err := h.g.Join(missing); err != nil {
				h.log.Debug("gossip join failed; retrying", "addrs", missing, "err", err)
			} else {
				h.log.Info("joined gossip", "contacted", n, "addrs", missing)
			}
		}
		if !sleep(ctx, healthJoinEvery) {
			return
		}
	}
}

// report builds GET /v1/health (service "" = every checked service).
func (h *healthCore) report(service string) *wire.HealthReport {
	views := h.g.Views()
	members := h.g.Members()
	nodes := h.fsm.Nodes()
	live := liveDirectors(members, nodes)
	isLive := map[string]bool{}
	for _, d := range live {
		isLive[d] = true
	}
	out := &wire.HealthReport{NodeID: h.self, Leader: h.isLeader(), Directors: directors(members, nodes, isLive),
		Services: []wire.ServiceHealth{}}
	gs := h.gossipStatus(members)
	out.Gossip = &gs
	own := map[string]health.State{}
	if h.p != nil {
		st := wire.ProberStats(h.p.Stats())
		out.Prober = &st
		for _, s := range h.p.Snapshot() {
			own[health.TargetName(s.Key)] = s
		}
	}
	h.mu.Lock()
	out.Decider = h.stats
	seen := make(map[string]map[string]seenView, len(h.seen))
	for o, m := range h.seen {
		seen[o] = maps.Clone(m)
	}
	h.mu.Unlock()

	origins := slices.Sorted(maps.Keys(views))
	for _, s := range h.fsm.Services() {
		if !isChecked(s) || (service != "" && s.Name != service) {
			continue
		}
		spec := *s.Check
		sh := wire.ServiceHealth{Name: s.Name, Type: s.Check.Type, Check: s.Check.Hash(), Policy: s.EffectivePolicy(),
			Spec: &spec, QuorumLost: s.QuorumLost, Reals: []wire.RealHealthReport{}}
		target := targetsOf(s)
		for _, r := range s.Reals {
			rr := wire.RealHealthReport{Key: r.Key(), State: r.State, Decision: "none", Views: []wire.DirectorView{}}
			if r.Health != nil {
				rr.Decision, rr.Since, rr.Reason, rr.Weight = "down", r.Health.Since, r.Health.Reason, r.Health.Weight
				if r.Health.Up {
					rr.Decision = "up"
				}
			}
			if _, k, ok := target(r); ok {
				rr.Target = health.TargetName(k)
			}
			for _, origin := range origins {
				o, ok := views[origin][rr.Target]
				if !ok || o.Err == withdrawnErr {
					continue
				}
				v := wire.DirectorView{Director: origin, Live: isLive[origin], Up: o.Up, Err: o.Err, LatencyMS: ms(o.Latency),
					Weight: o.Weight, WeightUnknown: o.WeightUnknown}
				if sv, ok := seen[origin][rr.Target]; ok && sv.seq == o.Seq {
					at := sv.at.UTC()
					v.UpdatedAt = &at
				}
				if origin == h.self {
					if st, ok := own[rr.Target]; ok && st.Checked {
						at := st.LastCheck.UTC()
						v.CheckedAt, v.LatencyMS, v.Err = &at, ms(st.LastLatency), st.LastErr
					}
				}
				rr.Views = append(rr.Views, v)
			}
			sh.Reals = append(sh.Reals, rr)
		}
		out.Services = append(out.Services, sh)
	}
	return out
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// directors lists the registered directors and the gossip members.
func directors(members []gossip.Member, nodes []model.Node, live map[string]bool) []wire.HealthDirector {
	byID := map[string]*wire.HealthDirector{}
	for _, n := range nodes {
		byID[n.ID] = &wire.HealthDirector{ID: n.ID, Registered: true, Witness: n.Witness, Gossip: "unknown", GossipAddr: n.GossipAddr}
	}
	for _, m := range members {
		d := byID[m.Name]
		if d == nil {
			d = &wire.HealthDirector{ID: m.Name}
			byID[m.Name] = d
		}
		d.Gossip, d.GossipAddr = string(m.State), m.Addr
	}
	out := make([]wire.HealthDirector, 0, len(byID))
	for _, id := range slices.Sorted(maps.Keys(byID)) {
		d := *byID[id]
		d.Live = live[id]
		out = append(out, d)
	}
	return out
}

func (h *healthCore) gossipStatus(members []gossip.Member) wire.GossipStatus {
	gs := wire.GossipStatus{Addr: h.g.Addr(), Stats: wire.GossipStats(h.g.Stats()), Members: make([]wire.GossipMember, 0, len(members))}
	for _, m := range members {
		gs.Members = append(gs.Members, wire.GossipMember{Name: m.Name, Addr: m.Addr, State: string(m.State)})
	}
	return gs
}

// healthStats is the "health" part of /v1/status; nil while this director
// has nothing to check and never decided.
func (h *healthCore) healthStats() *wire.HealthStatus {
	out := &wire.HealthStatus{}
	if h.p != nil {
		if st := wire.ProberStats(h.p.Stats()); st.Targets > 0 {
			out.Prober = &st
		}
	}
	h.mu.Lock()
	out.Decider = h.stats
	h.mu.Unlock()
	if out.Prober == nil && out.Decider.Passes == 0 {
		return nil
	}
	return out
}

// ---- the agent's side ----

// agentHealth is the running health wiring of an Agent.
type agentHealth struct {
	core   *healthCore
	gossip *gossip.Gossip
	prober *health.Prober
}

// gossipKey is the configured key, or the one derived from the token, or
// (a -dev director without a token, alone) a random one; extra are the
// keys derived from the token file's other tokens, accepted too while a
// rotation is in progress (docs/operations.md, "Security").
func (a *Agent) gossipKey() (key []byte, extra [][]byte, err error) {
	switch {
	case len(a.cfg.GossipKey) > 0:
		return a.cfg.GossipKey, nil, nil
	case a.cfg.Token != "":
		if key, err = DeriveGossipKey(a.cfg.Token); err != nil {
			return nil, nil, err
		}
		for _, t := range a.cfg.ExtraTokens {
			k, err := DeriveGossipKey(t)
			if err != nil {
				return nil, nil, err
			}
			extra = append(extra, k)
		}
		return key, extra, nil
	}
	k := make([]byte, 32)
	_, err = rand.Read(k)
	return k, nil, err
}

// gossipAddrs returns where to bind gossip, what to advertise, and whether
// the bind address was given (a default that is taken falls back to a
// free port, logged).
func (a *Agent) gossipAddrs() (bind, advertise string, explicit bool, err error) {
	if a.cfg.GossipAddr != "" {
		if _, _, err := net.SplitHostPort(a.cfg.GossipAddr); err != nil {
			return "", "", true, fmt.Errorf("-gossip-addr %q: %v", a.cfg.GossipAddr, err)
		}
		bind, explicit = a.cfg.GossipAddr, true
	} else {
		host, port, err := net.SplitHostPort(a.cfg.RaftAddr)
		if err != nil {
			return "", "", false, fmt.Errorf("-raft-addr %q: %v", a.cfg.RaftAddr, err)
		}
		p := strconv.Itoa(DefaultGossipPort)
		if port == "0" {
			p = "0" // an ephemeral raft port (tests, -dev): an ephemeral gossip port
		}
		bind = net.JoinHostPort(host, p)
	}
	advertise = a.cfg.GossipAdvertise
	if advertise == "" && a.cfg.RaftAdvertise != "" {
		if h, _, err := net.SplitHostPort(a.cfg.RaftAdvertise); err == nil {
			if _, bp, err := net.SplitHostPort(bind); err == nil && bp != "0" {
				advertise = net.JoinHostPort(h, bp)
			}
		}
	}
	return bind, advertise, explicit, nil
}

// startHealth starts gossip, the prober (unless a witness) and the loops.
func (a *Agent) startHealth(ctx context.Context) error {
	key, extraKeys, err := a.gossipKey()
	if err != nil {
		return fmt.Errorf("gossip key: %w", err)
	}
	bind, advertise, explicit, err := a.gossipAddrs()
	if err != nil {
		return err
	}
	apply := func(c fsm.Command) error { return a.applyInternal(c, 5*time.Second) }
	log := a.log.With("part", "health")
	core := newHealthCore(a.cfg.NodeID, log, a.fsm, a.node.IsLeader, a.node.LeaderChanges(), apply, a.cfg.HealthBatch)
	gcfg := gossip.Config{NodeID: a.cfg.NodeID, BindAddr: bind, AdvertiseAddr: advertise, Key: key, ExtraKeys: extraKeys,
		Logger:         hclog.New(&hclog.LoggerOptions{Name: "gossip", Level: hclog.LevelFromString(envOr(GossipLogLevelEnv, "error")), Output: shutdownNoise{os.Stderr}}),
		GossipInterval: gossipInterval, RetransmitMult: gossipRetransmitMult, TCPTimeout: gossipTCPTimeout,
		OnChange: core.poke}
	g, err := gossip.New(gcfg)
	if err != nil && !explicit {
		host, _, _ := net.SplitHostPort(bind)
		log.Warn("the default gossip address is taken; using a free port (set -gossip-addr to choose one)", "addr", bind, "err", err)
		gcfg.BindAddr = net.JoinHostPort(host, "0")
		if gcfg.AdvertiseAddr != "" {
			gcfg.AdvertiseAddr = ""
		}
		g, err = gossip.New(gcfg)
	}
	if err != nil {
		return fmt.Errorf("gossip on %s (-gossip-addr): %w", gcfg.BindAddr, err)
	}
	core.g = g
	ah := &agentHealth{core: core, gossip: g}
	if !a.cfg.Witness {
		ah.prober = health.NewProber(health.Options{Workers: a.cfg.HealthWorkers, OnEvent: core.onEvent})
		core.p = ah.prober
	}
	a.health = ah
	a.goRun(ctx, core.targetLoop)
	a.goRun(ctx, core.decideLoop)
	a.goRun(ctx, core.joinLoop)
	log.Info("health checking running", "gossip", g.Addr(), "probing", !a.cfg.Witness)
	return nil
}

// GossipLogLevelEnv sets memberlist's log level (default error).
const GossipLogLevelEnv = "RAFTLB_GOSSIP_LOG"

// shutdownNoise drops memberlist's "use of closed network connection"
// errors: its gossip timer can fire once more while it shuts down.
type shutdownNoise struct{ w io.Writer }

func (s shutdownNoise) Write(p []byte) (int, error) {
	if bytes.Contains(p, []byte("use of closed network connection")) {
		return len(p), nil
	}
	return s.w.Write(p)
}

// stopHealth leaves gossip (peers see "left" at once) and stops the
// prober. The loops have ended with the agent's context.
func (a *Agent) stopHealth() {
	h := a.health
	if h == nil {
		return
	}
	if h.prober != nil {
		h.prober.Close()
	}
	if err := h.gossip.Leave(500 * time.Millisecond); err != nil && !errors.Is(err, gossip.ErrShutdown) {
		a.log.Debug("gossip leave", "err", err)
	}
	_ = h.gossip.Shutdown()
}

// gossipAdvertised is the gossip address this director registers.
func (a *Agent) gossipAdvertised() string {
	if a.health == nil {
		return ""
	}
	return a.health.gossip.Addr()
}

// healthReport answers GET /v1/health.
func (a *Agent) healthReport(service string) *wire.HealthReport {
	if a.health == nil {
		return &wire.HealthReport{NodeID: a.cfg.NodeID, Services: []wire.ServiceHealth{}}
	}
	return a.health.core.report(service)
}

// mayDeclareWeights: whether this director registers Node.HealthWeights
// (healthCore.mayDeclareWeights).
func (a *Agent) mayDeclareWeights() bool {
	return a.health != nil && a.health.core.mayDeclareWeights()
}

// gossipStatus is the "gossip" part of /v1/status.
func (a *Agent) gossipStatus() *wire.GossipStatus {
	if a.health == nil {
		return nil
	}
	gs := a.health.core.gossipStatus(a.health.gossip.Members())
	return &gs
}

// healthStatus is the "health" part of /v1/status.
func (a *Agent) healthStatus() *wire.HealthStatus {
	if a.health == nil {
		return nil
	}
	if st := a.health.core.healthStats(); st != nil {
		return st
	}
	return nil // not a typed nil: omitted
}
