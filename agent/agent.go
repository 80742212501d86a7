// Package agent wires one director together: the replicated state (fsm), the
// raft node (cluster) and the admin API (api), and runs the membership
// chores around them: bootstrap exactly once, join, keep this director's API
// address registered, follow the replicated timing profile, and leave or hand
// over leadership on shutdown.
//
// `raftlb agent` is a thin flag parser around Start; tests start several
// agents in one process over real TCP.
package agent

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/raftlb/raftlb/api"
	"github.com/raftlb/raftlb/api/client"
	"github.com/raftlb/raftlb/api/wire"
	"github.com/raftlb/raftlb/cluster"
	"github.com/raftlb/raftlb/dataplane"
	"github.com/raftlb/raftlb/dataplane/fence"
	"github.com/raftlb/raftlb/dataplane/vip"
	"github.com/raftlb/raftlb/fsm"
	"github.com/raftlb/raftlb/model"
	"github.com/raftlb/raftlb/trust"
)

// DevAPIAddr is where -dev serves the API.
const DevAPIAddr = "127.0.0.1:7480"

// Config is one director's configuration (`raftlb agent` flags).
type Config struct {
	NodeID  string // default: the host name
	DataDir string // required unless Dev

	RaftAddr      string // raft listen host:port (default 127.0.0.1:7481 in dev, required otherwise)
	RaftAdvertise string // optional
	RaftTLS       *tls.Config

	APIAddr      string // API listen host:port (default 127.0.0.1:7480)
	APIAdvertise string // host:port other directors use to reach this API; default APIAddr
	APITLS       *tls.Config
	// APIClientTLS verifies other directors' HTTPS APIs (forwarding, join).
	APIClientTLS *tls.Config
	APICAFile    string // the same CA as a file, for the Go client used to join/register
	Token        string
	// ExtraTokens are accepted and their cluster CAs trusted besides
	// Token's: a token rotation in progress (docs/operations.md).
	ExtraTokens []string
	// Insecure lets raft and the API listen beyond loopback without TLS
	// (logged at every start, shown in /v1/status). Without it they get
	// certificates from the cluster CA derived from the token, unless
	// RaftTLS / APITLS are given.
	Insecure bool
	// TLSNames are extra host names or addresses for this director's
	// certificate (a DNS name operators use, a NAT address).
	TLSNames []string
	// API request limits (0: api.DefaultMaxBody, DefaultMaxReals,
	// DefaultMaxEntry): body bytes, real servers per request, bytes of the
	// raft entry a write becomes.
	APIMaxBody  int64
	APIMaxReals int
	APIMaxEntry int

	// Bootstrap: BootstrapExpect N with Peers (static id=addr list) or Join
	// (API addresses to discover peers); Join alone joins an existing cluster.
	BootstrapExpect int
	Peers           []cluster.Server
	Join            []string

	Profile         string // raft timing profile until the replicated setting says otherwise
	LeaveOnShutdown bool   // leave the raft configuration on graceful shutdown
	Dev             bool   // one-node cluster in a temporary data dir, no token for local writes

	// Dataplane is auto, ipvs, nft or none (default auto; none with Dev).
	Dataplane      string
	DataplanePrune bool          // delete kernel services raftlb does not own
	Resync         time.Duration // drift-repair period (default 30 s)
	// Gratuitous ARP / unsolicited NA when this director takes the VIPs:
	// GARPBurst announcements GARPInterval apart, then one per VIP every
	// GARPRefresh (switches age their MAC tables). Zero values take the
	// defaults (5, 100 ms, 10 s); negative disables.
	GARPBurst    int
	GARPInterval time.Duration
	GARPRefresh  time.Duration
	// Who should lead (docs/operations.md "Priorities"). Priority 1-255
	// (0 = 100); a higher-priority director takes leadership from a lower
	// one after being ready for PreemptDelay, unless NoPreempt. A Witness
	// is a voter with no dataplane that never holds VIPs and hands
	// leadership to a director at once if elected.
	Priority     int
	PreemptDelay time.Duration
	NoPreempt    bool
	Witness      bool
	// Tracked checks (keepalived's track_interface / track_script): while
	// an interface is not up or a script ("path args...") exits non-zero,
	// this director holds no VIP and does not lead. Scripts run every
	// TrackInterval (default 1 s), which is also their timeout.
	TrackInterfaces []string
	TrackScripts    []string
	TrackInterval   time.Duration

	// Health checking and gossip (agent/health.go, docs/operations.md
	// "Health checks"). GossipAddr is the memberlist bind host:port (UDP
	// and TCP; default the raft address's host, port 7482, or a free port
	// when the raft port is 0); GossipAdvertise what the others dial
	// (default the -raft-advertise host). GossipKey is the AES key (16, 24
	// or 32 bytes); default derived from Token (DeriveGossipKey).
	// HealthWorkers sizes the prober's pool (default 64); HealthBatch is
	// the leader's batching window before it decides (default 20 ms).
	GossipAddr      string
	GossipAdvertise string
	GossipKey       []byte
	HealthWorkers   int
	HealthBatch     time.Duration

	// Backend, if set, is used instead of opening one (tests).
	Backend     dataplane.Backend
	BackendCaps *model.DataplaneCaps
	// VIPFence, VIPLinks and VIPAnnouncer, if all set, are the kernel
	// fence, the address side and the announcer the VIP lease works
	// through, instead of nftables, netlink and packet sockets (tests run
	// the lease loop with fence.Fake, vip.FakeLinks, vip.FakeAnnouncer,
	// even with Dataplane none).
	VIPFence     fence.Interface
	VIPLinks     vip.Links
	VIPAnnouncer vip.Announcer

	Log     *slog.Logger
	Version string

	// For tests and benchmarks: snapshot tuning.
	SnapshotThreshold uint64
	TrailingLogs      uint64
}

// Agent is a running director.
type Agent struct {
	cfg    Config
	log    *slog.Logger
	fsm    *fsm.FSM
	node   *cluster.Node
	ln     net.Listener
	http   *http.Server
	self   *client.Client // this director's own API, authenticated
	scheme string

	backend    dataplane.Backend
	caps       *model.DataplaneCaps
	dpKind     string
	reconciler *dataplane.Reconciler
	vips       *vip.Manager
	vipLinks   *vip.Netlink
	vipAnn     *vip.PacketAnnouncer
	fence      fence.Interface
	fenced     []netip.Addr // the VIP addresses declared to the fence
	leaseMu    sync.Mutex
	lease      wire.LeaseStatus
	leadership string        // the leadership decision's last reason (status)
	leaseCtl   chan leaseCmd // planned-handover requests to the lease loop
	leaseDone  chan struct{} // closed when the lease loop ends
	faults     *faultState
	health     *agentHealth // health.go

	stopMu    sync.Mutex
	stoppedBy *wire.Stopped // why this director stopped serving (stopServing)

	cancel  context.CancelFunc
	wg      sync.WaitGroup
	tmpDir  string
	stopped sync.Once
	stopErr error
}

// Validate fills in defaults and checks the configuration; Start calls it
// too. Its errors name the flag to fix.
func (c *Config) Validate() error {
	if c.Log == nil {
		c.Log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	if c.Dataplane == "" {
		c.Dataplane = DataplaneAuto
		if c.Dev {
			c.Dataplane = DataplaneNone // -dev never touches the host's kernel unless asked
		}
	}
	switch c.Dataplane {
	case DataplaneAuto, DataplaneIPVS, DataplaneNFT, DataplaneNone:
	default:
		return fmt.Errorf("-dataplane: %q is not auto, ipvs, nft or none", c.Dataplane)
	}
	if c.Resync == 0 {
		c.Resync = resyncDefault
	}
	if c.Dev {
		if c.NodeID == "" {
			c.NodeID = "dev"
		}
		if c.APIAddr == "" {
			c.APIAddr = DevAPIAddr
		}
		if c.RaftAddr == "" {
			c.RaftAddr = "127.0.0.1:0"
		}
		if c.Profile == "" {
			c.Profile = "fast"
		}
		if c.BootstrapExpect == 0 {
			c.BootstrapExpect = 1
		}
		if c.BootstrapExpect != 1 || len(c.Peers) > 0 || len(c.Join) > 0 {
			return errors.New("-dev runs a one-node cluster: drop -bootstrap-expect, -peers and -join")
		}
	}
	if c.NodeID == "" {
		h, err := os.Hostname()
		if err != nil {
			return fmt.Errorf("-node-id: not given and no host name: %v", err)
		}
		c.NodeID = h
	}
	if !model.ValidName(c.NodeID) {
		return fmt.Errorf("-node-id: %q is not a valid id (1-63 of A-Z a-z 0-9 _ . -)", c.NodeID)
	}
	if c.DataDir == "" && !c.Dev {
		return errors.New("-data-dir is required (raft log, stable store and snapshots live there)")
	}
	if c.RaftAddr == "" {
		return errors.New("-raft-addr is required (host:port for raft traffic between directors)")
	}
	if c.APIAddr == "" {
		c.APIAddr = DevAPIAddr
	}
	if _, err := cluster.ProfileByName(c.Profile); err != nil {
		return fmt.Errorf("-timing: %v", err)
	}
	if c.BootstrapExpect < 0 {
		return errors.New("-bootstrap-expect must be ≥ 1")
	}
	if len(c.Peers) > 0 {
		if c.BootstrapExpect == 0 {
			c.BootstrapExpect = len(c.Peers)
		}
		if c.BootstrapExpect != len(c.Peers) {
			return fmt.Errorf("-bootstrap-expect %d does not match the %d directors in -peers", c.BootstrapExpect, len(c.Peers))
		}
	}
	if c.BootstrapExpect > 1 && len(c.Peers) == 0 && len(c.Join) == 0 {
		return fmt.Errorf("-bootstrap-expect %d needs -peers (id=host:port,...) or -join (API addresses of the others)", c.BootstrapExpect)
	}
	if c.Token == "" && !c.Dev {
		return errors.New("-token-file is required: writes always need a bearer token outside -dev (reads too when the API listens beyond loopback)")
	}
	if err := c.checkTokens(); err != nil {
		return err
	}
	if c.APIMaxBody < 0 || c.APIMaxReals < 0 || c.APIMaxEntry < 0 {
		return errors.New("-api-max-body, -api-max-reals and -api-max-entry cannot be negative")
	}
	return c.validateLeadership()
}

// validateLeadership checks the priority, witness and tracking settings.
func (c *Config) validateLeadership() error {
	if c.Priority < 0 || c.Priority > 255 {
		return fmt.Errorf("-priority: %d is out of range (1-255)", c.Priority)
	}
	if c.PreemptDelay < 0 || c.PreemptDelay > time.Hour {
		return fmt.Errorf("-preempt-delay: %v is out of range (0-1h)", c.PreemptDelay)
	}
	if c.Witness {
		switch c.Dataplane {
		case DataplaneAuto, DataplaneNone:
			c.Dataplane = DataplaneNone
		default:
			return fmt.Errorf("-witness has no dataplane: drop -dataplane %s", c.Dataplane)
		}
		if len(c.TrackInterfaces)+len(c.TrackScripts) > 0 {
			return errors.New("-witness holds no VIPs: drop -track-interface and -track-script")
		}
	}
	if c.TrackInterval < 0 {
		return fmt.Errorf("-track-interval: %v is negative", c.TrackInterval)
	}
	for _, n := range c.TrackInterfaces {
		if err := model.CheckIfName("-track-interface", n); err != nil {
			return err
		}
	}
	for _, s := range c.TrackScripts {
		if _, err := trackScriptChecker(s, time.Second); err != nil {
			return fmt.Errorf("-track-script %q: %v", s, err)
		}
	}
	return nil
}

// Start starts a director and returns once its API is listening. Raft
// bootstrap, joining and registration continue in the background; use
// WaitReady to wait for a leader.
func Start(ctx context.Context, cfg Config) (*Agent, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	a := &Agent{cfg: cfg, log: cfg.Log.With("node", cfg.NodeID), scheme: "http", faults: newFaultState()}
	if err := a.start(); err != nil {
		_ = a.close() // release whatever start opened
		return nil, err
	}
	return a, nil
}

func (a *Agent) start() (err error) {
	cfg := a.cfg
	if cfg.Dev && cfg.DataDir == "" {
		if a.tmpDir, err = os.MkdirTemp("", "raftlb-dev-"); err != nil {
			return err
		}
		a.cfg.DataDir = a.tmpDir
	}
	profile, _ := cluster.ProfileByName(a.startProfile())

	// The API listens first, so that peers can discover this director
	// while raft starts.
	if a.ln, err = net.Listen("tcp", cfg.APIAddr); err != nil {
		return fmt.Errorf("-api-addr %s: %w", cfg.APIAddr, err)
	}
	apiHost, _, _ := net.SplitHostPort(cfg.APIAddr)
	if a.cfg.APIAdvertise == "" {
		h, p, _ := net.SplitHostPort(a.ln.Addr().String())
		if a2, err := netip.ParseAddr(h); err == nil && a2.IsUnspecified() {
			return fmt.Errorf("-api-addr %s listens on every address: set -api-advertise to the address other directors should use", cfg.APIAddr)
		}
		a.cfg.APIAdvertise = net.JoinHostPort(h, p)
	}
	security, err := a.setupTLS(a.ln.Addr())
	if err != nil {
		return err
	}
	if a.cfg.APITLS != nil {
		a.scheme = "https"
	}
	cfg = a.cfg

	a.fsm = fsm.New(a.log.With("part", "fsm"))
	a.node, err = cluster.New(cluster.Config{
		NodeID: cfg.NodeID, DataDir: a.cfg.DataDir, BindAddr: cfg.RaftAddr, AdvertiseAddr: cfg.RaftAdvertise,
		Profile: profile, TLS: cfg.RaftTLS, SnapshotThreshold: cfg.SnapshotThreshold, TrailingLogs: cfg.TrailingLogs,
		Logger: hclog.New(&hclog.LoggerOptions{Name: "raft", Level: hclog.LevelFromString(envOr(cluster.LogLevelEnv, "warn")), Output: os.Stderr}),
	}, a.fsm)
	if err != nil {
		return err
	}
	a.node.SetSuccessorPreference(a.successorPreference)

	runCtx, cancel := context.WithCancel(context.Background())
	a.cancel = cancel
	if err := a.startDataplane(runCtx); err != nil {
		return err
	}
	if err := a.startVIPs(runCtx); err != nil {
		return err
	}
	if err := a.startHealth(runCtx); err != nil {
		return err
	}

	srv := api.NewServer(api.Config{
		FSM: a.fsm, Raft: a.node, Token: cfg.Token, ExtraTokens: cfg.ExtraTokens,
		Dataplane: a.dataplaneStatus, VIPs: a.vipStatus, Leadership: a.leadershipStatus,
		Health: a.healthReport, Gossip: a.gossipStatus, HealthStats: a.healthStatus,
		TokenForReads:  !trust.IsLoopback(apiHost),
		TokenForWrites: !cfg.Dev,
		ForwardTLS:     cfg.APIClientTLS, Insecure: cfg.Insecure, Security: security,
		MaxBody: cfg.APIMaxBody, MaxReals: cfg.APIMaxReals, MaxEntry: cfg.APIMaxEntry,
		Log: a.log.With("part", "api"), Version: cfg.Version,
		Stopped: a.stoppedReason,
	})
	a.http = &http.Server{Handler: srv.Handler(), ReadHeaderTimeout: 10 * time.Second, TLSConfig: cfg.APITLS}
	go func() {
		var err error
		if cfg.APITLS != nil {
			err = a.http.ServeTLS(a.ln, "", "")
		} else {
			err = a.http.Serve(a.ln)
		}
		if err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.log.Error("API server stopped", "err", err)
		}
	}()
	if a.self, err = a.apiClient(a.APIURL(), 15*time.Second); err != nil {
		return err
	}

	if err := a.bootstrap(runCtx); err != nil {
		return err
	}
	a.goRun(runCtx, a.watchFSM)
	a.goRun(runCtx, a.registerLoop)
	a.goRun(runCtx, a.profileLoop)
	a.goRun(runCtx, a.leadershipLoop)
	if len(cfg.TrackInterfaces)+len(cfg.TrackScripts) > 0 {
		a.goRun(runCtx, a.trackLoop)
	}
	a.log.Info("director started", "api", a.APIURL(), "raft", a.node.Addr(), "data_dir", a.cfg.DataDir,
		"profile", profile.Name, "existing_state", a.node.HasExistingState(), "dev", cfg.Dev)
	return nil
}

// watchFSM takes this director out of raft once its FSM has stopped on a
// damaged log entry (fsm.Failure): it must never lead or vote on a state it
// cannot apply.
func (a *Agent) watchFSM(ctx context.Context) {
	for {
		changed := a.fsm.Changed()
		if st := api.StoppedBy(a.fsm.Failure()); st != nil {
			a.stopServing(st)
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-changed:
		}
	}
}

// stopServing takes this director out of raft for good (until it is
// restarted on a repaired data dir). The API stays up so that /readyz,
// /v1/status and the log say why and what to do.
func (a *Agent) stopServing(st *wire.Stopped) {
	a.stopMu.Lock()
	first := a.stoppedBy == nil
	if first {
		a.stoppedBy = st
	}
	a.stopMu.Unlock()
	if !first {
		return
	}
	a.log.Error("this director stops serving and leaves raft (never leader, not ready); its API stays up",
		"reason", st.Reason, "index", st.Index, "recovery", st.Recovery)
	go func() { // not from a loop raft's shutdown may wait for
		if err := a.node.Shutdown(); err != nil {
			a.log.Warn("raft shutdown after stopping", "err", err)
		}
	}()
}

// stoppedReason is why this director stopped serving, nil while it serves.
func (a *Agent) stoppedReason() *wire.Stopped {
	a.stopMu.Lock()
	defer a.stopMu.Unlock()
	if a.stoppedBy != nil {
		return a.stoppedBy
	}
	return api.StoppedBy(a.fsm.Failure())
}

// keepIdentity names the cluster once (the leader, when the replicated
// state has no id yet) and keeps the data dir's identity file up to date.
func (a *Agent) keepIdentity() {
	id := a.fsm.ClusterID()
	if id == "" && a.node.IsLeader() {
		if err := a.applyInternal(&fsm.InitCluster{ID: newClusterID()}, 2*time.Second); err != nil {
			a.log.Debug("naming the cluster failed; retrying", "err", err)
		}
		id = a.fsm.ClusterID()
	}
	err := a.node.RecordIdentity(id)
	switch {
	case errors.Is(err, cluster.ErrClusterMismatch):
		a.stopServing(&wire.Stopped{Reason: err.Error(), Recovery: "start it with the data dir of that cluster, or " + cluster.RecoveryHint})
	case err != nil:
		a.log.Warn("cannot record the data dir's identity", "err", err)
	}
}

func newClusterID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func (a *Agent) goRun(ctx context.Context, f func(context.Context)) {
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		f(ctx)
	}()
}

// bootstrap decides, exactly once in the life of a data dir, how this
// director becomes part of a cluster.
func (a *Agent) bootstrap(ctx context.Context) error {
	c := a.cfg
	self := cluster.Server{ID: c.NodeID, Address: a.node.Addr()}
	switch {
	case a.node.HasExistingState():
		a.log.Info("raft state found in the data dir: not bootstrapping or joining again")
	case c.BootstrapExpect == 1 && len(c.Join) == 0:
		servers := c.Peers
		if len(servers) == 0 {
			servers = []cluster.Server{self}
		}
		if err := a.node.Bootstrap(servers); err != nil {
			return fmt.Errorf("bootstrap: %w", err)
		}
	case len(c.Peers) > 0:
		err := a.node.Bootstrap(c.Peers)
		switch {
		case errors.Is(err, cluster.ErrAlreadyBootstrapped):
			// Raft was already running: another director's identical
			// bootstrap reached us first and replicated the configuration.
			a.log.Info("already in the cluster another director bootstrapped with the same -peers")
		case err != nil:
			return fmt.Errorf("bootstrap with -peers: %w", err)
		default:
			a.log.Info("bootstrapped", "voters", len(c.Peers))
		}
	case c.BootstrapExpect > 1:
		a.goRun(ctx, a.discoverAndBootstrap)
	case len(c.Join) > 0:
		a.goRun(ctx, a.joinLoop)
	default:
		a.log.Warn("no -bootstrap-expect, -peers or -join: waiting for an existing cluster to add this director (raftlb cluster join)",
			"id", c.NodeID, "raft_addr", a.node.Addr())
	}
	return nil
}

func (a *Agent) joinClient(addr string) (*client.Client, error) {
	return a.apiClient(addr, 5*time.Second)
}

// apiClient is a client of a director's API (this one's, or another's to
// join), verifying it as forwarding does.
func (a *Agent) apiClient(addr string, timeout time.Duration) (*client.Client, error) {
	return client.New(client.Options{Addr: addr, Token: a.cfg.Token, TLS: a.cfg.APIClientTLS, CAFile: a.cfg.APICAFile,
		Timeout: timeout, Insecure: a.cfg.Insecure})
}

func (a *Agent) joinRequest() wire.JoinRequest {
	return wire.JoinRequest{ID: a.cfg.NodeID, Address: a.node.Addr(), APIAddr: a.cfg.APIAdvertise, APIScheme: a.scheme}
}

// sleep waits d or until ctx ends; it reports whether to go on.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// backoff doubles d up to max.
func backoff(d, max time.Duration) time.Duration {
	if d *= 2; d > max {
		return max
	}
	return d
}

// tryJoin asks each -join address in turn to add this director.
func (a *Agent) tryJoin(ctx context.Context) error {
	var errs []error
	for _, addr := range a.cfg.Join {
		cl, err := a.joinClient(addr)
		if err != nil {
			return err
		}
		if _, err := cl.Join(ctx, a.joinRequest()); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", addr, err))
			continue
		}
		a.log.Info("joined the cluster", "via", addr)
		return nil
	}
	return errors.Join(errs...)
}

func (a *Agent) joinLoop(ctx context.Context) {
	wait := 200 * time.Millisecond
	for {
		err := a.tryJoin(ctx)
		if err == nil {
			return
		}
		a.log.Warn("cannot join yet; retrying", "err", err, "in", wait)
		if !sleep(ctx, wait) {
			return
		}
		wait = backoff(wait, 5*time.Second)
	}
}

// discoverAndBootstrap implements -bootstrap-expect N with -join: it polls
// the -join addresses until it sees N distinct directors, none of which is in
// a cluster yet, and then bootstraps with exactly those N. Every director
// given the same list computes the same set, and bootstrapping identical
// configurations on all of them is safe. If it finds an existing cluster it
// joins it instead.
func (a *Agent) discoverAndBootstrap(ctx context.Context) {
	want := a.cfg.BootstrapExpect
	wait := 200 * time.Millisecond
	for {
		seen := map[string]string{a.cfg.NodeID: a.node.Addr()}
		existing := ""
		for _, addr := range a.cfg.Join {
			cl, err := a.joinClient(addr)
			if err != nil {
				a.log.Error("bad -join address", "addr", addr, "err", err)
				return
			}
			st, err := cl.Status(ctx)
			if err != nil {
				continue
			}
			seen[st.NodeID] = st.RaftAddr
			if st.LeaderID != "" {
				existing = addr
			}
		}
		if _, id := a.node.Leader(); id != "" {
			return // someone else's bootstrap included us
		}
		switch {
		case existing != "":
			a.log.Info("found an existing cluster: joining it instead of bootstrapping", "via", existing)
			a.joinLoop(ctx)
			return
		case len(seen) == want:
			var servers []cluster.Server
			for id, addr := range seen {
				servers = append(servers, cluster.Server{ID: id, Address: addr})
			}
			err := a.node.Bootstrap(servers)
			if err != nil && !errors.Is(err, cluster.ErrAlreadyBootstrapped) {
				a.log.Error("bootstrap failed", "err", err)
				return
			}
			a.log.Info("bootstrapped", "voters", len(servers))
			return
		case len(seen) > want:
			a.log.Error("found more directors than -bootstrap-expect; not bootstrapping", "expect", want, "seen", len(seen))
		default:
			a.log.Info("waiting for directors before bootstrapping", "expect", want, "seen", len(seen))
		}
		if !sleep(ctx, wait) {
			return
		}
		wait = backoff(wait, 2*time.Second)
	}
}

// wantNode is this director's metadata as it should be registered.
func (a *Agent) wantNode() model.Node {
	n := model.Node{ID: a.cfg.NodeID, RaftAddr: a.node.Addr(), APIAddr: a.cfg.APIAdvertise, APIScheme: a.scheme,
		Dataplane: a.dpKind, Caps: a.caps,
		Priority: a.cfg.Priority, NoPreempt: a.cfg.NoPreempt, Witness: a.cfg.Witness, Fault: a.currentFault(),
		GossipAddr: a.gossipAdvertised(), LogChecksums: true, HealthWeights: a.mayDeclareWeights()}
	if a.cfg.PreemptDelay > 0 {
		n.PreemptDelay = a.cfg.PreemptDelay.String()
	}
	return n
}

// registerLoop keeps this director's API address in the replicated state,
// so that followers can forward writes to it when it leads. It writes only
// when the registered value differs, through its own API (which forwards to
// the leader).
func (a *Agent) registerLoop(ctx context.Context) {
	leaderCh := a.node.LeaderChanges()
	wait := 100 * time.Millisecond
	tick := time.NewTicker(time.Second) // followers learn of a new leader only by polling
	defer tick.Stop()
	for {
		changed := a.fsm.Changed()
		a.keepIdentity()
		want := a.wantNode()
		if have, ok := a.fsm.Node(want.ID); !ok || !have.Equal(want) {
			if _, leader := a.node.Leader(); leader != "" {
				if err := a.register(ctx, want); err != nil {
					a.log.Debug("registering API address failed; retrying", "err", err)
					if !sleep(ctx, wait) {
						return
					}
					wait = backoff(wait, 5*time.Second)
					continue
				}
				wait = 100 * time.Millisecond
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-changed:
		case <-leaderCh:
		case <-tick.C:
		case <-a.faults.Changed():
		}
	}
}

func (a *Agent) register(ctx context.Context, n model.Node) error {
	if a.node.IsLeader() {
		return a.applyInternal(&fsm.RegisterNode{Node: n}, 5*time.Second)
	}
	_, err := a.self.RegisterNode(ctx, n)
	return err
}

// profileFile records, in the data dir, the replicated timing profile last
// seen, so that a restart starts with it.
const profileFile = "timing-profile"

// startProfile is the raft timing profile to start with: -timing if given,
// else the replicated one recorded at the last run, else lan.
func (a *Agent) startProfile() string {
	if a.cfg.Profile != "" {
		return a.cfg.Profile
	}
	if b, err := os.ReadFile(filepath.Join(a.cfg.DataDir, profileFile)); err == nil {
		name := strings.TrimSpace(string(b))
		if _, err := cluster.ProfileByName(name); err == nil {
			a.log.Info("starting with the replicated timing profile recorded at the last run", "profile", name)
			return name
		}
	}
	return model.DefaultProfile
}

// profileLoop follows the replicated timing profile. Raft can lengthen its
// timeouts live but cannot shorten the leader lease, so a move to a faster
// profile is recorded and takes effect at this director's next restart.
func (a *Agent) profileLoop(ctx context.Context) {
	current := a.node.Status().Profile
	for {
		changed := a.fsm.Changed()
		if want := a.fsm.Settings().TimingProfile; a.fsm.Settings().ModifyIndex != 0 && want != current {
			if err := os.WriteFile(filepath.Join(a.cfg.DataDir, profileFile), []byte(want+"\n"), 0o600); err != nil {
				a.log.Error("cannot record the timing profile", "err", err)
			}
			p, err := cluster.ProfileByName(want)
			if err == nil {
				err = a.node.SetProfile(p)
			}
			if err != nil {
				a.log.Warn("the replicated timing profile takes effect when this director restarts", "profile", want, "running", current, "reason", err)
			} else {
				a.log.Info("timing profile changed", "from", current, "to", want)
			}
			current = want
		}
		select {
		case <-ctx.Done():
			return
		case <-changed:
		}
	}
}

// APIURL is this director's API base URL as it listens.
// A listener on every address is reached on loopback, which its
// certificate names.
func (a *Agent) APIURL() string {
	addr := a.ln.Addr().String()
	if h, p, err := net.SplitHostPort(addr); err == nil {
		if ip, err := netip.ParseAddr(h); err == nil && ip.IsUnspecified() {
			addr = net.JoinHostPort("127.0.0.1", p)
		}
	}
	return a.scheme + "://" + addr
}

// FSM returns the replicated state machine.
func (a *Agent) FSM() *fsm.FSM { return a.fsm }

// Node returns the raft node.
func (a *Agent) Node() *cluster.Node { return a.node }

// ID returns the node id.
func (a *Agent) ID() string { return a.cfg.NodeID }

// WaitReady blocks until a leader is known and this director has registered
// its API address (so writes sent here can be forwarded or applied).
func (a *Agent) WaitReady(ctx context.Context) error {
	for {
		changed := a.fsm.Changed()
		_, leader := a.node.Leader()
		_, registered := a.fsm.Node(a.cfg.NodeID)
		if _, leaderRegistered := a.fsm.Node(leader); leader != "" && registered && leaderRegistered {
			return nil
		}
		t := time.NewTimer(50 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%s not ready: %w", a.cfg.NodeID, ctx.Err())
		case <-changed:
		case <-t.C:
		}
		t.Stop()
	}
}

// leave removes this director from the raft configuration, handing over
// leadership first if it leads.
func (a *Agent) leave(ctx context.Context) error {
	if a.node.IsLeader() {
		if err := a.node.TransferLeadership(""); err != nil {
			return fmt.Errorf("leave: transfer leadership: %w", err)
		}
	}
	for {
		_, err := a.self.Remove(ctx, a.cfg.NodeID)
		if err == nil || client.IsCode(err, model.CodeNotFound) {
			return nil
		}
		if !client.IsCode(err, wire.CodeNoLeader) || !sleep(ctx, 100*time.Millisecond) {
			return fmt.Errorf("leave: %w", err)
		}
	}
}

// Shutdown stops the director gracefully: it leaves the cluster if
// configured to, hands leadership over if it leads, stops the API and raft.
// Idempotent.
func (a *Agent) Shutdown(ctx context.Context) error {
	a.stopped.Do(func() {
		// A leader hands over first, while everything still runs: the
		// VIPs are released, the release committed, leadership moved.
		if a.node != nil && a.node.IsLeader() {
			if err := a.handover(ctx, a.bestSuccessor(ctx), "shutting down"); err != nil {
				a.log.Warn("planned handover failed; the next leader waits for the lease to run out", "err", err)
			}
		}
		if a.cancel != nil {
			a.cancel()
		}
		if a.cfg.LeaveOnShutdown && a.node != nil {
			if err := a.leave(ctx); err != nil {
				a.log.Error("could not leave the cluster cleanly", "err", err)
			} else {
				a.log.Info("left the cluster")
			}
		}
		a.wg.Wait()
		a.stopVIPs(true)
		if a.http != nil {
			_ = a.http.Shutdown(ctx)
		}
		a.stopErr = a.closeContext(ctx)
	})
	return a.stopErr
}

// close releases everything without the graceful steps.
func (a *Agent) close() error { return a.closeContext(context.Background()) }

// closeContext is close with the raft shutdown bounded by ctx.
func (a *Agent) closeContext(ctx context.Context) error {
	if a.cancel != nil {
		a.cancel()
	}
	a.wg.Wait()
	a.stopVIPs(false)
	a.stopHealth()
	var errs []error
	if a.http != nil {
		_ = a.http.Close()
	} else if a.ln != nil {
		_ = a.ln.Close()
	}
	if a.node != nil {
		if err := a.node.ShutdownContext(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	if a.backend != nil {
		// Closing keeps what was programmed: a restarting director
		// keeps forwarding.
		if err := a.backend.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	if a.tmpDir != "" {
		if err := os.RemoveAll(a.tmpDir); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// ParsePeers parses "id=host:port,id2=host:port".
func ParsePeers(s string) ([]cluster.Server, error) {
	if s == "" {
		return nil, nil
	}
	var out []cluster.Server
	for _, item := range SplitList(s) {
		id, addr, ok := strings.Cut(item, "=")
		if !ok || !model.ValidName(id) {
			return nil, fmt.Errorf("-peers: %q is not id=host:port", item)
		}
		if _, p, err := net.SplitHostPort(addr); err != nil || p == "" {
			return nil, fmt.Errorf("-peers: %q: %q is not host:port", item, addr)
		} else if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return nil, fmt.Errorf("-peers: %q: bad port", item)
		}
		out = append(out, cluster.Server{ID: id, Address: addr})
	}
	return out, nil
}

// SplitList splits a comma-separated flag value, dropping empty items.
func SplitList(s string) []string {
	var out []string
	for _, item := range strings.Split(s, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}
