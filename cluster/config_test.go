package cluster

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"path/filepath"
	"testing"
	"time"
)

func TestConfigValidation(t *testing.T) {
	valid := func() Config {
		return Config{NodeID: "v1", DataDir: t.TempDir(), BindAddr: "127.0.0.1:0", Profile: profileFast, Logger: testLogger("v")}
	}
	cert := tls.Certificate{Certificate: [][]byte{{1}}}
	cases := []struct {
		name string
		mod  func(*Config)
		want []string // substrings of the error
	}{
		{"no NodeID", func(c *Config) { c.NodeID = "" }, []string{"NodeID", "required"}},
		{"NodeID with space", func(c *Config) { c.NodeID = "a b" }, []string{"NodeID"}},
		{"no DataDir", func(c *Config) { c.DataDir = "" }, []string{"DataDir", "required"}},
		{"no BindAddr", func(c *Config) { c.BindAddr = "" }, []string{"BindAddr", "required"}},
		{"BindAddr without port", func(c *Config) { c.BindAddr = "127.0.0.1" }, []string{"BindAddr"}},
		{"BindAddr bad port", func(c *Config) { c.BindAddr = "127.0.0.1:http" }, []string{"BindAddr", "port"}},
		{"AdvertiseAddr port 0", func(c *Config) { c.AdvertiseAddr = "10.0.0.1:0" }, []string{"AdvertiseAddr", "port 0"}},
		{"AdvertiseAddr unspecified", func(c *Config) { c.AdvertiseAddr = "0.0.0.0:7000" }, []string{"AdvertiseAddr", "not advertisable"}},
		{"AdvertiseAddr no host", func(c *Config) { c.AdvertiseAddr = ":7000" }, []string{"AdvertiseAddr", "no host"}},
		{"bind all without AdvertiseAddr", func(c *Config) { c.BindAddr = "0.0.0.0:0" }, []string{"AdvertiseAddr", "BindAddr"}},
		{"bind all v6 without AdvertiseAddr", func(c *Config) { c.BindAddr = "[::]:0" }, []string{"AdvertiseAddr"}},
		{"lease above heartbeat", func(c *Config) {
			c.Profile = Profile{Name: "odd", HeartbeatTimeout: 100 * time.Millisecond, ElectionTimeout: 100 * time.Millisecond,
				LeaderLeaseTimeout: 200 * time.Millisecond, CommitTimeout: time.Millisecond}
		}, []string{"Profile", "LeaderLeaseTimeout"}},
		{"lease equal to heartbeat", func(c *Config) {
			c.Profile = Profile{Name: "odd", HeartbeatTimeout: 100 * time.Millisecond, ElectionTimeout: 100 * time.Millisecond,
				LeaderLeaseTimeout: 100 * time.Millisecond, CommitTimeout: time.Millisecond}
		}, []string{"Profile", "LeaderLeaseTimeout", "below"}},
		{"election below heartbeat", func(c *Config) {
			c.Profile = Profile{Name: "odd", HeartbeatTimeout: 100 * time.Millisecond, ElectionTimeout: 50 * time.Millisecond,
				LeaderLeaseTimeout: 50 * time.Millisecond, CommitTimeout: time.Millisecond}
		}, []string{"Profile", "ElectionTimeout"}},
		{"SnapshotInterval tiny", func(c *Config) { c.SnapshotInterval = time.Millisecond }, []string{"SnapshotInterval"}},
		{"TLS without cert", func(c *Config) {
			c.TLS = &tls.Config{RootCAs: x509.NewCertPool(), ClientCAs: x509.NewCertPool()}
		}, []string{"TLS", "Certificates"}},
		{"TLS without RootCAs", func(c *Config) {
			c.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, ClientCAs: x509.NewCertPool()}
		}, []string{"TLS", "RootCAs"}},
		{"TLS without ClientCAs", func(c *Config) {
			c.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: x509.NewCertPool()}
		}, []string{"TLS", "ClientCAs"}},
		{"BindAddr in use", func(c *Config) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { ln.Close() })
			c.BindAddr = ln.Addr().String()
		}, []string{"BindAddr"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := valid()
			c.mod(&cfg)
			n, err := New(cfg, &listFSM{})
			if err == nil {
				n.Shutdown()
				t.Fatal("New succeeded")
			}
			if !errContains(err, c.want...) {
				t.Errorf("error %q does not mention %q", err, c.want)
			}
		})
	}
	if _, err := New(valid(), nil); !errContains(err, "fsm") {
		t.Errorf("nil FSM: %v", err)
	}
}

// A failed New must release what it opened: the listener and raft.db.
func TestNewCleansUpOnError(t *testing.T) {
	probe, err := net.Listen("tcp", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(probe.Addr().String())
	probe.Close()

	dir := t.TempDir()
	cfg := Config{NodeID: "c1", DataDir: dir, BindAddr: net.JoinHostPort("0.0.0.0", port), Profile: profileFast, Logger: testLogger("c1")}
	if _, err := New(cfg, &listFSM{}); !errContains(err, "AdvertiseAddr") {
		t.Fatalf("New = %v; want AdvertiseAddr error", err)
	}
	// Port released.
	ln, err := net.Listen("tcp", cfg.BindAddr)
	if err != nil {
		t.Fatalf("port still held after failed New: %v", err)
	}
	ln.Close()
	// raft.db released: the same DataDir opens at once.
	cfg.BindAddr = "127.0.0.1:0"
	n := startNodeWith(t, cfg)
	if n.HasExistingState() {
		t.Error("failed New left raft state behind")
	}

	// A second node on a DataDir in use fails (file lock) without hanging.
	cfg2 := cfg
	cfg2.NodeID = "c2"
	if _, err := New(cfg2, &listFSM{}); !errContains(err, filepath.Join(dir, "raft.db"), "locked") {
		t.Errorf("New on a DataDir in use = %v; want a lock error naming raft.db", err)
	}
}

func TestAdvertiseAddr(t *testing.T) {
	n := startNode(t, "adv", func(c *Config) { c.AdvertiseAddr = "director-1.example:7000" })
	if n.Addr() != "director-1.example:7000" {
		t.Errorf("Addr = %q", n.Addr())
	}
	m := startNode(t, "bound", nil)
	if host, port, err := net.SplitHostPort(m.Addr()); err != nil || host != "127.0.0.1" || port == "0" {
		t.Errorf("Addr with port 0 = %q; want the bound address", m.Addr())
	}
}
