// Package gossip shares every director's health-check results with every
// other director over hashicorp/memberlist, so the leader can combine all
// views of a real server.
//
// Each director publishes its own observations (Publish, changed results
// only); every director reads everyone's (Views). This package does not use
// memberlist's broadcast queue for them: that queue sends a few messages per
// gossip round and each several times, so under churn (a rack of real
// servers failing at once) changes waited many seconds, and the rest for the
// next push/pull. Instead each director keeps, per other live member, the
// set of its own targets that member has not acknowledged yet, split into
// up/down changes (and first views) and refreshes (latency or error text
// only). A sender goroutine drains those sets in batches: up/down changes
// first, as many observations per UDP packet as fit, each target's latest
// observation only (a newer one replaces an older one still waiting, so the
// sets are bounded by the number of targets and nothing is ever dropped),
// sent directly to every live member, which acknowledges each batch at
// once. A batch not acknowledged in time (a timeout that follows the
// measured round trip) is queued again; a member that answers but slowly
// gets half as many batches in flight, one that does not answer one at a
// time with exponential backoff. An up/down change is sent at once (after
// BatchDelay, so that changes arriving together share packets); refreshes
// at least every RefreshInterval. A member that joins or comes back as a
// new incarnation (epoch) is owed every own observation again; one that was
// declared dead and comes back as the same incarnation is owed what it
// lacked, and what changed meanwhile. A periodic full-state push/pull
// remains as a backstop.
//
// Per (origin, target) the newer (epoch, Seq) wins, where epoch identifies
// an incarnation of the origin: observations of a newer incarnation replace
// the old view at once, even before memberlist reports the restart. A
// director's view is kept while it is suspect and dropped (from Views) when
// it dies or leaves; the view of one that died is kept aside and restored
// if it comes back as the same incarnation (it does not know it was dropped
// and would not send it again).
//
// An observation may carry a dynamic weight (a script check's exit code).
// It travels only in wire version 3 batches, sent to the members that say
// they read them (memberlist's delegate protocol maximum); a director of an
// older release is sent version-2 batches and ignores the weights, and the
// views it sends, like those learnt by full state, have an unknown weight
// (wire.go has the rule).
//
// Gossip is always encrypted (AES-GCM, Config.Key); a node with another key
// cannot join. Packets and streams memberlist cannot decrypt or decode are
// counted (Stats.BadPackets) and logged at most once per BadLogInterval.
//
// Threading: every exported method of Gossip is safe for concurrent use,
// including concurrently with Shutdown. memberlist calls the delegate
// callbacks (messages, push/pull state, membership events) concurrently on
// its own goroutines; they only take the Gossip's mutex for short, bounded
// work and never block on the network or on the caller. The lock order is
// memberlist's node lock, then Gossip.mu, then the broadcast queue's own
// lock; nothing calls into memberlist while holding Gossip.mu.
package gossip

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log"
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
	"github.com/raftlb/raftlb/model"
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
	// Weight is the dynamic weight of the origin's last successful check
	// (a script check with dynamic), 0-65535; nil: the configured weight.
	// It travels in wire version 3 only.
	Weight *int
	// WeightUnknown: received without a weight field (from a director of
	// an older release, or by full state), so Weight says nothing; a
	// version-3 batch of the same Seq replaces it. Publish ignores it.
	WeightUnknown bool
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
	// Weights: a live member that reads wire version 3 (dynamic weights;
	// it advertises delegate protocol delegateWeights). False for a
	// director of an older release, and for a departed member.
	Weights bool
}

// Config configures a Gossip. Zero durations and counts take memberlist's
// LAN defaults (probe 1 s, gossip 200 ms to 3 nodes, push/pull 30 s,
// suspicion multiplier 4).
type Config struct {
	NodeID        string   // unique member name; required
	BindAddr      string   // host:port for UDP and TCP; port 0 picks one
	AdvertiseAddr string   // host:port others reach us at; empty = BindAddr
	Key           []byte   // AES key of 16, 24 or 32 bytes; required
	ExtraKeys     [][]byte // also accepted on what is received (a key rotation in progress)
	Join          []string // host:port of existing members; New fails if none answers
	Logger        hclog.Logger

	// memberlist's own settings. Its gossip rounds (GossipInterval,
	// GossipNodes, RetransmitMult) carry only its own messages (membership)
	// and the bye; observations travel in this package's batches.
	ProbeInterval    time.Duration
	ProbeTimeout     time.Duration
	GossipInterval   time.Duration
	GossipNodes      int
	PushPullInterval time.Duration
	SuspicionMult    int
	RetransmitMult   int
	TCPTimeout       time.Duration

	// BatchDelay is how long an up/down change may wait so that changes
	// published together share packets. Default 10 ms.
	BatchDelay time.Duration
	// RefreshInterval is how often refreshes (latency or error text only)
	// are sent and unacknowledged batches looked at. Default 100 ms.
	RefreshInterval time.Duration
	// AckTimeout is the least time a batch waits for its acknowledgement
	// before its observations are queued again: the timeout follows the
	// measured time to an acknowledgement (srtt + 4 rttvar, as TCP's),
	// at least AckTimeout, and doubles (up to 32 × AckTimeout) while a
	// member does not answer. Default 250 ms.
	AckTimeout time.Duration
	// BadLogInterval: packets memberlist cannot decrypt or decode are
	// logged at most once per BadLogInterval, with the count since the
	// last line. Default 10 s.
	BadLogInterval time.Duration
	// DepartedRetention is how long Members keeps listing a dead or left
	// member. Default 1 minute.
	DepartedRetention time.Duration

	// olderRelease makes this node act as a director of a release before
	// wire version 3 on the wire: it advertises delegate protocol 0 (so
	// the others send it no weights) and sends version-2 batches (tests
	// of a rolling upgrade).
	olderRelease bool

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
	// batches, acks, push/pull), after encryption.
	BytesSent, BytesReceived uint64
	// Exponentially smoothed rates of the above, bytes per second,
	// sampled every second.
	SentPerSec, ReceivedPerSec float64
	// Payload bytes of this package's own messages, before memberlist
	// framing, compression and encryption: batches, acks and byes (every
	// transmission counted; received: also deltas of older directors),
	// and full states exchanged by push/pull.
	DeltaBytesSent, DeltaBytesReceived uint64
	StateBytesSent, StateBytesReceived uint64

	Published    uint64 // observations published
	StateChanges uint64 // of which up/down changes or first views (sent before refreshes)
	// Coalesced counts observations that replaced an older one of the
	// same target still waiting for a member (once per member).
	Coalesced      uint64
	BatchesSent    uint64 // batches sent, one per member per packet, resends included
	RecordsSent    uint64 // observations in those batches
	BatchesAcked   uint64 // batches a member acknowledged
	BatchesResent  uint64 // batches not acknowledged in time, their observations queued again
	AcksSent       uint64 // acknowledgement messages sent
	SendErrors     uint64 // packets the transport refused
	Pending        int    // (member, target) observations waiting to be sent
	PendingChanges int    // of which up/down changes
	InFlight       int    // batches sent and not yet acknowledged

	BatchesReceived uint64 // batches (and deltas of older directors) received
	DeltasApplied   uint64 // received observations that changed a view
	StatesMerged    uint64 // received full states
	BadMessages     uint64 // this package's messages dropped: garbage, wrong version, oversize
	// BadPackets counts packets and streams memberlist rejected: not
	// decryptable with this cluster's key or not decodable (garbage, a
	// port scan, a node of another cluster).
	BadPackets     uint64
	StaleDiscarded uint64 // observations from departed members or older than known
}

// Gossip is one director's gossip endpoint. Create it with New.
type Gossip struct {
	name    string
	epoch   uint64
	log     hclog.Logger
	badLog  *badInputLog
	ml      *memberlist.Memberlist
	tr      *countingTransport
	queue   *memberlist.TransmitLimitedQueue // byes only
	cfg     Config
	stopCh  chan struct{}
	flushCh chan struct{}
	wg      sync.WaitGroup
	closed  atomic.Bool
	shut    sync.Once

	numNodes atomic.Int64 // alive+suspect members incl. self, for the queue

	mu       sync.Mutex
	seq      uint64
	batchID  uint64
	views    map[string]*view  // origin → view; includes self
	live     map[string]uint64 // alive or suspect members → epoch from their meta
	addrs    map[string]string // live members → their gossip host:port (copied in memberlist's callbacks)
	weights  map[string]bool   // live members that read wire version 3
	leaving  map[string]uint64 // members that said bye → epoch
	departed map[string]departure
	peers    map[string]*peer // other live members → what they still lack of our view
	gone     map[string]*peer // members that died → the same, for their return
	rates    struct{ sent, recv float64 }

	deltaSent, deltaRecv, stateSent, stateRecv atomic.Uint64
	published, stateChanges, coalesced         atomic.Uint64
	batchesSent, recordsSent, batchesAcked     atomic.Uint64
	batchesResent, acksSent, sendErrors        atomic.Uint64
	received, applied, merged, bad, stale      atomic.Uint64
	badPackets                                 atomic.Uint64
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
	// view is the member's view when it died, hidden, restored if it
	// comes back as the same incarnation (it was wrongly declared dead:
	// it does not know we dropped its view and will not send it again).
	view *view
}

// stashRetention is how long the view of a dead member is kept for its
// return as the same incarnation. What it lacked of ours is kept half as
// long: a member that returns after that is sent every own observation, so
// it is whole even if it dropped our view a little before we dropped its.
const stashRetention = 10 * time.Minute

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
	for _, d := range []struct {
		v   *time.Duration
		def time.Duration
	}{{&cfg.DepartedRetention, time.Minute}, {&cfg.BatchDelay, 10 * time.Millisecond},
		{&cfg.RefreshInterval, 100 * time.Millisecond}, {&cfg.AckTimeout, 250 * time.Millisecond},
		{&cfg.BadLogInterval, 10 * time.Second}} {
		if *d.v <= 0 {
			*d.v = d.def
		}
	}
	if cfg.Logger == nil {
		cfg.Logger = hclog.New(&hclog.LoggerOptions{Name: "gossip", Level: hclog.Info, Output: os.Stderr})
	}

	g := &Gossip{
		name:     cfg.NodeID,
		epoch:    uint64(time.Now().UnixNano()),
		log:      cfg.Logger,
		cfg:      cfg,
		stopCh:   make(chan struct{}),
		flushCh:  make(chan struct{}, 1),
		views:    map[string]*view{},
		live:     map[string]uint64{},
		addrs:    map[string]string{},
		weights:  map[string]bool{},
		leaving:  map[string]uint64{},
		departed: map[string]departure{},
		peers:    map[string]*peer{},
		gone:     map[string]*peer{},
	}
	// memberlist's own log lines go through badLog, which counts and
	// rate-limits those about packets it could not decrypt or decode.
	g.badLog = newBadInputLog(cfg.Logger, cfg.BadLogInterval, &g.badPackets)
	std := log.New(g.badLog, "", 0)
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
	// The keyring encrypts with Key and decrypts with any of its keys.
	ring, err := memberlist.NewKeyring(cfg.ExtraKeys, slices.Clone(cfg.Key))
	if err != nil {
		return nil, fmt.Errorf("%w: ExtraKeys: %v", ErrConfig, err)
	}
	mc.Keyring = ring
	mc.GossipVerifyIncoming, mc.GossipVerifyOutgoing = true, true
	mc.Delegate = (*delegate)(g)
	mc.Events = (*events)(g)
	// The delegate protocol range says which wire versions a member reads:
	// the maximum delegateWeights = wire version 3. The current version
	// stays 0, inside every older director's range [0, 0].
	mc.DelegateProtocolMin, mc.DelegateProtocolVersion, mc.DelegateProtocolMax = 0, 0, delegateWeights
	if cfg.olderRelease {
		mc.DelegateProtocolMax = 0
	}
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
	g.wg.Add(2)
	go g.sampleRates()
	go g.flushLoop()
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
	// message.
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

// Publish records the local node's changed observations and sends them to
// every other live member: an up/down change (or a target's first
// observation) at once, after at most Config.BatchDelay, before any
// refresh; a refresh (the same up/down, another latency or error text)
// within Config.RefreshInterval. It assigns each observation's Seq (any
// caller value is ignored), truncates Err to MaxErrLen and rejects an empty
// or over-long Target or one containing NUL; the valid observations of the
// batch are published either way.
func (g *Gossip) Publish(obs []Observation) error {
	if g.closed.Load() {
		return ErrShutdown
	}
	var bad error
	wake := false
	g.mu.Lock()
	own := g.views[g.name]
	for _, o := range obs {
		if o.Target == "" || len(o.Target) > MaxTargetLen || strings.ContainsRune(o.Target, 0) {
			bad = errors.Join(bad, fmt.Errorf("gossip: target %.40q: empty, longer than %d bytes or containing NUL", o.Target, MaxTargetLen))
			continue
		}
		if o.Weight != nil && (*o.Weight < 0 || *o.Weight > model.MaxWeight) {
			bad = errors.Join(bad, fmt.Errorf("gossip: target %.40q: weight %d out of range (0-%d)", o.Target, *o.Weight, model.MaxWeight))
			continue
		}
		if len(o.Err) > MaxErrLen {
			o.Err = o.Err[:MaxErrLen]
		}
		if o.Latency < 0 {
			o.Latency = 0
		}
		o.Weight, o.WeightUnknown = model.CloneWeight(o.Weight), false
		prev, had := own.obs[o.Target]
		// A weight change goes with the up/down changes: it changes the
		// decision.
		change := !had || prev.Up != o.Up || !model.SameWeight(prev.Weight, o.Weight)
		g.seq++
		o.Seq = g.seq
		own.obs[o.Target] = o
		g.published.Add(1)
		if change {
			g.stateChanges.Add(1)
			wake = true
		}
		for _, p := range g.peers {
			if p.owe(o.Target, change) {
				g.coalesced.Add(1)
			}
		}
		for _, p := range g.gone {
			p.owe(o.Target, change)
		}
	}
	g.mu.Unlock()
	if wake {
		g.wakeSender()
	}
	return bad
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
// It reads this package's own table, kept from memberlist's join, update
// and leave callbacks: the nodes memberlist's Members returns are its live
// structures, written under its lock by its packet handler, so reading
// them is a data race. memberlist (v0.5.x and v0.7.x) does not tell
// suspicion through its public API either, so a suspect member is reported
// as alive. "left" versus "dead" comes from the bye message that Leave
// sends.
func (g *Gossip) Members() []Member {
	g.mu.Lock()
	out := make([]Member, 0, len(g.live)+len(g.departed))
	for name := range g.live {
		out = append(out, Member{Name: name, Addr: g.addrs[name], State: StateAlive, Weights: g.weights[name]})
	}
	now := time.Now()
	for name, d := range g.departed {
		if _, live := g.live[name]; !live && now.Sub(d.at) < g.cfg.DepartedRetention {
			out = append(out, Member{Name: name, Addr: d.addr, State: d.state})
		}
	}
	g.mu.Unlock()
	slices.SortFunc(out, func(a, b Member) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Stats returns the counters.
func (g *Gossip) Stats() Stats {
	g.mu.Lock()
	st := Stats{SentPerSec: g.rates.sent, ReceivedPerSec: g.rates.recv}
	for _, p := range g.peers {
		st.PendingChanges += len(p.changes)
		st.Pending += len(p.changes) + len(p.refresh)
		st.InFlight += len(p.inflight)
	}
	g.mu.Unlock()
	st.BytesSent, st.BytesReceived = g.tr.sent.Load(), g.tr.recv.Load()
	st.DeltaBytesSent, st.DeltaBytesReceived = g.deltaSent.Load(), g.deltaRecv.Load()
	st.StateBytesSent, st.StateBytesReceived = g.stateSent.Load(), g.stateRecv.Load()
	st.Published, st.StateChanges, st.Coalesced = g.published.Load(), g.stateChanges.Load(), g.coalesced.Load()
	st.BatchesSent, st.RecordsSent, st.BatchesAcked = g.batchesSent.Load(), g.recordsSent.Load(), g.batchesAcked.Load()
	st.BatchesResent, st.AcksSent, st.SendErrors = g.batchesResent.Load(), g.acksSent.Load(), g.sendErrors.Load()
	st.BatchesReceived, st.DeltasApplied, st.StatesMerged = g.received.Load(), g.applied.Load(), g.merged.Load()
	st.BadMessages, st.BadPackets, st.StaleDiscarded = g.bad.Load(), g.badPackets.Load(), g.stale.Load()
	return st
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
			g.badLog.tick(now)
			g.mu.Lock()
			for name, d := range g.departed {
				if d.view != nil && now.Sub(d.at) > stashRetention {
					d.view = nil
					g.departed[name] = d
				}
			}
			for name, p := range g.gone {
				if now.Sub(p.goneAt) > stashRetention/2 {
					delete(g.gone, name) // it gets everything if it returns
				}
			}
			g.mu.Unlock()
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

// viewLocked returns origin's view to apply observations of incarnation
// epoch to, or nil if they are stale: an older incarnation than the live
// one or the departed one, or ourselves (we are the authority on our own
// view). Observations of a newer incarnation than the view's replace it at
// once, even before memberlist reports the new incarnation's meta; this
// node then owes that member all its own observations again. g.mu must be
// held.
func (g *Gossip) viewLocked(origin string, epoch uint64) *view {
	if origin == g.name {
		return nil
	}
	if cur, ok := g.live[origin]; ok {
		if cur != 0 && epoch < cur {
			return nil
		}
	} else if d, ok := g.departed[origin]; ok && epoch <= d.epoch {
		return nil
	}
	v := g.views[origin]
	switch {
	case v != nil && v.epoch > epoch:
		return nil
	case v == nil || v.epoch < epoch:
		if v != nil {
			g.restartedLocked(origin, epoch)
		}
		v = &view{epoch: epoch, obs: map[string]Observation{}}
		g.views[origin] = v
	}
	return v
}

// applyLocked applies obs to v, each unless v has it at a newer Seq, or at
// the same Seq with as much (a known weight replaces an unknown one of the
// same Seq), and returns how many changed v. g.mu must be held.
func applyLocked(v *view, obs []Observation) uint64 {
	var n uint64
	for _, o := range obs {
		if old, ok := v.obs[o.Target]; ok && (old.Seq > o.Seq || old.Seq == o.Seq && (o.WeightUnknown || !old.WeightUnknown)) {
			continue
		}
		v.obs[o.Target] = o
		n++
	}
	return n
}

// broadcast is one queued bye (memberlist's queue carries nothing else of
// this package); its name makes a second bye of the same origin replace it.
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
	m, err := decodeMsg(b)
	if err != nil {
		g.bad.Add(1)
		g.log.Debug("dropping bad gossip message", "len", len(b), "error", err)
		return
	}
	switch m.kind {
	case kindBye:
		g.bye(m, b)
	case kindAck:
		g.acked(m)
	default:
		g.received.Add(1)
		g.mu.Lock()
		var changed uint64
		v := g.viewLocked(m.origin, m.epoch)
		if v != nil {
			changed = applyLocked(v, m.obs)
		} else {
			g.stale.Add(uint64(len(m.obs)))
		}
		// Acknowledge a batch we took; one found stale is not, so its
		// sender sends it again (with backoff) and it is taken once
		// memberlist has told us of the sender's new incarnation (or
		// that it is alive after all). An unknown sender cannot be
		// answered yet: it sends again too.
		var to *memberlist.Node
		if p := g.peers[m.origin]; p != nil && m.kind != kindDelta {
			p.heard(g.cfg.AckTimeout)
			if v != nil {
				to = p.node
			}
		}
		g.mu.Unlock()
		if to != nil && !g.closed.Load() {
			g.ack(to, m.epoch, m.id)
		}
		if changed > 0 {
			g.applied.Add(changed)
			g.changed()
		}
	}
}

// bye handles origin's announcement that it leaves (raw is the message, to
// relay).
func (g *Gossip) bye(m message, raw []byte) {
	if m.origin == g.name {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	first := false
	if cur, ok := g.live[m.origin]; ok && (cur == m.epoch || cur == 0) {
		_, seen := g.leaving[m.origin]
		first = !seen
		g.leaving[m.origin] = m.epoch
	} else if dep, ok := g.departed[m.origin]; ok && dep.epoch == m.epoch && dep.state != StateLeft {
		dep.state = StateLeft // the bye came after the dead message
		g.departed[m.origin] = dep
		first = true
	}
	if first {
		// Relay it once: the leaver shuts down as soon as memberlist's
		// own leave message is out, so it may have reached only some
		// peers.
		g.queue.QueueBroadcast(&broadcast{name: byeName(m.origin), msg: raw})
	}
}

func (d *delegate) GetBroadcasts(overhead, limit int) [][]byte {
	g := (*Gossip)(d)
	msgs := g.queue.GetBroadcasts(overhead, limit)
	var n uint64
	for _, m := range msgs {
		n += uint64(len(m))
	}
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
		var v *view
		if _, ok := g.live[s.origin]; ok {
			v = g.viewLocked(s.origin, s.epoch)
		}
		if v == nil {
			g.stale.Add(uint64(len(s.obs)))
			continue
		}
		applied += applyLocked(v, s.obs)
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
	if _, ok := g.live[n.Name]; !ok {
		g.numNodes.Add(1)
	}
	g.setLiveLocked(n, true)
	g.mu.Unlock()
	g.wakeSender()
}

func (e *events) NotifyUpdate(n *memberlist.Node) {
	g := (*Gossip)(e)
	defer g.changed()
	g.mu.Lock()
	_, ok := g.live[n.Name]
	if ok {
		g.setLiveLocked(n, false)
	}
	g.mu.Unlock()
	if ok {
		g.wakeSender()
	}
}

// setLiveLocked records n as live with the epoch of its meta. A member
// that joins, or whose epoch changed (it restarted), is owed every own
// observation again, and the view of an incarnation other than the new one
// goes. g.mu must be held.
func (g *Gossip) setLiveLocked(n *memberlist.Node, joined bool) {
	ep := metaEpoch(n.Meta)
	prev, known := g.live[n.Name]
	g.live[n.Name] = ep
	g.addrs[n.Name] = net.JoinHostPort(n.Addr.String(), strconv.Itoa(int(n.Port)))
	g.weights[n.Name] = n.DMax >= delegateWeights
	if d, ok := g.departed[n.Name]; ok && d.view != nil && d.view.epoch == ep && g.views[n.Name] == nil {
		g.views[n.Name] = d.view // back from a wrong death
	}
	delete(g.departed, n.Name)
	if l, ok := g.leaving[n.Name]; ok && l != ep {
		delete(g.leaving, n.Name)
	}
	if n.Name == g.name {
		return
	}
	restarted := known && ep != 0 && prev != ep
	if v := g.views[n.Name]; v != nil && ep != 0 && v.epoch != ep && (restarted || v.epoch < ep) {
		// A previous incarnation's view. (A view newer than the meta
		// is the new incarnation, seen first through its messages.)
		delete(g.views, n.Name)
	}
	p := g.peers[n.Name]
	returned := false
	if p == nil {
		if p = g.returnLocked(n.Name, ep); p != nil {
			returned = true
		} else {
			p = &peer{}
		}
		g.peers[n.Name] = p
	}
	p.node = cloneNode(n)
	if (joined && !returned) || p.changes == nil || p.epoch != ep {
		g.resetPeerLocked(p, ep)
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
		delete(g.addrs, n.Name)
		delete(g.weights, n.Name)
	}
	if st == StateDead {
		g.departLocked(n.Name, time.Now())
	}
	delete(g.peers, n.Name)
	ep := metaEpoch(n.Meta)
	v := g.views[n.Name]
	if v != nil && v.epoch > ep {
		ep = v.epoch
	}
	if n.Name != g.name {
		delete(g.views, n.Name)
	}
	if n.Name == g.name || st == StateLeft {
		v = nil // kept only for a return from a wrong death
	}
	g.departed[n.Name] = departure{epoch: ep, state: st, addr: net.JoinHostPort(n.Addr.String(), strconv.Itoa(int(n.Port))), at: time.Now(), view: v}
}
