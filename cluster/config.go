package cluster

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unicode"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// LogLevelEnv is the environment variable consulted for the log level of the
// default Raft logger (used when Config.Logger is nil), e.g. "debug", "info",
// "warn", "error". Unset or invalid values mean "warn".
const LogLevelEnv = "RAFTLB_RAFT_LOG_LEVEL"

// Config describes one director's Raft node. The zero value is not usable:
// NodeID, DataDir and BindAddr are required. New does not retain or modify
// the Config (TLS is cloned).
type Config struct {
	// NodeID is this node's Raft server ID. Required; it must be unique in
	// the cluster and stable across restarts (it is stored in the log).
	NodeID string

	// DataDir holds raft.db (a raft-boltdb/v2 BoltStore used as both log
	// store and stable store) and snapshots/. Required; created with mode
	// 0700 if missing. Only one Node may use a DataDir at a time.
	DataDir string

	// BindAddr is the host:port the Raft TCP listener binds to. Port 0 picks
	// a free port; Node.Addr then reports the real one.
	BindAddr string

	// AdvertiseAddr is the host:port peers use to reach this node. Optional;
	// the default is the bound address, which is an error if BindAddr's host
	// is unspecified (0.0.0.0 or ::).
	AdvertiseAddr string

	// Profile selects Raft timings. The zero value means the "lan" profile.
	Profile Profile

	// TLS, if non-nil, enables mutual TLS for all Raft traffic. It must
	// contain Certificates, RootCAs and ClientCAs (see LoadTLS). Inbound
	// connections must present a client certificate that verifies against
	// ClientCAs; outbound connections present Certificates and verify the
	// peer against RootCAs.
	TLS *tls.Config

	// SnapshotThreshold is the number of new log entries after which Raft
	// snapshots the FSM. 0 means the hashicorp/raft default (8192).
	SnapshotThreshold uint64

	// SnapshotInterval is how often Raft checks whether to snapshot. 0 means
	// the hashicorp/raft default (120s).
	SnapshotInterval time.Duration

	// TrailingLogs is how many log entries are kept after a snapshot, so
	// that slightly lagging followers can catch up without a full snapshot.
	// 0 means the hashicorp/raft default (10240).
	TrailingLogs uint64

	// Logger receives Raft and transport logs. nil means an hclog logger
	// named "raft" writing to stderr at the level in $RAFTLB_RAFT_LOG_LEVEL
	// (default warn).
	Logger hclog.Logger

	// Transport, if set, carries raft's RPCs instead of TCP (BindAddr,
	// AdvertiseAddr and TLS are then unused; the node's address is the
	// transport's LocalAddr), and Store, if set, is the log and stable
	// store instead of DataDir/raft.db: tests run an in-memory raft
	// (raft.NewInmemTransport, raft.NewInmemStore) where TCP and bolt add
	// nothing but time. Snapshots and the identity file stay in DataDir.
	Transport raft.Transport
	Store     Store

	// dial, if set, makes the TCP connections to peers instead of a
	// net.Dialer (tests route them through links they can cut).
	dial func(ctx context.Context, address string) (net.Conn, error)
}

// Store is a raft log store and stable store in one, as raft-boltdb's
// BoltStore and raft.InmemStore are.
type Store interface {
	raft.LogStore
	raft.StableStore
}

// validate checks cfg and returns it with defaults applied.
func (cfg Config) validate() (Config, error) {
	if cfg.NodeID == "" {
		return cfg, fmt.Errorf("cluster: Config.NodeID is required")
	}
	if strings.IndexFunc(cfg.NodeID, func(r rune) bool { return unicode.IsSpace(r) || !unicode.IsPrint(r) }) >= 0 {
		return cfg, fmt.Errorf("cluster: Config.NodeID %q must not contain spaces or control characters", cfg.NodeID)
	}
	if cfg.DataDir == "" {
		return cfg, fmt.Errorf("cluster: Config.DataDir is required")
	}
	if cfg.BindAddr == "" && cfg.Transport == nil {
		return cfg, fmt.Errorf("cluster: Config.BindAddr is required")
	}
	if cfg.Transport == nil {
		if _, _, err := splitHostPort(cfg.BindAddr, true); err != nil {
			return cfg, fmt.Errorf("cluster: Config.BindAddr: %w", err)
		}
	}
	if cfg.AdvertiseAddr != "" {
		if err := checkAdvertise(cfg.AdvertiseAddr); err != nil {
			return cfg, fmt.Errorf("cluster: Config.AdvertiseAddr: %w", err)
		}
	}
	if cfg.Profile == (Profile{}) {
		cfg.Profile = profileLAN
	}
	if err := cfg.Profile.validate(); err != nil {
		return cfg, fmt.Errorf("cluster: Config.Profile: %w", err)
	}
	if cfg.TLS != nil {
		if err := checkTLS(cfg.TLS); err != nil {
			return cfg, err
		}
	}
	if cfg.SnapshotInterval != 0 && cfg.SnapshotInterval < 5*time.Millisecond {
		return cfg, fmt.Errorf("cluster: Config.SnapshotInterval %s must be >= 5ms (or 0 for the default)", cfg.SnapshotInterval)
	}
	if cfg.Logger == nil {
		level := hclog.LevelFromString(os.Getenv(LogLevelEnv))
		if level == hclog.NoLevel {
			level = hclog.Warn
		}
		cfg.Logger = hclog.New(&hclog.LoggerOptions{Name: "raft", Level: level, Output: os.Stderr})
	}
	return cfg, nil
}

// splitHostPort splits a host:port address and checks the port, which may
// be 0 only if allowPortZero. The host may be empty.
func splitHostPort(addr string, allowPortZero bool) (host string, port int, err error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	port, err = strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("invalid port %q in %q", p, addr)
	}
	if port == 0 && !allowPortZero {
		return "", 0, fmt.Errorf("port 0 in %q is not reachable", addr)
	}
	return host, port, nil
}

// checkAdvertise checks that addr is something peers can dial.
func checkAdvertise(addr string) error {
	host, _, err := splitHostPort(addr, false)
	if err != nil {
		return err
	}
	if host == "" {
		return fmt.Errorf("%q has no host", addr)
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		return fmt.Errorf("%q is not advertisable (unspecified address)", addr)
	}
	return nil
}

// InmemConfig is a Config for a node that keeps its log in memory and
// talks through raft's in-memory transport (a single node needs nothing
// more; connect several with their transports' Connect). Its address is a
// host:port under .invalid, unique in the process, that nothing resolves.
func InmemConfig(id, dataDir string, p Profile) Config {
	addr := fmt.Sprintf("%s-%d.inmem.invalid:7481", id, inmemSeq.Add(1))
	_, tr := raft.NewInmemTransport(raft.ServerAddress(addr))
	return Config{NodeID: id, DataDir: dataDir, Profile: p, Transport: tr, Store: raft.NewInmemStore()}
}

var inmemSeq atomic.Int64
