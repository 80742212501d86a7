// Package gossip shares every director's health-check results with every
// other director over hashicorp/memberlist, so the leader can combine all
// views of a real server.
//
// Each director publishes its own observations (Publish, changed results
// only); every director reads everyone's (Views). Changes travel as small
// encrypted memberlist broadcasts, one per (origin, target), a newer one
// replacing an older one still queued; a periodic full-state push/pull lets a
// director that missed broadcasts, or just (re)joined, converge. Per
// (origin, target) the newer (epoch, Seq) wins, where epoch identifies an
// incarnation of the origin. A director's view is kept while it is suspect
// and dropped when it dies or leaves.
//
// Gossip is always encrypted (AES-GCM, Config.Key); a node with another key
// cannot join.
//
// Threading: every exported method of Gossip is safe for concurrent use,
// including concurrently with Shutdown. memberlist calls the delegate
// callbacks (messages, push/pull state, membership events) concurrently on
// its own goroutines; they only take the Gossip's mutex for short, bounded
// work and never block on the network or on the caller. The lock order is
// Gossip.mu, then the broadcast queue's own lock; no callback that runs under
// the queue's lock takes Gossip.mu.
package gossip

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/memberlist"
)

// Sentinel errors; returned errors may wrap them, test with errors.Is.
var (
	// ErrConfig is returned by New for an invalid Config.
	ErrConfig = errors.New("gossip: invalid config")
	// ErrShutdown is returned by operations on a Gossip that is shut down.
	ErrShutdown = errors.New("gossip: shut down")
)

// Observation is one health-check result of one target as seen by one
// director.
type Observation struct {
	Target  string // e.g. "tcp/10.0.1.1:80#<spechash>"; at most MaxTargetLen bytes
	Up      bool
	Latency time.Duration
	Err     string // truncated to MaxErrLen bytes
	Seq     uint64 // per-origin sequence, assigned by Publish
}

// State is a member's state as seen by the local node. StateSuspect is
// reserved: see Members.
type State string

// Member states.
const (
	StateAlive   State = "alive"
	StateSuspect State = "suspect"
	StateDead    State = "dead"
	StateLeft    State = "left"
)

// Member is one director known to the local node.
type Member struct {
	Name  string
	Addr  string // host:port of its gossip endpoint
	State State
}

// Config configures a Gossip. Zero durations and counts take memberlist's
// LAN defaults (probe 1 s, gossip 200 ms to 3 nodes, push/pull 30 s,
// suspicion multiplier 4).
type Config struct {
	NodeID        string   // unique member name; required
	BindAddr      string   // host:port for UDP and TCP; port 0 picks one
	AdvertiseAddr string   // host:port others reach us at; empty = BindAddr
	Key           []byte   // AES key of 16, 24 or 32 bytes; required
	Join          []string // host:port of existing members; New fails if none answers
	Logger        hclog.Logger

	ProbeInterval    time.Duration
	ProbeTimeout     time.Duration
	GossipInterval   time.Duration
	GossipNodes      int
	PushPullInterval time.Duration
	SuspicionMult    int
	RetransmitMult   int
	TCPTimeout       time.Duration

	// MaxQueued bounds the broadcast queue; older broadcasts beyond it are
	// dropped (counted in Stats) and peers learn them by push/pull.
	// Default 16384.
	MaxQueued int
	// DepartedRetention is how long Members keeps listing a dead or left
	// member. Default 1 minute.
	DepartedRetention time.Duration

	// OnChange, if set, is called after another member's view changed (a
	// delta or a full state was applied) or the membership changed (a
	// member joined, was updated, died or left). It runs on memberlist's
	// goroutines, sometimes while memberlist holds its node lock: it must
	// return at once and must not call into this Gossip (signal a
	// channel). Calls are not coalesced.
	OnChange func()
}

// Stats are counters of one Gossip since New.
type Stats struct {
	// Wire bytes: everything memberlist sent and received (probes,
	// broadcasts, push/pull), after encryption.
	BytesSent, BytesReceived uint64
	// Exponentially smoothed rates of the above, bytes per second,
	// sampled every second.
	SentPerSec, ReceivedPerSec float64
	// Payload bytes of this package's own messages, before memberlist
	// framing, compression and encryption: deltas (and byes) sent as
	// broadcasts or directly (PublishNow), counted once per transmission,
	// and full states exchanged by push/pull.
	DeltaBytesSent, DeltaBytesReceived uint64
	StateBytesSent, StateBytesReceived uint64

	BroadcastsQueued     uint64 // deltas handed to the queue
	BroadcastsSuperseded uint64 // replaced in the queue by a newer delta of the same target
	BroadcastsDropped    uint64 // pruned because the queue was over MaxQueued
	BroadcastsSent       uint64 // delta transmissions (one per peer per send)
	DirectSent           uint64 // deltas sent directly by PublishNow (one per peer)
	QueueDepth           int

	DeltasApplied  uint64 // received deltas that changed a view
	StatesMerged   uint64 // received full states
	BadMessages    uint64 // dropped: garbage, wrong version, oversize
	StaleDiscarded uint64 // observations from departed members or older than known
}

// Gossip is one director's gossip endpoint. Create it with New.
type Gossip struct {
	name   string
	epoch  uint64
	log    hclog.Logger
	ml     *memberlist.Memberlist
	tr     *countingTransport
	queue  *memberlist.TransmitLimitedQueue
	cfg    Config
	stopCh chan struct{}
	wg     sync.WaitGroup
	closed atomic.Bool
	shut   sync.Once

	numNodes atomic.Int64 // alive+suspect members incl. self, for the queue

	mu       sync.Mutex
	seq      uint64
	views    map[string]*view  // origin → view; includes self
	live     map[string]uint64 // alive or suspect members → epoch from their meta
	leaving  map[string]uint64 // members that said bye → epoch
	departed map[string]departure
	rates    struct{ sent, recv float64 }

	deltaSent, deltaRecv, stateSent, stateRecv atomic.Uint64
	queued, superseded, dropped, sentBcasts    atomic.Uint64
	directSent                                 atomic.Uint64
	applied, merged, bad, stale                atomic.Uint64
}

type view struct {
	epoch uint64
	obs   map[string]Observation
}

type departure struct {
	epoch uint64
	state State
	addr  string
	at    time.Time
}

// New validates cfg, starts memberlist on cfg.BindAddr and, if cfg.Join is
// set, joins those members; it fails if none of them could be contacted (a
// director that may start before its peers should leave Join empty and call
// Join in its own retry loop).
func New(cfg Config) (*Gossip, error) {
	if cfg.NodeID == "" {
		return nil, fmt.Errorf("%w: NodeID is required", ErrConfig)
	}
	if len(cfg.NodeID) > MaxOriginLen {
		return nil, fmt.Errorf("%w: NodeID longer than %d bytes", ErrConfig, MaxOriginLen)
	}
	switch len(cfg.Key) {
	case 16, 24, 32:
	case 0:
		return nil, fmt.Errorf("%w: Key is required (gossip is always encrypted)", ErrConfig)
	default:
		return nil, fmt.Errorf("%w: Key must be 16, 24 or 32 bytes, got %d", ErrConfig, len(cfg.Key))
	}
	bindHost, bindPort, err := splitHostPort(cfg.BindAddr)
	if err != nil {
		return nil, fmt.Errorf("%w: BindAddr: %v", ErrConfig, err)
	}
	if cfg.MaxQueued <= 0 {
		cfg.MaxQueued = 16384
	}
	if cfg.DepartedRetention <= 0 {
		cfg.DepartedRetention = time.Minute
	}
	if cfg.Logger == nil {
		cfg.Logger = hclog.New(&hclog.LoggerOptions{Name: "gossip", Level: hclog.Info, Output: os.Stderr})
	}
	std := cfg.Logger.StandardLogger(&hclog.StandardLoggerOptions{InferLevels: true})

	g := &Gossip{
		name:     cfg.NodeID,
		epoch:    uint64(time.Now().UnixNano()),
		log:      cfg.Logger,
		cfg:      cfg,
		stopCh:   make(chan struct{}),
		views:    map[string]*view{},
		live:     map[string]uint64{},
		leaving:  map[string]uint64{},
		departed: map[string]departure{},
	}
	g.views[g.name] = &view{epoch: g.epoch, obs: map[string]Observation{}}
	g.queue = &memberlist.TransmitLimitedQueue{
		NumNodes:       func() int { return int(g.numNodes.Load()) },
		RetransmitMult: 4,
	}

	mc := memberlist.DefaultLANConfig()
	mc.Name = cfg.NodeID
	mc.Logger = std
	mc.LogOutput = nil
	mc.BindAddr = bindHost
	mc.BindPort = bindPort
	mc.AdvertisePort = bindPort
	if cfg.AdvertiseAddr != "" {
		h, p, err := splitHostPort(cfg.AdvertiseAddr)
		if err != nil {
			return nil, fmt.Errorf("%w: AdvertiseAddr: %v", ErrConfig, err)
		}
		mc.AdvertiseAddr, mc.AdvertisePort = h, p
	}
	mc.SecretKey = slices.Clone(cfg.Key)
	mc.GossipVerifyIncoming, mc.GossipVerifyOutgoing = true, true
	mc.Delegate = (*delegate)(g)
	mc.Events = (*events)(g)
	setDur(&mc.ProbeInterval, cfg.ProbeInterval)
	setDur(&mc.ProbeTimeout, cfg.ProbeTimeout)
	setDur(&mc.GossipInterval, cfg.GossipInterval)
	setDur(&mc.PushPullInterval, cfg.PushPullInterval)
	setDur(&mc.TCPTimeout, cfg.TCPTimeout)
	setInt(&mc.GossipNodes, cfg.GossipNodes)
	setInt(&mc.SuspicionMult, cfg.SuspicionMult)
	setInt(&mc.RetransmitMult, cfg.RetransmitMult)
	g.queue.RetransmitMult = mc.RetransmitMult

	// Build the transport ourselves (memberlist would otherwise) so its
	// bytes can be counted. Port 0 binds UDP and TCP on the same port,
	// which can collide; retry a few times like memberlist does.
	var nt *memberlist.NetTransport
	tries := 1
	if bindPort == 0 {
		tries = 10
	}
	for i := range tries {
		nt, err = memberlist.NewNetTransport(&memberlist.NetTransportConfig{BindAddrs: []string{bindHost}, BindPort: bindPort, Logger: std})
		if err == nil {
			break
		}
		if i == tries-1 {
			return nil, fmt.Errorf("gossip: bind %s: %w", cfg.BindAddr, err)
		}
	}
	if bindPort == 0 {
		mc.BindPort = nt.GetAutoBindPort()
		if cfg.AdvertiseAddr == "" {
			mc.AdvertisePort = mc.BindPort
		}
	}
	g.tr = newCountingTransport(nt)
	mc.Transport = g.tr

	ml, err := memberlist.Create(mc)
	if err != nil {
		g.tr.Shutdown()
		return nil, fmt.Errorf("gossip: start memberlist: %w", err)
	}
	g.ml = ml
	g.wg.Add(1)
	go g.sampleRates()
	if len(cfg.Join) > 0 {
		if _, err := g.Join(cfg.Join); err != nil {
			g.Shutdown()
			return nil, err
		}
	}
	return g, nil
}

func splitHostPort(hp string) (string, int, error) {
	h, p, err := net.SplitHostPort(hp)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("bad port %q", p)
	}
	if h == "" {
		h = "0.0.0.0"
	}
	return h, port, nil
}

// changed calls Config.OnChange, if set.
func (g *Gossip) changed() {
	if g.cfg.OnChange != nil {
		g.cfg.OnChange()
	}
}

func setDur(dst *time.Duration, v time.Duration) {
	if v > 0 {
		*dst = v
	}
}

func setInt(dst *int, v int) {
	if v > 0 {
		*dst = v
	}
}

// Name returns the local node's name (Config.NodeID).
func (g *Gossip) Name() string { return g.name }

// Addr returns the host:port other members reach this node at.
func (g *Gossip) Addr() string {
	n := g.ml.LocalNode()
	return net.JoinHostPort(n.Addr.String(), strconv.Itoa(int(n.Port)))
}

// Join contacts the given members (host:port) and merges state with them.
// It returns how many were contacted; the error is non-nil only if none
// was.
func (g *Gossip) Join(addrs []string) (int, error) {
	if g.closed.Load() {
		return 0, ErrShutdown
	}
	n, err := g.ml.Join(addrs)
	if n == 0 && err != nil {
		return 0, fmt.Errorf("gossip: join: %w", err)
	}
	return n, nil
}

// Leave announces that this node is leaving (peers list it as left, not
// dead, and drop its view) and waits up to timeout for the announcement to
// be sent. Call Shutdown afterwards.
func (g *Gossip) Leave(timeout time.Duration) error {
	if g.closed.Load() {
		return ErrShutdown
	}
	// The bye rides in the same gossip packets as memberlist's own leave
	// message; a fresh broadcast is sent before older queued deltas.
	g.queue.QueueBroadcast(&broadcast{name: byeName(g.name), msg: encodeBye(g.name, g.epoch)})
	return g.ml.Leave(timeout)
}

// Shutdown stops gossiping without announcing it (others will see this node
// die; call Leave first for a graceful exit). It is idempotent.
func (g *Gossip) Shutdown() error {
	var err error
	g.shut.Do(func() {
		g.closed.Store(true)
		close(g.stopCh)
		err = g.ml.Shutdown()
		g.wg.Wait()
	})
	return err
}

// Publish records the local node's changed observations and broadcasts
// them. It assigns each observation's Seq (any caller value is ignored),
// truncates Err to MaxErrLen and rejects an empty or over-long Target or one
// containing NUL; the
// valid observations of the batch are published either way.
func (g *Gossip) Publish(obs []Observation) error {
	_, err := g.publish(obs, false)
	return err
}

// MaxDirect bounds the observations of one PublishNow sent directly; the
// rest travel by broadcast only.
const MaxDirect = 64

// PublishNow is Publish, and also sends each observation (up to MaxDirect)
// at once, best effort over UDP, to every other live member, instead of
// letting it wait for the next gossip round (up to GossipInterval). The
// broadcasts still follow and cover a lost packet. For changes that
// someone is waiting for (a real server going down).
func (g *Gossip) PublishNow(obs []Observation) error {
	msgs, err := g.publish(obs, true)
	if len(msgs) == 0 || g.closed.Load() {
		return err
	}
	var n, bytes uint64
	for _, m := range g.ml.Members() {
		if m.Name == g.name {
			continue
		}
		for _, b := range msgs {
			if g.ml.SendBestEffort(m, b) == nil {
				n++
				bytes += uint64(len(b))
			}
		}
	}
	g.directSent.Add(n)
	g.deltaSent.Add(bytes)
	return err
}

// publish records obs and queues their broadcasts; with direct it returns
// the encoded deltas (at most MaxDirect) for a direct send.
func (g *Gossip) publish(obs []Observation, direct bool) ([][]byte, error) {
	if g.closed.Load() {
		return nil, ErrShutdown
	}
	var bad error
	var msgs [][]byte
	g.mu.Lock()
	defer g.mu.Unlock()
	own := g.views[g.name]
	for _, o := range obs {
		if o.Target == "" || len(o.Target) > MaxTargetLen || strings.ContainsRune(o.Target, 0) {
			bad = errors.Join(bad, fmt.Errorf("gossip: target %.40q: empty, longer than %d bytes or containing NUL", o.Target, MaxTargetLen))
			continue
		}
		if len(o.Err) > MaxErrLen {
			o.Err = o.Err[:MaxErrLen]
		}
		if o.Latency < 0 {
			o.Latency = 0
		}
		g.seq++
		o.Seq = g.seq
		own.obs[o.Target] = o
		// Queue under g.mu so that two concurrent Publishes of one target
		// reach the queue in Seq order (a newer delta replaces an older).
		b := &broadcast{name: o.Target, msg: encodeDelta(g.name, g.epoch, o)}
		if direct && len(msgs) < MaxDirect {
			msgs = append(msgs, b.msg)
		}
		before := g.queue.NumQueued()
		g.queue.QueueBroadcast(b)
		g.queued.Add(1)
		if g.queue.NumQueued() <= before {
			g.superseded.Add(1)
		}
	}
	if n := g.queue.NumQueued(); n > g.cfg.MaxQueued {
		g.queue.Prune(g.cfg.MaxQueued)
		g.dropped.Add(uint64(n - g.queue.NumQueued()))
	}
	return msgs, bad
}

// Views returns a copy of every member's observations, keyed by node name
// and then target; the local node's own view is included.
func (g *Gossip) Views() map[string]map[string]Observation {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make(map[string]map[string]Observation, len(g.views))
	for name, v := range g.views {
		m := make(map[string]Observation, len(v.obs))
		for t, o := range v.obs {
			m[t] = o
		}
		out[name] = m
	}
	return out
}

// Members lists the live members (including this node) and the members
// that died or left within Config.DepartedRetention, sorted by name.
//
// memberlist (v0.5.x and v0.7.x) does not expose suspicion through its
// public API (Node.State is not maintained; the real state is private), so
// a suspect member is reported as alive. "left" versus "dead" comes from
// the bye message that Leave sends.
func (g *Gossip) Members() []Member {
	var out []Member
	seen := map[string]bool{}
	if !g.closed.Load() {
		for _, n := range g.ml.Members() {
			st := StateAlive
			if n.State == memberlist.StateSuspect {
				st = StateSuspect
			}
			seen[n.Name] = true
			out = append(out, Member{Name: n.Name, Addr: net.JoinHostPort(n.Addr.String(), strconv.Itoa(int(n.Port))), State: st})
		}
	}
	g.mu.Lock()
	now := time.Now()
	for name, d := range g.departed {
		if !seen[name] && now.Sub(d.at) < g.cfg.DepartedRetention {
			out = append(out, Member{Name: name, Addr: d.addr, State: d.state})
		}
	}
	g.mu.Unlock()
	slices.SortFunc(out, func(a, b Member) int {
		switch {
		case a.Name < b.Name:
			return -1
		case a.Name > b.Name:
			return 1
		}
		return 0
	})
	return out
}

// Stats returns the counters.
func (g *Gossip) Stats() Stats {
	g.mu.Lock()
	sentRate, recvRate := g.rates.sent, g.rates.recv
	g.mu.Unlock()
	return Stats{
		BytesSent:            g.tr.sent.Load(),
		BytesReceived:        g.tr.recv.Load(),
		SentPerSec:           sentRate,
		ReceivedPerSec:       recvRate,
		DeltaBytesSent:       g.deltaSent.Load(),
		DeltaBytesReceived:   g.deltaRecv.Load(),
		StateBytesSent:       g.stateSent.Load(),
		StateBytesReceived:   g.stateRecv.Load(),
		BroadcastsQueued:     g.queued.Load(),
		BroadcastsSuperseded: g.superseded.Load(),
		BroadcastsDropped:    g.dropped.Load(),
		BroadcastsSent:       g.sentBcasts.Load(),
		DirectSent:           g.directSent.Load(),
		QueueDepth:           g.queue.NumQueued(),
		DeltasApplied:        g.applied.Load(),
		StatesMerged:         g.merged.Load(),
		BadMessages:          g.bad.Load(),
		StaleDiscarded:       g.stale.Load(),
	}
}

// sampleRates updates the smoothed byte rates once a second.
func (g *Gossip) sampleRates() {
	defer g.wg.Done()
	const alpha = 0.3
	t := time.NewTicker(time.Second)
	defer t.Stop()
	lastS, lastR, last := g.tr.sent.Load(), g.tr.recv.Load(), time.Now()
	for {
		select {
		case <-g.stopCh:
			return
		case now := <-t.C:
			s, r := g.tr.sent.Load(), g.tr.recv.Load()
			dt := now.Sub(last).Seconds()
			if dt <= 0 {
				continue
			}
			g.mu.Lock()
			g.rates.sent = alpha*float64(s-lastS)/dt + (1-alpha)*g.rates.sent
			g.rates.recv = alpha*float64(r-lastR)/dt + (1-alpha)*g.rates.recv
			g.mu.Unlock()
			lastS, lastR, last = s, r, now
		}
	}
}

// accept applies one observation from origin at epoch; g.mu must be held.
// It reports whether the view changed.
func (g *Gossip) acceptLocked(origin string, epoch uint64, o Observation) bool {
	if origin == g.name {
		return false // we are the authority on our own view
	}
	if cur, ok := g.live[origin]; ok && cur != 0 {
		if epoch != cur {
			g.stale.Add(1)
			return false
		}
	} else if d, ok := g.departed[origin]; ok && epoch <= d.epoch {
		g.stale.Add(1)
		return false
	}
	v := g.views[origin]
	if v == nil || v.epoch < epoch || (g.live[origin] == epoch && v.epoch != epoch) {
		v = &view{epoch: epoch, obs: map[string]Observation{}}
		g.views[origin] = v
	} else if v.epoch > epoch {
		g.stale.Add(1)
		return false
	}
	if old, ok := v.obs[o.Target]; ok && old.Seq >= o.Seq {
		return false
	}
	v.obs[o.Target] = o
	return true
}

// broadcast is one queued delta; its name (the target) makes a newer delta
// of the same target replace it in the queue. The bye has the name "",
// which no target can have.
type broadcast struct {
	name string
	msg  []byte
}

func byeName(origin string) string { return "\x00bye\x00" + origin }

func (b *broadcast) Invalidates(other memberlist.Broadcast) bool {
	o, ok := other.(*broadcast)
	return ok && o.name == b.name
}
func (b *broadcast) Name() string    { return b.name }
func (b *broadcast) Message() []byte { return b.msg }
func (b *broadcast) Finished()       {}

// delegate implements memberlist.Delegate. memberlist calls it
// concurrently from its packet, stream and gossip goroutines.
type delegate Gossip

const metaVersion = 1

// NodeMeta carries this incarnation's epoch so peers can tell a restarted
// director from its previous life.
func (d *delegate) NodeMeta(limit int) []byte {
	if limit < 9 {
		return nil
	}
	b := make([]byte, 1, 9)
	b[0] = metaVersion
	return binary.BigEndian.AppendUint64(b, d.epoch)
}

func metaEpoch(meta []byte) uint64 {
	if len(meta) != 9 || meta[0] != metaVersion {
		return 0
	}
	return binary.BigEndian.Uint64(meta[1:])
}

func (d *delegate) NotifyMsg(b []byte) {
	g := (*Gossip)(d)
	g.deltaRecv.Add(uint64(len(b)))
	origin, epoch, o, bye, err := decodeMsg(b)
	if err != nil {
		g.bad.Add(1)
		g.log.Debug("dropping bad gossip message", "len", len(b), "error", err)
		return
	}
	if bye {
		if origin == g.name {
			return
		}
		first := false
		g.mu.Lock()
		if cur, ok := g.live[origin]; ok && (cur == epoch || cur == 0) {
			_, seen := g.leaving[origin]
			first = !seen
			g.leaving[origin] = epoch
		} else if dep, ok := g.departed[origin]; ok && dep.epoch == epoch && dep.state != StateLeft {
			dep.state = StateLeft // the bye came after the dead message
			g.departed[origin] = dep
			first = true
		}
		if first {
			// Relay it once: the leaver shuts down as soon as
			// memberlist's own leave message is out, so it may have
			// reached only some peers.
			g.queue.QueueBroadcast(&broadcast{name: byeName(origin), msg: b})
		}
		g.mu.Unlock()
		return
	}
	g.mu.Lock()
	changed := g.acceptLocked(origin, epoch, o)
	g.mu.Unlock()
	if changed {
		g.applied.Add(1)
		g.changed()
	}
}

func (d *delegate) GetBroadcasts(overhead, limit int) [][]byte {
	g := (*Gossip)(d)
	msgs := g.queue.GetBroadcasts(overhead, limit)
	var n uint64
	for _, m := range msgs {
		n += uint64(len(m))
	}
	g.sentBcasts.Add(uint64(len(msgs)))
	g.deltaSent.Add(n)
	return msgs
}

// LocalState returns every view this node holds (its own and the others'),
// so one push/pull brings a (re)joining node up to date.
func (d *delegate) LocalState(join bool) []byte {
	g := (*Gossip)(d)
	g.mu.Lock()
	states := make([]originState, 0, len(g.views))
	for name, v := range g.views {
		s := originState{origin: name, epoch: v.epoch, obs: make([]Observation, 0, len(v.obs))}
		for _, o := range v.obs {
			s.obs = append(s.obs, o)
		}
		states = append(states, s)
	}
	g.mu.Unlock()
	b := encodeState(states)
	if len(b) > maxStateSize {
		g.log.Warn("gossip full state over limit; not sent", "bytes", len(b), "limit", maxStateSize)
		return nil
	}
	g.stateSent.Add(uint64(len(b)))
	return b
}

func (d *delegate) MergeRemoteState(b []byte, join bool) {
	g := (*Gossip)(d)
	if len(b) == 0 {
		return
	}
	g.stateRecv.Add(uint64(len(b)))
	states, err := decodeState(b)
	if err != nil {
		g.bad.Add(1)
		g.log.Debug("dropping bad gossip state", "len", len(b), "error", err)
		return
	}
	g.merged.Add(1)
	var applied uint64
	g.mu.Lock()
	for _, s := range states {
		// A full state may carry third-party views. Take them only for
		// origins we know to be alive (memberlist merges the member list
		// before calling us), so a peer that has not yet noticed a death
		// cannot resurrect, or plant, the view of a node that is gone.
		if _, ok := g.live[s.origin]; !ok {
			g.stale.Add(uint64(len(s.obs)))
			continue
		}
		for _, o := range s.obs {
			if g.acceptLocked(s.origin, s.epoch, o) {
				applied++
			}
		}
	}
	g.mu.Unlock()
	g.applied.Add(applied)
	if applied > 0 {
		g.changed()
	}
}

// events implements memberlist.EventDelegate. memberlist calls it
// synchronously while holding its node lock: it must not call back into
// memberlist.
type events Gossip

func (e *events) NotifyJoin(n *memberlist.Node) {
	g := (*Gossip)(e)
	defer g.changed()
	g.mu.Lock()
	defer g.mu.Unlock()
	if _, ok := g.live[n.Name]; !ok {
		g.numNodes.Add(1)
	}
	g.setLiveLocked(n)
}

func (e *events) NotifyUpdate(n *memberlist.Node) {
	g := (*Gossip)(e)
	defer g.changed()
	g.mu.Lock()
	defer g.mu.Unlock()
	if _, ok := g.live[n.Name]; ok {
		g.setLiveLocked(n)
	}
}

func (g *Gossip) setLiveLocked(n *memberlist.Node) {
	ep := metaEpoch(n.Meta)
	g.live[n.Name] = ep
	delete(g.departed, n.Name)
	if l, ok := g.leaving[n.Name]; ok && l != ep {
		delete(g.leaving, n.Name)
	}
	if v := g.views[n.Name]; v != nil && ep != 0 && v.epoch != ep && n.Name != g.name {
		delete(g.views, n.Name) // a previous incarnation's view
	}
}

func (e *events) NotifyLeave(n *memberlist.Node) {
	g := (*Gossip)(e)
	defer g.changed()
	g.mu.Lock()
	defer g.mu.Unlock()
	// memberlist does not keep Node.State up to date (it tracks state in
	// a private field), so "left" is known from the node's bye message.
	st := StateDead
	if ep, ok := g.leaving[n.Name]; ok && (ep == metaEpoch(n.Meta) || ep == 0 || metaEpoch(n.Meta) == 0) {
		st = StateLeft
	}
	delete(g.leaving, n.Name)
	if _, ok := g.live[n.Name]; ok {
		g.numNodes.Add(-1)
		delete(g.live, n.Name)
	}
	ep := metaEpoch(n.Meta)
	if v := g.views[n.Name]; v != nil && v.epoch > ep {
		ep = v.epoch
	}
	if n.Name != g.name {
		delete(g.views, n.Name)
	}
	g.departed[n.Name] = departure{epoch: ep, state: st, addr: net.JoinHostPort(n.Addr.String(), strconv.Itoa(int(n.Port))), at: time.Now()}
}
