// Package cluster is a thin wrapper around hashicorp/raft for one raftlb
// director: it owns the node's durable stores, its (optionally mutual-TLS)
// TCP transport and the raft.Raft instance, and exposes the few membership
// and replication operations the director needs with small, stable errors.
//
// Threading: every exported method of Node is safe for concurrent use by
// multiple goroutines, including concurrently with Shutdown. After Shutdown
// operations fail with ErrShutdown or ErrNotLeader; read-only accessors keep
// returning the last known values.
//
// The raft.FSM passed to New is driven by hashicorp/raft's own goroutines:
// Apply, Snapshot and Restore are never called concurrently with each other,
// but they run concurrently with the caller's goroutines, so the FSM must
// synchronise any state it shares with readers.
package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"go.etcd.io/bbolt"
)

// Sentinel errors. Returned errors may wrap them with detail; test with
// errors.Is.
var (
	// ErrNotLeader is returned by leader-only operations on a node that is
	// not (or stopped being) the leader. Use Leader to find the current one.
	// If leadership was lost while a command was in flight the error also
	// wraps raft.ErrLeadershipLost: the command may or may not have been
	// committed.
	ErrNotLeader = errors.New("cluster: not the raft leader")

	// ErrAlreadyBootstrapped is returned by Bootstrap when the node already
	// has Raft state (it was bootstrapped before, or joined a cluster).
	ErrAlreadyBootstrapped = errors.New("cluster: node already has raft state; not bootstrapping")

	// ErrUnknownPeer is returned when a server ID is not in the current
	// Raft configuration.
	ErrUnknownPeer = errors.New("cluster: unknown peer")

	// ErrConflict is returned by AddVoter when the ID is already a member
	// with a different address, or the address belongs to another ID.
	ErrConflict = errors.New("cluster: conflicting peer")

	// ErrShutdown is returned by operations on a node whose Raft instance
	// is shut down. It is the same value as raft.ErrRaftShutdown.
	ErrShutdown = raft.ErrRaftShutdown
)

// Server is a voter listed in Bootstrap.
type Server struct {
	ID      string
	Address string
}

// Peer is one member of the current Raft configuration.
type Peer struct {
	ID       string
	Address  string
	Suffrage string // "voter", "nonvoter" or "staging"
	Leader   bool   // this peer is the leader as known by the local node
}

// Status is a point-in-time view of the local node, cheap to obtain (it does
// not go through the Raft main loop).
type Status struct {
	ID           string
	Addr         string
	State        string // "leader", "follower", "candidate" or "shutdown"
	LeaderID     string // "" if unknown
	LeaderAddr   string // "" if unknown
	Term         uint64
	CommitIndex  uint64
	AppliedIndex uint64 // last index handed to the FSM
	LastIndex    uint64 // last index in the log or latest snapshot
	// LastContact is when a leader last contacted this node; zero if never.
	// Only meaningful on followers.
	LastContact time.Time
	// Profile is the name of the profile in effect (see SetProfile).
	Profile string
}

const (
	// logCacheSize is the number of recent log entries kept in memory in
	// front of the BoltStore.
	logCacheSize = 512
	// snapshotsRetained is how many snapshots are kept in DataDir/snapshots.
	snapshotsRetained = 2
	// transportMaxPool is the number of pooled outbound connections per peer.
	transportMaxPool = 3
	// transportTimeout is the I/O deadline for Raft RPCs.
	transportTimeout = 10 * time.Second
	// transportMaxInFlight 1 turns hashicorp's pipelined replication off:
	// every AppendEntries to a follower waits for the previous one's
	// answer. The pipeline (net_transport.go netPipeline with
	// replication.go pipelineReplicate/pipelineDecode, v1.7.3) can
	// deadlock: when an answer ends pipelineDecode (a newer term, or
	// Success false) while one more request is in flight, decodeResponses
	// decodes that request's answer and waits forever to hand it to the
	// gone pipelineDecode, and pipelineReplicate, whose select may pick a
	// pending trigger over the closed finish channel, sends one more
	// request and waits forever for decodeResponses to take it. Only
	// pipelineReplicate's deferred Close would free them, and neither
	// watches raft's shutdown; the stuck replication goroutine then keeps
	// Raft.Shutdown waiting for good (hashicorp/raft issue 612). It took a
	// leader cut off from the others and back within the I/O deadline: its
	// pipelined requests were answered with the newer term, and its
	// lease loop's barriers kept a trigger pending. A director that had
	// been through that once never stopped on SIGTERM (issue 11; the
	// replay is TestShutdownAfterAnIsolatedLeaderRejoins). The cost is
	// small for raftlb: with 2 in flight the pipeline only overlapped
	// sending the next batch with waiting for the previous answer;
	// replication still batches up to MaxAppendEntries per request, and
	// hashicorp found the pipeline of little use outside high-latency
	// links (NetworkTransportConfig.MaxRPCsInFlight, their PR 541).
	transportMaxInFlight = 1
	// boltOpenTimeout bounds waiting for the raft.db file lock.
	boltOpenTimeout = time.Second
	// waitLeaderPoll is the polling period of WaitLeader.
	waitLeaderPoll = 10 * time.Millisecond
)

// Node is one director's Raft participant. Create it with New and release it
// with Shutdown. All methods are safe for concurrent use.
type Node struct {
	id       string
	addr     string
	raft     *raft.Raft
	trans    raft.Transport // TCP (voteTransport) unless Config.Transport
	stream   *streamLayer
	store    Store // raft.db unless Config.Store
	logger   hclog.Logger
	existing bool
	dataDir  string

	identityMu sync.Mutex
	identity   *Identity // nil until the node has raft state; guarded by identityMu

	profileMu sync.Mutex // serialises SetProfile
	profile   Profile    // guarded by profileMu

	// Leadership notifications: raft writes to notifyCh (blocking), the
	// fan-out goroutine copies each value to every subscriber.
	notifyCh   chan bool
	stopNotify chan struct{}
	notifyDone chan struct{}
	subsMu     sync.Mutex
	subs       []chan bool // guarded by subsMu
	subsClosed bool        // guarded by subsMu

	// Prompt elections (election.go).
	preference atomic.Pointer[func(ids []string) []string]
	promptDone chan struct{}

	shutdownOnce sync.Once
	shutdownDone chan struct{}          // closed when shutdown has finished
	shutdownErr  error                  // set before shutdownDone is closed
	shutdownStep atomic.Pointer[string] // what shutdown is doing, for errors
}

// New validates cfg, creates cfg.DataDir (mode 0700), opens the Raft stores
// in it, starts the TCP (or mutual-TLS) transport and starts Raft with fsm.
// It does not bootstrap: call Bootstrap on a brand-new cluster, or have the
// leader AddVoter this node. On error everything New opened is closed again.
//
// If DataDir holds a snapshot, fsm.Restore is called before New returns.
func New(cfg Config, fsm raft.FSM) (n *Node, err error) {
	if fsm == nil {
		return nil, errors.New("cluster: fsm is nil")
	}
	cfg, err = cfg.validate()
	if err != nil {
		return nil, err
	}
	logger := cfg.Logger

	var closers []func() error
	defer func() {
		if err != nil {
			for i := len(closers) - 1; i >= 0; i-- {
				_ = closers[i]()
			}
		}
	}()

	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("cluster: create Config.DataDir: %w", err)
	}

	dbPath := filepath.Join(cfg.DataDir, "raft.db")
	t0 := time.Now()
	var store Store = cfg.Store
	if store == nil {
		if err := checkBolt(dbPath); err != nil {
			if errors.Is(err, bbolt.ErrTimeout) {
				return nil, fmt.Errorf("cluster: open %s: file is locked (is another node using Config.DataDir?): %w", dbPath, err)
			}
			return nil, dataDirErr("the raft store %s is damaged: %v", dbPath, err)
		}
		bolt, err := openStore(dbPath)
		if err != nil {
			if errors.Is(err, bbolt.ErrTimeout) {
				return nil, fmt.Errorf("cluster: open %s: file is locked (is another node using Config.DataDir?): %w", dbPath, err)
			}
			return nil, dataDirErr("cannot open the raft store %s: %v", dbPath, err)
		}
		closers = append(closers, bolt.Close)
		store = bolt
	}
	first, last, err := readLogs(store)
	if err != nil {
		return nil, dataDirErr("the raft store %s is damaged: %v", dbPath, err)
	}
	term, err := store.GetUint64(keyCurrentTerm)
	if err != nil && err.Error() != "not found" {
		return nil, dataDirErr("the raft store %s: read the current term: %v", dbPath, err)
	}
	identity, err := ReadIdentity(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	snapInfos, err := scanSnapshots(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	if err := checkDataDir(dataDirFacts{NodeID: cfg.NodeID, Identity: identity, Term: term, First: first, Last: last, Snapshots: snapInfos}); err != nil {
		return nil, err
	}
	logger.Debug("data dir checked", "log_first", first, "log_last", last, "term", term, "snapshots", len(snapInfos), "took", time.Since(t0))

	logs, err := raft.NewLogCache(logCacheSize, store)
	if err != nil {
		return nil, fmt.Errorf("cluster: log cache: %w", err)
	}
	fileSnaps, err := raft.NewFileSnapshotStoreWithLogger(cfg.DataDir, snapshotsRetained, logger.Named("snapshot"))
	if err != nil {
		return nil, fmt.Errorf("cluster: snapshot store in %s: %w", cfg.DataDir, err)
	}
	snaps := skipDamaged{SnapshotStore: fileSnaps, skip: map[string]bool{}}
	for _, s := range snapInfos {
		if s.Damage != "" {
			logger.Warn("ignoring a damaged snapshot: the log holds everything it covered", "snapshot", s.Dir, "damage", s.Damage)
			snaps.skip[filepath.Base(s.Dir)] = true
		}
	}
	existing, err := raft.HasExistingState(logs, store, snaps)
	if err != nil {
		return nil, fmt.Errorf("cluster: inspect raft state in %s: %w", cfg.DataDir, err)
	}
	if existing && identity == nil {
		// A data dir of an older release, or one that got its first
		// state just before a crash: mark it now.
		if err := writeIdentity(cfg.DataDir, Identity{NodeID: cfg.NodeID, Created: time.Now().UTC()}); err != nil {
			return nil, err
		}
		identity = &Identity{NodeID: cfg.NodeID}
	}

	var trans raft.Transport
	var stream *streamLayer
	var advertise string
	if cfg.Transport != nil {
		trans, advertise = cfg.Transport, string(cfg.Transport.LocalAddr())
	} else {
		ln, err := net.Listen("tcp", cfg.BindAddr)
		if err != nil {
			return nil, fmt.Errorf("cluster: listen on Config.BindAddr %q: %w", cfg.BindAddr, err)
		}
		closers = append(closers, ln.Close)
		advertise = cfg.AdvertiseAddr
		if advertise == "" {
			advertise = ln.Addr().String()
			if err := checkAdvertise(advertise); err != nil {
				return nil, fmt.Errorf("cluster: Config.AdvertiseAddr is required when Config.BindAddr %q binds all interfaces: %w", cfg.BindAddr, err)
			}
		}
		stream = newStreamLayer(ln, advertiseAddr(advertise), cfg.TLS, cfg.dial)
		nt := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
			Stream:          stream,
			MaxPool:         transportMaxPool,
			MaxRPCsInFlight: transportMaxInFlight,
			Timeout:         transportTimeout,
			Logger:          logger.Named("transport"),
		})
		closers = append(closers, nt.Close)
		trans = voteTransport{nt}
	}

	n = &Node{
		id:         cfg.NodeID,
		addr:       advertise,
		trans:      trans,
		stream:     stream,
		store:      store,
		logger:     logger,
		existing:   existing,
		dataDir:    cfg.DataDir,
		identity:   identity,
		profile:    cfg.Profile,
		notifyCh:   make(chan bool, 16),
		stopNotify: make(chan struct{}),
		notifyDone: make(chan struct{}),
		promptDone: make(chan struct{}),
	}

	rc := raft.DefaultConfig()
	rc.ProtocolVersion = raft.ProtocolVersionMax
	rc.LocalID = raft.ServerID(cfg.NodeID)
	rc.HeartbeatTimeout = cfg.Profile.HeartbeatTimeout
	rc.ElectionTimeout = cfg.Profile.ElectionTimeout
	rc.LeaderLeaseTimeout = cfg.Profile.LeaderLeaseTimeout
	rc.CommitTimeout = cfg.Profile.CommitTimeout
	if cfg.SnapshotThreshold != 0 {
		rc.SnapshotThreshold = cfg.SnapshotThreshold
	}
	if cfg.SnapshotInterval != 0 {
		rc.SnapshotInterval = cfg.SnapshotInterval
	}
	if cfg.TrailingLogs != 0 {
		rc.TrailingLogs = cfg.TrailingLogs
	}
	rc.NoSnapshotRestoreOnStart = false
	// A node removed from the configuration keeps running as a follower that
	// takes no part in elections, rather than shutting Raft down behind the
	// owner's back; Shutdown then always waits for Raft's goroutines before
	// closing the stores.
	rc.ShutdownOnRemove = false
	rc.NotifyCh = n.notifyCh
	rc.Logger = logger

	if err := recoverFromPeersJSON(cfg.DataDir, rc, fsm, logs, store, snaps, trans, logger); err != nil {
		return nil, err
	}

	r, err := raft.NewRaft(rc, fsm, logs, store, snaps, trans)
	if err != nil {
		return nil, fmt.Errorf("cluster: start raft: %w", err)
	}
	n.raft = r
	go n.fanOutLeadership()
	go n.promptElections()
	return n, nil
}

// ID returns this node's Raft server ID.
func (n *Node) ID() string { return n.id }

// Addr returns the address advertised to peers.
func (n *Node) Addr() string { return n.addr }

// Raft returns the underlying raft.Raft, as an escape hatch for operations
// this package does not wrap. Do not call Shutdown on it; use Node.Shutdown.
func (n *Node) Raft() *raft.Raft { return n.raft }

// HasExistingState reports whether DataDir already held Raft state (logs, a
// term or a snapshot) when New opened it. It does not change afterwards.
func (n *Node) HasExistingState() bool { return n.existing }

// Bootstrap creates a brand-new cluster whose voters are servers. Every
// initial member may call it with the identical list; it must be called only
// once per cluster lifetime. servers must include this node (same ID and
// advertised address) and must not repeat an ID or address. It returns
// ErrAlreadyBootstrapped if the node already has Raft state. It does not wait
// for an election; see WaitLeader.
func (n *Node) Bootstrap(servers []Server) error {
	if n.existing {
		return ErrAlreadyBootstrapped
	}
	if len(servers) == 0 {
		return errors.New("cluster: Bootstrap: no servers given")
	}
	ids := make(map[string]bool, len(servers))
	addrs := make(map[string]bool, len(servers))
	self := false
	conf := raft.Configuration{}
	for _, s := range servers {
		if s.ID == "" || s.Address == "" {
			return fmt.Errorf("cluster: Bootstrap: server %+v needs both ID and Address", s)
		}
		if ids[s.ID] {
			return fmt.Errorf("cluster: Bootstrap: duplicate server ID %q", s.ID)
		}
		if addrs[s.Address] {
			return fmt.Errorf("cluster: Bootstrap: duplicate server address %q", s.Address)
		}
		ids[s.ID], addrs[s.Address] = true, true
		if s.ID == n.id {
			if s.Address != n.addr {
				return fmt.Errorf("cluster: Bootstrap: this node %q is listed with address %q but advertises %q", n.id, s.Address, n.addr)
			}
			self = true
		}
		conf.Servers = append(conf.Servers, raft.Server{
			Suffrage: raft.Voter,
			ID:       raft.ServerID(s.ID),
			Address:  raft.ServerAddress(s.Address),
		})
	}
	if !self {
		return fmt.Errorf("cluster: Bootstrap: servers do not include this node %q (%s)", n.id, n.addr)
	}
	err := n.raft.BootstrapCluster(conf).Error()
	if errors.Is(err, raft.ErrCantBootstrap) {
		return ErrAlreadyBootstrapped
	}
	if err != nil {
		return err
	}
	return n.RecordIdentity("")
}

// Apply replicates cmd through the log and returns its index and the value
// the FSM's Apply returned for it (which may itself be an error value; that
// is the FSM's business and is not reported through err). timeout bounds only
// enqueueing the command (0 = no bound); once enqueued, Apply blocks until the
// entry is committed and applied, or leadership is lost. On a non-leader it
// returns ErrNotLeader.
func (n *Node) Apply(cmd []byte, timeout time.Duration) (index uint64, response interface{}, err error) {
	f := n.raft.Apply(cmd, timeout)
	if err := f.Error(); err != nil {
		return 0, nil, mapErr(err)
	}
	return f.Index(), f.Response(), nil
}

// IsLeader reports whether this node currently believes it is the leader.
func (n *Node) IsLeader() bool { return n.raft.State() == raft.Leader }

// Leader returns the current leader's address and ID as known locally;
// both are "" if unknown.
func (n *Node) Leader() (addr string, id string) {
	a, i := n.raft.LeaderWithID()
	return string(a), string(i)
}

// WaitLeader blocks until some leader (possibly this node) is known, and
// returns its ID. It returns ctx.Err() when ctx ends and ErrShutdown if the
// node shuts down.
func (n *Node) WaitLeader(ctx context.Context) (id string, err error) {
	t := time.NewTicker(waitLeaderPoll)
	defer t.Stop()
	for {
		if _, id := n.Leader(); id != "" {
			return id, nil
		}
		if n.raft.State() == raft.Shutdown {
			return "", ErrShutdown
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-t.C:
		}
	}
}

// configuration returns the latest (possibly uncommitted) configuration and
// its index.
func (n *Node) configuration() (raft.Configuration, uint64, error) {
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return raft.Configuration{}, 0, mapErr(err)
	}
	return f.Configuration(), f.Index(), nil
}

// AddVoter adds a voting member, or promotes an existing non-voter with the
// same address. Leader only (ErrNotLeader otherwise). It is a no-op if id is
// already a voter at addr. It fails with ErrConflict if id is a member with a
// different address, or addr belongs to another member (remove it first).
// It blocks until the configuration change is committed.
func (n *Node) AddVoter(id, addr string) error {
	if id == "" {
		return errors.New("cluster: AddVoter: empty id")
	}
	if err := checkAdvertise(addr); err != nil {
		return fmt.Errorf("cluster: AddVoter %q: address: %w", id, err)
	}
	if !n.IsLeader() {
		return ErrNotLeader
	}
	conf, index, err := n.configuration()
	if err != nil {
		return err
	}
	for _, s := range conf.Servers {
		switch {
		case string(s.ID) == id && string(s.Address) == addr:
			if s.Suffrage == raft.Voter {
				return nil
			}
		case string(s.ID) == id:
			return fmt.Errorf("%w: %q is already a member at %s, not %s", ErrConflict, id, s.Address, addr)
		case string(s.Address) == addr:
			return fmt.Errorf("%w: address %s already belongs to %q", ErrConflict, addr, s.ID)
		}
	}
	return mapErr(n.raft.AddVoter(raft.ServerID(id), raft.ServerAddress(addr), index, 0).Error())
}

// RemoveServer removes id from the configuration. Leader only (ErrNotLeader
// otherwise); ErrUnknownPeer if id is not a member. Removing the leader itself
// is allowed: once the change commits it steps down and the remaining voters
// elect a new leader. A removed node keeps running as an idle follower that
// receives no entries and starts no elections until its owner calls
// Shutdown. It blocks until the change is committed.
func (n *Node) RemoveServer(id string) error {
	if !n.IsLeader() {
		return ErrNotLeader
	}
	conf, index, err := n.configuration()
	if err != nil {
		return err
	}
	if !slices.ContainsFunc(conf.Servers, func(s raft.Server) bool { return string(s.ID) == id }) {
		return fmt.Errorf("%w: %q", ErrUnknownPeer, id)
	}
	return mapErr(n.raft.RemoveServer(raft.ServerID(id), index, 0).Error())
}

// TransferLeadership asks the leader (this node) to hand leadership to the
// voter id, or to the most up-to-date voter if id is "". Leader only
// (ErrNotLeader otherwise); ErrUnknownPeer if id is not a voter. Transferring
// to this node itself is a no-op. It waits for the transfer to finish (raft
// bounds it by ElectionTimeout) and returns nil once this node has stepped
// down.
func (n *Node) TransferLeadership(id string) error {
	if !n.IsLeader() {
		return ErrNotLeader
	}
	if id == "" {
		return mapErr(n.raft.LeadershipTransfer().Error())
	}
	if id == n.id {
		return nil
	}
	conf, _, err := n.configuration()
	if err != nil {
		return err
	}
	for _, s := range conf.Servers {
		if string(s.ID) == id {
			if s.Suffrage != raft.Voter {
				return fmt.Errorf("cluster: cannot transfer leadership to %q: it is a %s", id, suffrage(s.Suffrage))
			}
			return mapErr(n.raft.LeadershipTransferToServer(s.ID, s.Address).Error())
		}
	}
	return fmt.Errorf("%w: %q", ErrUnknownPeer, id)
}

// Peers returns the latest configuration as known locally, sorted by ID.
func (n *Node) Peers() ([]Peer, error) {
	conf, _, err := n.configuration()
	if err != nil {
		return nil, err
	}
	_, leaderID := n.raft.LeaderWithID()
	peers := make([]Peer, 0, len(conf.Servers))
	for _, s := range conf.Servers {
		peers = append(peers, Peer{
			ID:       string(s.ID),
			Address:  string(s.Address),
			Suffrage: suffrage(s.Suffrage),
			Leader:   leaderID != "" && s.ID == leaderID,
		})
	}
	slices.SortFunc(peers, func(a, b Peer) int { return strings.Compare(a.ID, b.ID) })
	return peers, nil
}

// Status returns a snapshot of the local node's Raft state.
func (n *Node) Status() Status {
	leaderAddr, leaderID := n.raft.LeaderWithID()
	n.profileMu.Lock()
	profile := n.profile.Name
	n.profileMu.Unlock()
	return Status{
		ID:           n.id,
		Addr:         n.addr,
		State:        strings.ToLower(n.raft.State().String()),
		LeaderID:     string(leaderID),
		LeaderAddr:   string(leaderAddr),
		Term:         n.raft.CurrentTerm(),
		CommitIndex:  n.raft.CommitIndex(),
		AppliedIndex: n.raft.AppliedIndex(),
		LastIndex:    n.raft.LastIndex(),
		LastContact:  n.raft.LastContact(),
		Profile:      profile,
	}
}

// VerifyLeader confirms with a quorum that this node is still the leader,
// returning ErrNotLeader if it is not. Use it before serving reads that must
// not be stale.
func (n *Node) VerifyLeader() error {
	return mapErr(n.raft.VerifyLeader().Error())
}

// Barrier blocks until every preceding log entry has been applied to the
// FSM. Leader only (ErrNotLeader otherwise). timeout bounds only enqueueing
// (0 = no bound).
func (n *Node) Barrier(timeout time.Duration) error {
	return mapErr(n.raft.Barrier(timeout).Error())
}

// SetProfile changes HeartbeatTimeout and ElectionTimeout of the running
// node (raft.ReloadConfig). LeaderLeaseTimeout and CommitTimeout cannot be
// reloaded by hashicorp/raft and keep the values from New until restart.
// Consequently switching to a profile whose HeartbeatTimeout is below the
// running LeaderLeaseTimeout (e.g. "lan" -> "fast") fails; restart the node
// with the new profile instead. Every director should run the same profile.
func (n *Node) SetProfile(p Profile) error {
	if p == (Profile{}) {
		p = profileLAN
	}
	if err := p.validate(); err != nil {
		return fmt.Errorf("cluster: SetProfile: %w", err)
	}
	n.profileMu.Lock()
	defer n.profileMu.Unlock()
	if lease := n.profile.LeaderLeaseTimeout; p.HeartbeatTimeout <= lease {
		return fmt.Errorf("cluster: SetProfile %q: HeartbeatTimeout %s is not above the running LeaderLeaseTimeout %s, which cannot be changed without a restart",
			p.Name, p.HeartbeatTimeout, lease)
	}
	rc := n.raft.ReloadableConfig()
	rc.HeartbeatTimeout = p.HeartbeatTimeout
	rc.ElectionTimeout = p.ElectionTimeout
	if err := n.raft.ReloadConfig(rc); err != nil {
		return fmt.Errorf("cluster: SetProfile %q: %w", p.Name, err)
	}
	// Keep the lease and commit timeouts actually in force.
	p.LeaderLeaseTimeout = n.profile.LeaderLeaseTimeout
	p.CommitTimeout = n.profile.CommitTimeout
	n.profile = p
	return nil
}

// LeaderChanges returns a new subscription to leadership changes of this
// node: true when it becomes leader, false when it stops being leader. Each
// call creates an independent channel that lives until Shutdown, when it is
// closed (a closed channel means the node is no longer leader); call it once
// per long-lived consumer. Delivery never blocks Raft:
// the channel holds one value and a newer value replaces an unread one, so a
// slow consumer sees the latest state but may miss intermediate flips (treat
// each value as "current state", and re-check IsLeader if in doubt).
func (n *Node) LeaderChanges() <-chan bool {
	ch := make(chan bool, 1)
	n.subsMu.Lock()
	defer n.subsMu.Unlock()
	if n.subsClosed {
		close(ch)
		return ch
	}
	n.subs = append(n.subs, ch)
	return ch
}

// fanOutLeadership drains raft's NotifyCh (raft blocks on it, so it must
// always be drained) and publishes each value to all subscribers.
func (n *Node) fanOutLeadership() {
	defer close(n.notifyDone)
	for {
		select {
		case v := <-n.notifyCh:
			n.publish(v)
		case <-n.stopNotify:
			// Deliver what raft pushed during shutdown (best effort on its
			// side), then close all subscriptions.
			for {
				select {
				case v := <-n.notifyCh:
					n.publish(v)
					continue
				default:
				}
				break
			}
			n.subsMu.Lock()
			n.subsClosed = true
			for _, ch := range n.subs {
				close(ch)
			}
			n.subs = nil
			n.subsMu.Unlock()
			return
		}
	}
}

// publish offers v to every subscriber without blocking; a newer value
// replaces an unread one. Only fanOutLeadership calls it.
func (n *Node) publish(v bool) {
	n.subsMu.Lock()
	defer n.subsMu.Unlock()
	for _, ch := range n.subs {
		select {
		case ch <- v:
		default:
			// Replace the unread value. Only this goroutine sends, so once
			// the buffer is drained the send cannot block.
			select {
			case <-ch:
			default:
			}
			ch <- v
		}
	}
}

// Shutdown is ShutdownContext without a deadline.
func (n *Node) Shutdown() error { return n.ShutdownContext(context.Background()) }

// ShutdownContext stops the node gracefully: if it is the leader and other
// voters exist it first transfers leadership (bounded by about
// 2*ElectionTimeout and by ctx; failures are logged, not returned), then
// shuts Raft down, closes the transport and the stores, and closes all
// LeaderChanges channels. Raft's connections are closed as soon as its
// shutdown has begun, so RPCs in flight to an unreachable peer end at once
// instead of at their I/O deadline.
//
// The first call starts the shutdown; every call waits for it to finish and
// returns its result, or returns early when ctx ends, with an error that
// wraps ctx.Err() and says which step had not finished (the shutdown goes
// on in the background; a later call waits for it again). Once Raft's
// goroutines have stopped nothing else can block. Safe to call
// concurrently.
func (n *Node) ShutdownContext(ctx context.Context) error {
	n.shutdownOnce.Do(func() {
		n.shutdownDone = make(chan struct{})
		go func() {
			defer close(n.shutdownDone)
			n.shutdownErr = n.shutdown(ctx)
		}()
	})
	select {
	case <-n.shutdownDone:
		return n.shutdownErr
	case <-ctx.Done():
		step := "starting"
		if s := n.shutdownStep.Load(); s != nil {
			step = *s
		}
		return fmt.Errorf("cluster: shutdown of %s did not finish: %s: %w", n.id, step, ctx.Err())
	}
}

// step records what shutdown is doing.
func (n *Node) step(s string) { n.shutdownStep.Store(&s) }

// shutdown runs the steps of ShutdownContext; ctx (the first caller's)
// bounds only the leadership transfer.
func (n *Node) shutdown(ctx context.Context) error {
	if n.IsLeader() && n.hasOtherVoters() {
		n.step("transferring leadership")
		bound := 2 * n.raft.ReloadableConfig().ElectionTimeout
		done := make(chan error, 1)
		go func() { done <- n.raft.LeadershipTransfer().Error() }()
		timer := time.NewTimer(bound)
		select {
		case err := <-done:
			if err != nil {
				n.logger.Warn("leadership transfer before shutdown failed", "error", err)
			}
		case <-timer.C:
			n.logger.Warn("leadership transfer before shutdown timed out", "after", bound)
		case <-ctx.Done():
			n.logger.Warn("leadership transfer before shutdown abandoned", "error", ctx.Err())
		}
		timer.Stop()
	}
	var errs []error
	n.step("stopping raft")
	f := n.raft.Shutdown()
	// Raft's goroutines now stop at their next check, but one blocked in
	// an RPC (a dial, or a read from a peer that does not answer) would
	// only notice at the transport's I/O deadline: close the connections
	// under them.
	if n.stream != nil {
		n.stream.shutdown()
	}
	n.step("waiting for raft's goroutines to stop")
	if err := f.Error(); err != nil {
		errs = append(errs, fmt.Errorf("cluster: raft shutdown: %w", err))
	}
	// Raft no longer writes to notifyCh once its goroutines have exited.
	n.step("closing leadership subscriptions")
	close(n.stopNotify)
	<-n.notifyDone
	<-n.promptDone
	n.step("closing the transport and raft.db")
	if c, ok := n.trans.(raft.WithClose); ok {
		if err := c.Close(); err != nil {
			errs = append(errs, fmt.Errorf("cluster: close transport: %w", err))
		}
	}
	if c, ok := n.store.(io.Closer); ok {
		if err := c.Close(); err != nil {
			errs = append(errs, fmt.Errorf("cluster: close raft.db: %w", err))
		}
	}
	n.step("done")
	return errors.Join(errs...)
}

func (n *Node) hasOtherVoters() bool {
	conf, _, err := n.configuration()
	if err != nil {
		return false
	}
	return slices.ContainsFunc(conf.Servers, func(s raft.Server) bool {
		return s.Suffrage == raft.Voter && string(s.ID) != n.id
	})
}

// mapErr translates hashicorp/raft errors into this package's sentinels.
func mapErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, raft.ErrNotLeader):
		return ErrNotLeader
	case errors.Is(err, raft.ErrLeadershipLost):
		return fmt.Errorf("%w: %w (the command may or may not have been committed)", ErrNotLeader, err)
	case errors.Is(err, raft.ErrLeadershipTransferInProgress):
		return fmt.Errorf("%w: %w", ErrNotLeader, err)
	}
	return err
}

func suffrage(s raft.ServerSuffrage) string {
	switch s {
	case raft.Voter:
		return "voter"
	case raft.Nonvoter:
		return "nonvoter"
	case raft.Staging:
		return "staging"
	}
	return strings.ToLower(s.String())
}

// PeersFile is the name, inside DataDir, of the manual recovery file: a JSON
// list of the servers that make up the cluster from now on, e.g.
//
//	[{"id": "d1", "address": "10.0.0.1:7481"}]
//
// When it is present at start, New rewrites the local raft configuration to
// exactly that list (raft.RecoverCluster), then renames the file to
// PeersFile + ".applied" so it is used once. It is for when a quorum is lost
// for good; see docs/operations.md.
const PeersFile = "peers.json"

func recoverFromPeersJSON(dataDir string, rc *raft.Config, fsm raft.FSM, logs raft.LogStore, stable raft.StableStore,
	snaps raft.SnapshotStore, trans raft.Transport, logger hclog.Logger) error {
	path := filepath.Join(dataDir, PeersFile)
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	conf, err := raft.ReadConfigJSON(path)
	if err != nil {
		return fmt.Errorf("cluster: %s: %w", path, err)
	}
	if err := raft.RecoverCluster(rc, fsm, logs, stable, snaps, trans, conf); err != nil {
		return fmt.Errorf("cluster: recover with %s: %w", path, err)
	}
	if err := os.Rename(path, path+".applied"); err != nil {
		return fmt.Errorf("cluster: recovered, but cannot rename %s (remove it before the next start): %w", path, err)
	}
	logger.Warn("recovered the raft configuration from "+PeersFile, "servers", len(conf.Servers))
	return nil
}
