package trust

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"sort"
	"sync"
	"time"
)

// caInfo is the HKDF info string of the CA key: changing it changes every
// cluster's CA.
const caInfo = "raftlb cluster CA v1"

// CA is the cluster's certificate authority, derived from a token: every
// holder of the token derives the same key and the same subject, so a
// certificate one director issues verifies against the CA any other
// director (or the CLI) derives.
type CA struct {
	key  *ecdsa.PrivateKey
	cert *x509.Certificate
}

// DeriveCA derives the CA of a token. The key is an ECDSA P-256 scalar from
// HKDF-SHA256(token, info "raftlb cluster CA v1"); the certificate's
// subject, serial and validity are functions of the key, so they are equal
// everywhere (the signature bytes may differ: ECDSA signs with a random
// nonce, which no verifier looks at).
func DeriveCA(token string) (*CA, error) {
	if token == "" {
		return nil, errors.New("trust: no token to derive the cluster CA from")
	}
	n := elliptic.P256().Params().N
	nMinus1 := new(big.Int).Sub(n, big.NewInt(1))
	// 48 bytes reduced modulo n-1, plus one: uniform enough (bias < 2^-128)
	// and never zero.
	seed, err := hkdf.Key(sha256.New, []byte(token), nil, caInfo, 48)
	if err != nil {
		return nil, err
	}
	d := new(big.Int).SetBytes(seed)
	d.Mod(d, nMinus1).Add(d, big.NewInt(1))
	key, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), d.FillBytes(make([]byte, 32)))
	if err != nil {
		return nil, fmt.Errorf("trust: derive the CA key: %w", err)
	}
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(pub)
	tmpl := &x509.Certificate{
		SerialNumber:          new(big.Int).SetBytes(sum[:16]),
		Subject:               pkix.Name{CommonName: "raftlb cluster CA " + hex.EncodeToString(sum[:4]), Organization: []string{"raftlb"}},
		NotBefore:             time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC),
		NotAfter:              time.Date(2124, 1, 1, 0, 0, 0, 0, time.UTC),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
		SubjectKeyId:          sum[:20],
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("trust: CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &CA{key: key, cert: cert}, nil
}

// Certificate returns the CA certificate.
func (ca *CA) Certificate() *x509.Certificate { return ca.cert }

// PEM returns the CA certificate in PEM, for tools that need a CA file
// (curl --cacert, a Prometheus scraper, a browser).
func (ca *CA) PEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.cert.Raw})
}

// Fingerprint is the SHA-256 of the CA's public key, in hex: the same for
// every director that derived it.
func (ca *CA) Fingerprint() string {
	sum := sha256.Sum256(ca.cert.RawSubjectPublicKeyInfo)
	return hex.EncodeToString(sum[:])
}

// Issue makes a certificate for a director (or any client of the
// cluster): a fresh ECDSA P-256 key, usable as TLS server and client,
// naming cn and the given hosts (IP addresses or DNS names), valid from an
// hour before now (clock skew) for lifetime.
func (ca *CA) Issue(cn string, hosts []string, lifetime time.Duration, now time.Time) (*tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: cn, Organization: []string{"raftlb"}},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(lifetime),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if h != "" {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		return nil, fmt.Errorf("trust: issue a certificate for %s: %w", cn, err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}

// Trust is what a director or client trusts: the CAs of every token it was
// given (the first one issues).
type Trust struct {
	CAs  []*CA
	Pool *x509.CertPool
}

// FromTokens derives the CA of each token.
func FromTokens(tokens []string) (*Trust, error) {
	if len(tokens) == 0 {
		return nil, errors.New("trust: no token")
	}
	t := &Trust{Pool: x509.NewCertPool()}
	for _, tok := range tokens {
		ca, err := DeriveCA(tok)
		if err != nil {
			return nil, err
		}
		t.CAs = append(t.CAs, ca)
		t.Pool.AddCert(ca.cert)
	}
	return t, nil
}

// ClientConfig verifies servers against the cluster's CAs.
func (t *Trust) ClientConfig() *tls.Config {
	return &tls.Config{RootCAs: t.Pool, MinVersion: tls.VersionTLS12}
}

// CertLifetime is how long a director's certificate is valid; it is
// issued anew at every start and renewed in memory before a third of its
// life is left.
const CertLifetime = 90 * 24 * time.Hour

// Identity is a director's certificate, issued by the first CA of a Trust
// and renewed in memory before it expires. Safe for concurrent use.
type Identity struct {
	trust *Trust
	cn    string
	hosts []string
	now   func() time.Time

	mu  sync.Mutex
	cur *tls.Certificate
}

// NewIdentity issues the first certificate for cn and hosts (deduplicated).
func (t *Trust) NewIdentity(cn string, hosts []string) (*Identity, error) {
	seen := map[string]bool{}
	var hs []string
	for _, h := range hosts {
		if h != "" && !seen[h] {
			seen[h] = true
			hs = append(hs, h)
		}
	}
	sort.Strings(hs)
	id := &Identity{trust: t, cn: cn, hosts: hs, now: time.Now}
	if _, err := id.current(); err != nil {
		return nil, err
	}
	return id, nil
}

// Hosts are the names and addresses the certificate carries.
func (id *Identity) Hosts() []string { return id.hosts }

func (id *Identity) current() (*tls.Certificate, error) {
	id.mu.Lock()
	defer id.mu.Unlock()
	now := id.now()
	if id.cur != nil && id.cur.Leaf.NotAfter.Sub(now) > CertLifetime/3 {
		return id.cur, nil
	}
	c, err := id.trust.CAs[0].Issue(id.cn, id.hosts, CertLifetime, now)
	if err != nil {
		if id.cur != nil && now.Before(id.cur.Leaf.NotAfter) {
			return id.cur, nil // keep the old one while it lasts
		}
		return nil, err
	}
	id.cur = c
	return c, nil
}

// ServerConfig serves TLS with this identity (the API).
func (id *Identity) ServerConfig() *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return id.current() },
	}
}

// MutualConfig is mutual TLS with this identity (raft): both sides present
// a certificate of the cluster's CAs and verify the other's.
func (id *Identity) MutualConfig() *tls.Config {
	return &tls.Config{
		MinVersion:           tls.VersionTLS12,
		GetCertificate:       func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return id.current() },
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return id.current() },
		RootCAs:              id.trust.Pool,
		ClientCAs:            id.trust.Pool,
		ClientAuth:           tls.RequireAndVerifyClientCert,
	}
}
