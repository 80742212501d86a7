package cluster

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// LoadTLS builds a mutual-TLS configuration for Raft traffic from PEM files:
// certFile/keyFile are this director's certificate (chain) and private key,
// caFile holds the CA certificate(s) that every director's certificate must
// chain to. The CA pool is used both to verify servers we dial (RootCAs) and
// clients that dial us (ClientCAs), so only holders of a certificate issued by
// that CA can take part in the cluster. Each director certificate must be
// usable for both server and client authentication and carry the host part of
// the director's advertised address (IP or DNS SAN), unless the caller sets
// ServerName on the returned config, in which case every certificate must
// carry that name instead.
//
// Errors name the file that could not be used.
func LoadTLS(certFile, keyFile, caFile string) (*tls.Config, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, fmt.Errorf("cluster: read TLS certificate file %q: %w", certFile, err)
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("cluster: read TLS key file %q: %w", keyFile, err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("cluster: load TLS key pair (certificate %q, key %q): %w", certFile, keyFile, err)
	}
	caPEM, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("cluster: read TLS CA file %q: %w", caFile, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("cluster: TLS CA file %q contains no PEM certificates", caFile)
	}
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		RootCAs:      pool,
		ClientCAs:    pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		MinVersion:   tls.VersionTLS12,
	}, nil
}

// checkTLS verifies that c is complete enough for mutual TLS.
func checkTLS(c *tls.Config) error {
	switch {
	case len(c.Certificates) == 0 && (c.GetCertificate == nil || c.GetClientCertificate == nil):
		return errors.New("cluster: Config.TLS: no Certificates, nor GetCertificate and GetClientCertificate (this node needs a certificate)")
	case c.RootCAs == nil:
		return errors.New("cluster: Config.TLS: RootCAs is nil (needed to verify peers we dial)")
	case c.ClientCAs == nil:
		return errors.New("cluster: Config.TLS: ClientCAs is nil (needed to verify peers that dial us)")
	}
	return nil
}

// tlsHandshakeTimeout bounds the server side of a TLS handshake on an
// accepted connection, so a peer that connects and stalls cannot pin a
// transport goroutine forever.
const tlsHandshakeTimeout = 10 * time.Second

// streamLayer implements raft.StreamLayer over TCP, optionally wrapped in
// mutual TLS. Its methods are safe for concurrent use, as raft requires.
//
// It keeps every connection it dialled or accepted until that connection is
// closed, so that shutdown can close them all: hashicorp/raft bounds each RPC
// only by the transport's I/O deadline (transportTimeout), and closes neither
// the connections its goroutines are using nor their dials when it shuts
// down, so without this a node shutting down while a peer was unreachable
// waited for that deadline before raft's goroutines exited.
type streamLayer struct {
	ln        net.Listener
	advertise net.Addr
	serverTLS *tls.Config // nil => plain TCP
	clientTLS *tls.Config
	// dial makes the TCP connection of Dial (a net.Dialer; tests route it
	// through links they can cut).
	dial func(ctx context.Context, address string) (net.Conn, error)

	ctx    context.Context // ends at shutdown: dials under way give up
	cancel context.CancelFunc

	mu     sync.Mutex
	conns  map[*trackedConn]struct{} // open connections; guarded by mu
	closed bool                      // shutdown ran; guarded by mu
}

var _ raft.StreamLayer = (*streamLayer)(nil)

// errStreamShutdown is what Dial returns once shutdown has run.
var errStreamShutdown = errors.New("cluster: raft transport is shutting down")

// newStreamLayer wraps ln. advertise is what Addr reports (and thus what
// raft tells peers). If tlsConf is non-nil it must pass checkTLS; it is
// cloned, and the server side is forced to require and verify client
// certificates. dial nil means a plain net.Dialer.
func newStreamLayer(ln net.Listener, advertise net.Addr, tlsConf *tls.Config, dial func(context.Context, string) (net.Conn, error)) *streamLayer {
	if dial == nil {
		dial = func(ctx context.Context, address string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "tcp", address)
		}
	}
	s := &streamLayer{ln: ln, advertise: advertise, dial: dial, conns: make(map[*trackedConn]struct{})}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	if tlsConf != nil {
		s.serverTLS = tlsConf.Clone()
		s.serverTLS.ClientAuth = tls.RequireAndVerifyClientCert
		if s.serverTLS.MinVersion < tls.VersionTLS12 {
			s.serverTLS.MinVersion = tls.VersionTLS12
		}
		s.clientTLS = s.serverTLS.Clone()
	}
	return s
}

// Accept waits for the next inbound connection. With TLS the handshake (and
// client certificate verification) happens on the connection's first Read or
// Write, bounded by tlsHandshakeTimeout; a failed handshake surfaces as an
// I/O error to raft, which drops the connection. After shutdown, until the
// listener is closed, connections are closed as they come (an error here
// would have raft log a failed accept).
func (s *streamLayer) Accept() (net.Conn, error) {
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return nil, err
		}
		if s.serverTLS != nil {
			c = &serverConn{Conn: tls.Server(c, s.serverTLS)}
		}
		if tc, err := s.track(c); err == nil {
			return tc, nil
		}
	}
}

// Close closes the listener.
func (s *streamLayer) Close() error { return s.ln.Close() }

// Addr returns the advertised address.
func (s *streamLayer) Addr() net.Addr { return s.advertise }

// Dial connects to a peer. With TLS the full handshake, including
// verification of the peer's certificate against RootCAs and the host name
// (Config.TLS.ServerName if set, else the host part of address), completes
// within timeout before Dial returns. After shutdown it fails at once.
func (s *streamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	ctx := s.ctx
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	c, err := s.dial(ctx, string(address))
	if err == nil && s.clientTLS != nil {
		c, err = s.clientHandshake(ctx, c, string(address))
	}
	if err != nil {
		if s.ctx.Err() != nil {
			return nil, errStreamShutdown
		}
		return nil, err
	}
	return s.track(c)
}

// clientHandshake runs the client side of TLS on c, closing c if it fails.
func (s *streamLayer) clientHandshake(ctx context.Context, c net.Conn, address string) (net.Conn, error) {
	conf := s.clientTLS
	if conf.ServerName == "" {
		host, _, err := net.SplitHostPort(address)
		if err != nil {
			c.Close()
			return nil, err
		}
		conf = conf.Clone()
		conf.ServerName = host
	}
	tc := tls.Client(c, conf)
	if err := tc.HandshakeContext(ctx); err != nil {
		c.Close()
		return nil, err
	}
	return tc, nil
}

// track registers c until it is closed; after shutdown it closes c instead.
func (s *streamLayer) track(c net.Conn) (net.Conn, error) {
	tc := &trackedConn{Conn: c, s: s}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		c.Close()
		return nil, errStreamShutdown
	}
	s.conns[tc] = struct{}{}
	return tc, nil
}

// shutdown refuses new connections, abandons dials under way and closes
// every open connection, so that whatever is blocked reading, writing or
// dialling on one returns at once with an error. Idempotent.
func (s *streamLayer) shutdown() {
	s.mu.Lock()
	s.closed = true
	conns := make([]*trackedConn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	s.cancel()
	for _, c := range conns {
		c.Close()
	}
}

// trackedConn is a connection of a streamLayer; closing it unregisters it.
type trackedConn struct {
	net.Conn
	s    *streamLayer
	once sync.Once
	err  error
}

func (c *trackedConn) Close() error {
	c.once.Do(func() {
		c.s.mu.Lock()
		delete(c.s.conns, c)
		c.s.mu.Unlock()
		c.err = c.Conn.Close()
	})
	return c.err
}

// serverConn runs the server-side TLS handshake with a deadline before the
// first Read or Write.
type serverConn struct {
	*tls.Conn
	once sync.Once
	err  error
}

func (c *serverConn) handshake() error {
	c.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), tlsHandshakeTimeout)
		defer cancel()
		c.err = c.Conn.HandshakeContext(ctx)
	})
	return c.err
}

func (c *serverConn) Read(b []byte) (int, error) {
	if err := c.handshake(); err != nil {
		return 0, err
	}
	return c.Conn.Read(b)
}

func (c *serverConn) Write(b []byte) (int, error) {
	if err := c.handshake(); err != nil {
		return 0, err
	}
	return c.Conn.Write(b)
}

// advertiseAddr is a net.Addr for a host:port string that is not resolved
// locally (the host may be a DNS name resolved by peers when dialing).
type advertiseAddr string

func (a advertiseAddr) Network() string { return "tcp" }
func (a advertiseAddr) String() string  { return string(a) }
