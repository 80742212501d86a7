package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/raftlb/raftlb/agent"
	"github.com/raftlb/raftlb/api"
	"github.com/raftlb/raftlb/cluster"
	"github.com/raftlb/raftlb/trust"
)

const agentUsage = `usage: raftlb agent [flags]

Runs a director. A new cluster is bootstrapped exactly once, when a data dir
has no raft state:
  raftlb agent -dev                              one-node cluster, temporary data, API on 127.0.0.1:7480
  raftlb agent -peers d1=10.0.0.1:7481,d2=...    every director gets the same list
  raftlb agent -bootstrap-expect 3 -join A,B,C   discover the others through their APIs
  raftlb agent -join A                           join an existing cluster through any director's API
A restarted director finds its state in -data-dir and neither bootstraps nor
joins again.

flags:
`

type agentFlags struct {
	cfg                       agent.Config
	peers, join, tokenFile    string
	raftCert, raftKey, raftCA string
	apiCert, apiKey, apiCA    string
	logLevel, logFormat       string
	gossipKeyFile             string
	shutdownTimeout           time.Duration
	garpBurst                 int
	garpInterval, garpRefresh time.Duration
}

func (f *agentFlags) register(fs *flag.FlagSet) {
	c := &f.cfg
	fs.BoolVar(&c.Dev, "dev", false, "one-node cluster with a temporary data dir, fast timing, API on "+agent.DevAPIAddr+", no token for local writes")
	fs.StringVar(&c.NodeID, "node-id", "", "this director's unique, stable id (default: host name)")
	fs.StringVar(&c.DataDir, "data-dir", "", "raft log, stable store and snapshots (required unless -dev)")
	fs.StringVar(&c.RaftAddr, "raft-addr", "", "host:port for raft traffic between directors (required unless -dev)")
	fs.StringVar(&c.RaftAdvertise, "raft-advertise", "", "host:port the other directors dial (default: -raft-addr)")
	fs.StringVar(&c.APIAddr, "api-addr", agent.DevAPIAddr, "host:port for the admin API; beyond loopback every request needs the token")
	fs.StringVar(&c.APIAdvertise, "api-advertise", "", "host:port other directors use to reach this API (default: -api-addr)")
	fs.StringVar(&f.tokenFile, "token-file", "", "file holding the token shared by all directors (required unless -dev; chmod 600; 'raftlb token new' makes one). It authenticates the API and derives the cluster CA and the gossip key. More lines: older tokens still accepted, for rotation")
	fs.BoolVar(&c.Insecure, "insecure", false, "let raft and the API listen beyond loopback without TLS (default: raft mutual TLS and HTTPS with certificates from the cluster CA). Logged at every start; shown by raftlb status")
	fs.Func("tls-san", "an extra host name or address for this director's certificate (repeatable, or comma-separated)", func(v string) error {
		c.TLSNames = append(c.TLSNames, agent.SplitList(v)...)
		return nil
	})
	fs.IntVar(&c.BootstrapExpect, "bootstrap-expect", 0, "number of directors that bootstrap a new cluster together")
	fs.StringVar(&f.peers, "peers", "", "static bootstrap list id=host:port,... (raft addresses, this director included)")
	fs.StringVar(&f.join, "join", "", "API addresses (host:port or URL) of directors to discover or join, comma-separated")
	fs.StringVar(&c.Profile, "timing", "", "raft timing profile until the replicated setting says otherwise: "+strings.Join(cluster.ProfileNames(), ", ")+" (default lan; fast with -dev)")
	fs.StringVar(&c.Dataplane, "dataplane", "", "auto (IPVS when the kernel has it, else nftables), ipvs, nft or none (default auto; none with -dev)")
	fs.BoolVar(&c.DataplanePrune, "dataplane-prune", false, "delete kernel services raftlb did not create (default: report them, leave them)")
	fs.DurationVar(&c.Resync, "resync", 0, "period of the full pass that re-reads the kernel and repairs drift (default 30s)")
	fs.IntVar(&f.garpBurst, "garp-burst", 5, "gratuitous ARPs / unsolicited NAs sent per VIP when this director takes it (0: none)")
	fs.DurationVar(&f.garpInterval, "garp-interval", 100*time.Millisecond, "time between the announcements of a burst")
	fs.DurationVar(&f.garpRefresh, "garp-refresh", 10*time.Second, "re-announce every held VIP this often, before switches age their MAC tables (0: never)")
	fs.BoolVar(&c.LeaveOnShutdown, "leave-on-shutdown", false, "leave the raft configuration on SIGTERM/SIGINT (default: stay a member, so a restart rejoins by itself)")
	fs.StringVar(&f.raftCert, "raft-tls-cert", "", "PEM certificate for mutual TLS between directors")
	fs.StringVar(&f.raftKey, "raft-tls-key", "", "PEM key for -raft-tls-cert")
	fs.StringVar(&f.raftCA, "raft-tls-ca", "", "PEM CA that signs every director's raft certificate")
	fs.StringVar(&f.apiCert, "api-tls-cert", "", "PEM certificate to serve the API over HTTPS")
	fs.StringVar(&f.apiKey, "api-tls-key", "", "PEM key for -api-tls-cert")
	fs.StringVar(&f.apiCA, "api-tls-ca", "", "PEM CA to verify other directors' HTTPS APIs (forwarding, join)")
	fs.StringVar(&f.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&f.logFormat, "log-format", "text", "text or json")
	fs.DurationVar(&f.shutdownTimeout, "shutdown-timeout", 10*time.Second, "bound on the graceful shutdown (handover, leave, raft): past it the agent logs what was stuck and exits 1")
	// Who should lead (docs/operations.md "Priorities, witness, tracked checks").
	fs.IntVar(&c.Priority, "priority", 0, "1-255 (default 100): leadership, and so the VIPs, moves to the highest-priority healthy director")
	fs.DurationVar(&c.PreemptDelay, "preempt-delay", 0, "how long this director must be ready before it takes leadership from a lower-priority leader")
	fs.BoolVar(&c.NoPreempt, "nopreempt", false, "never take leadership from a healthy leader because of a higher priority")
	fs.BoolVar(&c.Witness, "witness", false, "a raft voter with no dataplane that never holds VIPs (two directors + a witness survive one failure)")
	fs.Func("track-interface", "an interface that must be up for this director to hold VIPs or lead (repeatable, or comma-separated)", func(v string) error {
		c.TrackInterfaces = append(c.TrackInterfaces, agent.SplitList(v)...)
		return nil
	})
	fs.Func("track-script", `a program and its arguments, split on spaces without shell quoting ("/usr/local/bin/check eth1"), that must exit 0 for this director to hold VIPs or lead (repeatable)`, func(v string) error {
		c.TrackScripts = append(c.TrackScripts, v)
		return nil
	})
	fs.DurationVar(&c.TrackInterval, "track-interval", 0, "how often tracked scripts run, also their timeout (default 1s)")
	// Health checking and gossip (docs/operations.md "Health checks").
	fs.StringVar(&c.GossipAddr, "gossip-addr", "", "host:port (UDP and TCP) for the encrypted gossip of health-check results (default: the -raft-addr host, port 7482)")
	fs.StringVar(&c.GossipAdvertise, "gossip-advertise", "", "host:port the other directors reach this director's gossip at (default: the -raft-advertise host, or -gossip-addr)")
	fs.StringVar(&f.gossipKeyFile, "gossip-key-file", "", "file holding the gossip encryption key: base64 of 16, 24 or 32 bytes, the same on every director, chmod 600 (default: derived from the token)")
	fs.IntVar(&c.HealthWorkers, "health-workers", 0, "health checks run at once on this director (default 64)")
	fs.Int64Var(&c.APIMaxBody, "api-max-body", api.DefaultMaxBody, "largest API request body in bytes (larger: 413)")
	fs.IntVar(&c.APIMaxReals, "api-max-reals", api.DefaultMaxReals, "most real servers in one API request (more: 400 on reals)")
	fs.IntVar(&c.APIMaxEntry, "api-max-entry", api.DefaultMaxEntry, "largest raft log entry one write may become, in bytes (larger: 413); huge entries delay heartbeats")
}

// build turns the flags into an agent.Config, reading the files they name.
func (f *agentFlags) build(stderr io.Writer) (agent.Config, error) {
	c := f.cfg
	var level slog.Level
	if err := level.UnmarshalText([]byte(f.logLevel)); err != nil {
		return c, fmt.Errorf("-log-level: %q is not debug, info, warn or error", f.logLevel)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch f.logFormat {
	case "text":
		c.Log = slog.New(slog.NewTextHandler(stderr, opts))
	case "json":
		c.Log = slog.New(slog.NewJSONHandler(stderr, opts))
	default:
		return c, fmt.Errorf("-log-format: %q is not text or json", f.logFormat)
	}
	var err error
	if c.Peers, err = agent.ParsePeers(f.peers); err != nil {
		return c, err
	}
	c.Join = agent.SplitList(f.join)
	if f.tokenFile != "" {
		toks, err := trust.ReadTokenFile(f.tokenFile)
		if err != nil {
			return c, fmt.Errorf("-token-file: %w", err)
		}
		c.Token, c.ExtraTokens = toks[0], toks[1:]
	}
	if f.gossipKeyFile != "" {
		b, err := trust.ReadSecretFile(f.gossipKeyFile)
		if err == nil {
			c.GossipKey, err = agent.ParseGossipKey(string(b))
		}
		if err != nil {
			return c, fmt.Errorf("-gossip-key-file: %w", err)
		}
	}
	if f.raftCert != "" || f.raftKey != "" || f.raftCA != "" {
		if c.RaftTLS, err = cluster.LoadTLS(f.raftCert, f.raftKey, f.raftCA); err != nil {
			return c, fmt.Errorf("-raft-tls-*: %w", err)
		}
	}
	if (f.apiCert == "") != (f.apiKey == "") {
		return c, errors.New("-api-tls-cert and -api-tls-key go together")
	}
	if f.apiCert != "" {
		cert, err := tls.LoadX509KeyPair(f.apiCert, f.apiKey)
		if err != nil {
			return c, fmt.Errorf("-api-tls-cert/-api-tls-key: %w", err)
		}
		c.APITLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	if f.apiCA != "" {
		pem, err := os.ReadFile(f.apiCA)
		if err != nil {
			return c, fmt.Errorf("-api-tls-ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return c, fmt.Errorf("-api-tls-ca %s: no PEM certificates", f.apiCA)
		}
		c.APIClientTLS = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
		c.APICAFile = f.apiCA
	}
	// Flags say 0 for "none"; agent.Config says negative (0 is "default").
	neg := func(d time.Duration) time.Duration {
		if d == 0 {
			return -1
		}
		return d
	}
	if f.garpBurst < 0 || f.garpInterval < 0 || f.garpRefresh < 0 {
		return c, errors.New("-garp-burst, -garp-interval and -garp-refresh cannot be negative")
	}
	if f.shutdownTimeout <= 0 {
		return c, errors.New("-shutdown-timeout must be positive")
	}
	c.GARPBurst, c.GARPInterval, c.GARPRefresh = f.garpBurst, neg(f.garpInterval), neg(f.garpRefresh)
	if f.garpBurst == 0 {
		c.GARPBurst = -1
	}
	c.Version = Version
	return c, nil
}

func runAgent(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("raftlb agent", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, agentUsage)
		fs.PrintDefaults()
	}
	var f agentFlags
	f.register(fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "raftlb agent: unexpected argument %q (flags only; see raftlb agent -h)\n", fs.Arg(0))
		return 2
	}
	cfg, err := f.build(stderr)
	if err == nil {
		err = cfg.Validate()
	}
	if err != nil {
		fmt.Fprintf(stderr, "raftlb agent: %v\n", err)
		return 2
	}
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)

	a, err := agent.Start(context.Background(), cfg)
	if err != nil {
		fmt.Fprintf(stderr, "raftlb agent: %v\n", err)
		return 1
	}
	if cfg.Dev {
		fmt.Fprintf(stdout, "raftlb dev director: API %s (no token needed for local writes); data is discarded on exit\n", a.APIURL())
	}
	sig := <-sigs
	cfg.Log.Info("shutting down", "signal", sig.String(), "timeout", f.shutdownTimeout)
	return awaitShutdown(a.Shutdown, sigs, gracefulShare(f.shutdownTimeout), f.shutdownTimeout, cfg.Log, cfg.DataDir)
}
