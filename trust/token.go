// Package trust is the cluster's root of trust: the shared token, and the
// certificate authority derived from it.
//
// Every director is given the same token file. The token authenticates API
// requests (bearer token), derives the gossip key, and — through this
// package — derives the cluster's CA key: every director that holds the
// token computes the same CA, issues its own certificate with it at start,
// and trusts exactly the certificates that CA signed. So raft runs over
// mutual TLS and the API over HTTPS with no certificate made by hand, and a
// client that holds the token (the CLI) verifies a director's certificate
// without a CA file. Whoever holds the token is a member: it could already
// join a director or change the state through the API.
//
// Rotation: a token file may hold several tokens, one per line. The first
// signs and is sent; all are accepted and their CAs trusted. Add the new
// token as a second line everywhere, then move it first, then drop the old
// one, restarting the directors one at a time at each step
// (docs/operations.md, "Security").
package trust

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"os"
	"strings"
)

// MinTokenBits is the least estimated entropy of a token.
const MinTokenBits = 128

// NewToken returns a fresh token: 32 random bytes in URL-safe base64
// (256 bits), as `raftlb token new` prints it.
func NewToken() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// TokenBits estimates a token's entropy from its length and the smallest
// usual alphabet its characters come from (digits 3.3 bits a character, hex
// 4, one case of letters 4.7, letters and digits 6, base64 6, printable
// ASCII 6.6). A token of a few repeated characters counts as that few.
func TokenBits(tok string) float64 {
	s := strings.TrimRight(tok, "=") // base64 padding carries nothing
	var digit, hexLetter, lower, upper, b64, other bool
	distinct := map[rune]bool{}
	for _, r := range s {
		distinct[r] = true
		switch {
		case r >= '0' && r <= '9':
			digit = true
		case r >= 'a' && r <= 'f' || r >= 'A' && r <= 'F':
			hexLetter = true
		case r >= 'a' && r <= 'z':
			lower = true
		case r >= 'A' && r <= 'Z':
			upper = true
		case r == '+' || r == '/' || r == '-' || r == '_':
			b64 = true
		default:
			other = true
		}
	}
	hasLower := lower || strings.ContainsAny(s, "abcdef")
	hasUpper := upper || strings.ContainsAny(s, "ABCDEF")
	var size int
	switch {
	case other:
		size = 95
	case b64:
		size = 64
	case hasLower && hasUpper:
		size = 62
	case lower || upper: // letters beyond hex
		size = 26
		if digit {
			size = 36
		}
	case hexLetter:
		size = 16
	case digit:
		size = 10
	default:
		return 0
	}
	// Repetition: with far fewer distinct characters than a random string
	// of that length shows, count only the distinct ones.
	if d := len(distinct); d < len(s)/3 && d < 10 {
		size = min(size, d)
	}
	if size < 2 {
		return 0
	}
	return float64(len(s)) * math.Log2(float64(size))
}

// CheckToken refuses a token that is too weak or cannot travel in an
// Authorization header.
func CheckToken(tok string) error {
	for _, r := range tok {
		if r <= ' ' || r > '~' {
			return errors.New("only printable ASCII without spaces")
		}
	}
	if bits := TokenBits(tok); bits < MinTokenBits {
		return fmt.Errorf("too weak: about %.0f bits, at least %d are needed (e.g. 22 random base64 or 32 hex characters; 'raftlb token new' makes one)",
			bits, MinTokenBits)
	}
	return nil
}

// ReadTokenFile reads a token file: one token per line (the first is the
// current one; later ones are still accepted, for rotation), blank lines
// and lines starting with # ignored. The file must be private (no access
// for group or others) and every token strong enough.
func ReadTokenFile(path string) ([]string, error) {
	b, err := ReadSecretFile(path)
	if err != nil {
		return nil, err
	}
	var toks []string
	for i, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if err := CheckToken(line); err != nil {
			return nil, fmt.Errorf("%s line %d: the token is %w", path, i+1, err)
		}
		toks = append(toks, line)
	}
	if len(toks) == 0 {
		return nil, fmt.Errorf("%s is empty: it holds no token ('raftlb token new > %s' makes one)", path, path)
	}
	return toks, nil
}

// ReadSecretFile reads a file holding a secret, refusing one that group or
// others may read or write: a secret readable by every local user is no
// secret.
func ReadSecretFile(path string) ([]byte, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("%s is accessible by group or others (mode %04o): chmod 600 %s", path, perm, path)
	}
	return os.ReadFile(path)
}

// IsLoopback reports whether host (a name or an address, no port) is this
// machine's loopback: the one place raft and the API may listen, and the
// token travel, without TLS by default.
func IsLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsLoopback()
}
