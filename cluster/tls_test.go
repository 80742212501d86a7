package cluster

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/raftlb/raftlb/internal/testpki"
)

// testCA wraps testpki.CA with a LoadTLS shortcut.
type testCA struct{ *testpki.CA }

func newTestCA(t *testing.T, name string) *testCA { return &testCA{testpki.NewCA(t, name)} }

func (ca *testCA) issue(t *testing.T, dir, name string) (certFile, keyFile, caFile string) {
	return ca.Issue(t, dir, name)
}

func (ca *testCA) tlsConfig(t *testing.T, name string) *tls.Config {
	t.Helper()
	c, err := LoadTLS(ca.issue(t, t.TempDir(), name))
	if err != nil {
		t.Fatalf("LoadTLS: %v", err)
	}
	return c
}

func TestLoadTLSErrors(t *testing.T) {
	ca := newTestCA(t, "ca")
	dir := t.TempDir()
	certFile, keyFile, caFile := ca.issue(t, dir, "n1")
	otherCert, _, _ := ca.issue(t, dir, "n2")
	missing := filepath.Join(dir, "missing.pem")
	garbage := filepath.Join(dir, "garbage.pem")
	if err := os.WriteFile(garbage, []byte("not pem"), 0o600); err != nil {
		t.Fatal(err)
	}

	c, err := LoadTLS(certFile, keyFile, caFile)
	if err != nil {
		t.Fatalf("LoadTLS: %v", err)
	}
	if len(c.Certificates) != 1 || c.RootCAs == nil || c.ClientCAs == nil || c.ClientAuth != tls.RequireAndVerifyClientCert {
		t.Errorf("LoadTLS config incomplete: %+v", c)
	}
	for _, tc := range []struct {
		name                string
		cert, key, ca, want string
	}{
		{"missing cert", missing, keyFile, caFile, missing},
		{"missing key", certFile, missing, caFile, missing},
		{"missing ca", certFile, keyFile, missing, missing},
		{"garbage ca", certFile, keyFile, garbage, garbage},
		{"garbage cert", garbage, keyFile, caFile, garbage},
		{"mismatched key", otherCert, keyFile, caFile, otherCert},
	} {
		if _, err := LoadTLS(tc.cert, tc.key, tc.ca); !errContains(err, tc.want) {
			t.Errorf("%s: error %v does not name %s", tc.name, err, tc.want)
		}
	}
}

func TestTLSCluster(t *testing.T) {
	ca := newTestCA(t, "raftlb-ca")
	nodes := startCluster(t, 3, func(c *Config) { c.TLS = ca.tlsConfig(t, c.NodeID) })
	want := applyN(t, nodes, "tls", 10)
	waitConverged(t, nodes, want)
	leader := waitLeader(t, nodes)

	// A node whose certificate comes from another CA (and which trusts only
	// that CA) is added to the configuration but can never communicate.
	rogueCA := newTestCA(t, "rogue-ca")
	rogue := startNode(t, "rogue", func(c *Config) { c.TLS = rogueCA.tlsConfig(t, c.NodeID) })

	// Transport level, both directions: the handshake fails at Dial.
	if c, err := rogue.streamFor(t).Dial(raft.ServerAddress(leader.Addr()), 2*time.Second); !errContains(err, "certificate") {
		if c != nil {
			c.Close()
		}
		t.Errorf("rogue -> leader Dial error = %v; want a certificate error", err)
	}
	if c, err := leader.streamFor(t).Dial(raft.ServerAddress(rogue.Addr()), 2*time.Second); !errContains(err, "certificate") {
		if c != nil {
			c.Close()
		}
		t.Errorf("leader -> rogue Dial error = %v; want a certificate error", err)
	}
	// Positive control: members' stream layers handshake with each other.
	peer := followers(nodes, leader)[0]
	c, err := leader.streamFor(t).Dial(raft.ServerAddress(peer.Addr()), 2*time.Second)
	if err != nil {
		t.Fatalf("member -> member Dial: %v", err)
	}
	c.Close()

	// Raft level: it never receives a single entry although it is a voter
	// (the three good voters still form a quorum of four).
	if err := leader.AddVoter(rogue.ID(), rogue.Addr()); err != nil {
		t.Fatalf("AddVoter(rogue): %v", err)
	}
	more := applyN(t, nodes, "after-rogue", 5)
	waitConverged(t, nodes, append(want, more...))
	consistently(t, "rogue node must receive nothing", time.Second, func() error {
		if got := rogue.fsm.list(); len(got) != 0 {
			return fmt.Errorf("rogue FSM has %d entries", len(got))
		}
		if li := rogue.Status().LastIndex; li != 0 {
			return fmt.Errorf("rogue log has index %d", li)
		}
		if _, id := rogue.Leader(); id != "" {
			return fmt.Errorf("rogue knows leader %q", id)
		}
		return nil
	})
}

// A client holding a certificate from another CA is rejected by the server
// even when it trusts the server (the server verifies client certificates).
func TestTLSRejectsForeignClientCert(t *testing.T) {
	ca := newTestCA(t, "ca")
	server := startNode(t, "srv", func(c *Config) { c.TLS = ca.tlsConfig(t, c.NodeID) })

	foreign := newTestCA(t, "foreign").tlsConfig(t, "intruder")
	foreign.RootCAs = ca.tlsConfig(t, "unused").RootCAs // trusts the real CA
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sl := newStreamLayer(ln, ln.Addr(), foreign, nil)
	defer sl.Close()

	// Positive control: a client with a certificate from the right CA works.
	goodLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	good := newStreamLayer(goodLn, goodLn.Addr(), ca.tlsConfig(t, "friend"), nil)
	defer good.Close()
	gc, err := good.Dial(raft.ServerAddress(server.Addr()), 2*time.Second)
	if err != nil {
		t.Fatalf("client with a valid certificate: %v", err)
	}
	gc.Close()

	conn, err := sl.Dial(raft.ServerAddress(server.Addr()), 2*time.Second)
	if err != nil {
		return // rejected during the handshake: fine (TLS 1.2 behaviour)
	}
	defer conn.Close()
	// With TLS 1.3 the client finishes its handshake first; the server's
	// rejection arrives as an alert on the first read.
	_ = conn.SetDeadline(time.Now().Add(waitTimeout))
	_, _ = conn.Write([]byte{0})
	if _, err := conn.Read(make([]byte, 1)); err == nil {
		t.Fatal("server accepted a client certificate from a foreign CA")
	} else if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("server neither accepted nor rejected the client: %v", err)
	}

	// Without TLS at all the server also refuses to talk raft.
	plain, err := net.DialTimeout("tcp", server.Addr(), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	_ = plain.SetDeadline(time.Now().Add(waitTimeout))
	_, _ = plain.Write([]byte("\x00plain raft rpc"))
	// The server may send a TLS alert; what matters is that it hangs up.
	if _, err := io.ReadAll(plain); errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("server did not close a plaintext connection: %v", err)
	}
}

// streamFor returns the node's stream layer (test access to internals).
func (n *testNode) streamFor(t *testing.T) *streamLayer {
	t.Helper()
	return n.stream
}
