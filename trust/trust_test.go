package trust

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var (
	tokA = NewToken()
	tokB = NewToken()
)

func TestTokenBits(t *testing.T) {
	for _, tc := range []struct {
		tok string
		ok  bool
	}{
		{NewToken(), true},
		{"s3cret", false},
		{"x", false},
		{"0123456789abcdef0123456789abcdef", true},          // 32 hex = 128 bits
		{"0123456789abcdef0123456789abcde", false},          // 31 hex
		{"Zm9vYmFyYmF6cXV4cXV1eGNvcmdl", true},              // base64-ish letters and digits, 28 chars
		{"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", false}, // long but one character
		{"abababababababababababababababababababab", false},
	} {
		err := CheckToken(tc.tok)
		if (err == nil) != tc.ok {
			t.Errorf("%q: %.0f bits, err %v; want ok=%v", tc.tok, TokenBits(tc.tok), err, tc.ok)
		}
	}
	if err := CheckToken("with space and more than enough length to be strong 1234567890"); err == nil {
		t.Error("a token with a space accepted")
	}
}

func writeFile(t *testing.T, body string, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(p, []byte(body), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestReadTokenFile(t *testing.T) {
	toks, err := ReadTokenFile(writeFile(t, "# rotation: new first\n"+tokA+"\n\n"+tokB+"\n", 0o600))
	if err != nil || len(toks) != 2 || toks[0] != tokA || toks[1] != tokB {
		t.Fatalf("%v %v", toks, err)
	}
	for name, tc := range map[string]struct {
		body string
		mode os.FileMode
		want string
	}{
		"world readable": {tokA + "\n", 0o644, "chmod 600"},
		"group readable": {tokA + "\n", 0o640, "accessible by group or others (mode 0640)"},
		"weak":           {"hunter2\n", 0o600, "line 1: the token is too weak"},
		"empty":          {"# nothing\n\n", 0o600, "is empty: it holds no token"},
	} {
		if _, err := ReadTokenFile(writeFile(t, tc.body, tc.mode)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", name, err, tc.want)
		}
	}
}

// TestDerivedCAIsTheSameEverywhere: two derivations from one token (two
// directors) trust each other's certificates; another token's do not.
func TestDerivedCAIsTheSameEverywhere(t *testing.T) {
	ca1, err := DeriveCA(tokA)
	if err != nil {
		t.Fatal(err)
	}
	ca2, _ := DeriveCA(tokA)
	other, _ := DeriveCA(tokB)
	if ca1.Fingerprint() != ca2.Fingerprint() || ca1.cert.Subject.String() != ca2.cert.Subject.String() {
		t.Fatal("one token, two CAs")
	}
	if ca1.Fingerprint() == other.Fingerprint() {
		t.Fatal("two tokens, one CA")
	}
	leaf, err := ca1.Issue("d1", []string{"10.0.0.1", "d1.example"}, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	verify := func(ca *CA, name string) error {
		pool := x509.NewCertPool()
		pool.AddCert(ca.Certificate())
		_, err := leaf.Leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: name, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
		return err
	}
	if err := verify(ca2, "10.0.0.1"); err != nil {
		t.Fatalf("the other copy of the CA refuses it: %v", err)
	}
	if err := verify(ca2, "d1.example"); err != nil {
		t.Fatal(err)
	}
	if err := verify(ca2, "10.0.0.2"); err == nil {
		t.Fatal("verified for an address it does not name")
	}
	if err := verify(other, "10.0.0.1"); err == nil {
		t.Fatal("another token's CA accepts it")
	}
	if !strings.Contains(string(ca1.PEM()), "BEGIN CERTIFICATE") {
		t.Fatal("PEM")
	}
}

// handshake connects a client config to a server config over loopback TCP
// and returns nil only if the server completed the handshake and its first
// bytes reached the client (in TLS 1.3 the server checks the client's
// certificate after the client's handshake returned).
func handshake(t *testing.T, server, client *tls.Config) error {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", server)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		if c.(*tls.Conn).Handshake() == nil {
			_, _ = c.Write([]byte("ok"))
		}
	}()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", ln.Addr().String(), client)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 2)
	if _, err := io.ReadFull(c, buf); err != nil {
		return err
	}
	return nil
}

func TestMutualTLSBetweenDirectors(t *testing.T) {
	trA, _ := FromTokens([]string{tokA})
	d1, err := trA.NewIdentity("d1", []string{"127.0.0.1", "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	d2, _ := trA.NewIdentity("d2", []string{"127.0.0.2"})
	cli := d2.MutualConfig()
	cli.ServerName = "127.0.0.1"
	if err := handshake(t, d1.MutualConfig(), cli); err != nil {
		t.Fatalf("two directors of one cluster: %v", err)
	}
	// A director of another cluster (another token) is refused both ways.
	trB, _ := FromTokens([]string{tokB})
	stranger, _ := trB.NewIdentity("x", []string{"127.0.0.1"})
	sc := stranger.MutualConfig()
	sc.ServerName = "127.0.0.1"
	if err := handshake(t, d1.MutualConfig(), sc); err == nil {
		t.Fatal("a stranger's client certificate accepted")
	}
	// A client with no certificate at all is refused.
	plain := trA.ClientConfig()
	plain.ServerName = "127.0.0.1"
	if err := handshake(t, d1.MutualConfig(), plain); err == nil {
		t.Fatal("a client without a certificate accepted by raft's mutual TLS")
	}
	// Rotation (docs/operations.md): step 1 every director has (A, B) and
	// issues with A; step 2 one by one they move to (B, A) and issue with
	// B. Directors of the two steps talk both ways; one left on A alone
	// would not.
	step1, _ := FromTokens([]string{tokA, tokB})
	step2, _ := FromTokens([]string{tokB, tokA})
	s1, _ := step1.NewIdentity("d1", []string{"127.0.0.1"})
	s2, _ := step2.NewIdentity("d2", []string{"127.0.0.1"})
	for _, pair := range [][2]*Identity{{s1, s2}, {s2, s1}} {
		c := pair[1].MutualConfig()
		c.ServerName = "127.0.0.1"
		if err := handshake(t, pair[0].MutualConfig(), c); err != nil {
			t.Fatalf("%s serving %s during a rotation: %v", pair[0].cn, pair[1].cn, err)
		}
	}
	c1 := d1.MutualConfig()
	c1.ServerName = "127.0.0.1"
	if err := handshake(t, s2.MutualConfig(), c1); err == nil {
		t.Fatal("a director that trusts only A accepted a certificate of B")
	}
}

func TestIdentityRenews(t *testing.T) {
	tr, _ := FromTokens([]string{tokA})
	id, _ := tr.NewIdentity("d1", []string{"127.0.0.1"})
	now := time.Now()
	id.now = func() time.Time { return now }
	first, _ := id.current()
	now = now.Add(CertLifetime / 2)
	if c, _ := id.current(); c != first {
		t.Fatal("renewed with half its life left")
	}
	now = first.Leaf.NotAfter.Add(-CertLifetime / 4)
	c, err := id.current()
	if err != nil || c == first || !c.Leaf.NotAfter.After(first.Leaf.NotAfter) {
		t.Fatalf("not renewed with a quarter of its life left: %v", err)
	}
}
