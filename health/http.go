package health

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"regexp"
	"time"

	"github.com/raftlb/raftlb/model"
)

type httpChecker struct {
	spec   model.HTTPCheck
	scheme string
	status []model.StatusRange
	re     *regexp.Regexp
	tr     *http.Transport
}

func newHTTPChecker(s model.Check) (*httpChecker, error) {
	h := *s.HTTP
	c := &httpChecker{spec: h, scheme: s.Type}
	c.status, _ = model.ParseStatus(h.Status)
	if h.BodyRegex != "" {
		c.re = regexp.MustCompile(h.BodyRegex)
	}
	tc := &tls.Config{InsecureSkipVerify: !h.TLSVerify, ServerName: h.SNI}
	if tc.ServerName == "" && h.Host != "" {
		if host, _, err := net.SplitHostPort(h.Host); err == nil {
			tc.ServerName = host
		} else {
			tc.ServerName = h.Host
		}
	}
	if h.CAFile != "" {
		pem, err := os.ReadFile(h.CAFile)
		if err != nil {
			return nil, fmt.Errorf("health: http.ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("health: http.ca_file %s: no PEM certificates", h.CAFile)
		}
		tc.RootCAs = pool
	}
	// One fresh connection per check: a check must see the listener, not a
	// pooled connection.
	c.tr = &http.Transport{
		DisableKeepAlives:  true,
		DisableCompression: true,
		Proxy:              nil,
		TLSClientConfig:    tc,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			t, _ := ctx.Value(targetKey{}).(Target)
			return tcpDialer.DialContext(ctx, "tcp", t.CheckAddr().String())
		},
	}
	return c, nil
}

type targetKey struct{}

var tcpDialer net.Dialer

func (c *httpChecker) Check(ctx context.Context, t Target) Result {
	start := time.Now()
	host := c.spec.Host
	if host == "" {
		host = t.CheckAddr().String()
	}
	ctx = context.WithValue(ctx, targetKey{}, t)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.scheme+"://"+host+c.spec.Path, nil)
	if err != nil {
		return fail(start, "request: %v", err)
	}
	req.Header.Set("User-Agent", "raftlb-health")
	resp, err := c.tr.RoundTrip(req)
	if err != nil {
		return fail(start, "%s", errText(ctx, err))
	}
	defer resp.Body.Close()
	if !c.statusOK(resp.StatusCode) {
		return fail(start, "status %d, want %s", resp.StatusCode, c.spec.Status)
	}
	if c.re == nil && c.spec.BodySHA256 == "" {
		return ok(start)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, model.MaxCheckBody))
	if err != nil {
		return fail(start, "body: %s", errText(ctx, err))
	}
	if c.spec.BodySHA256 != "" {
		sum := sha256.Sum256(body)
		if got := hex.EncodeToString(sum[:]); got != c.spec.BodySHA256 {
			return fail(start, "body sha256 %s, want %s", got, c.spec.BodySHA256)
		}
	}
	if c.re != nil && !c.re.Match(body) {
		return fail(start, "body does not match %q", c.spec.BodyRegex)
	}
	return ok(start)
}

func (c *httpChecker) statusOK(code int) bool {
	for _, r := range c.status {
		if r.Contains(code) {
			return true
		}
	}
	return false
}
