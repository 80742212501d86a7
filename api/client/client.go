// Package client is the Go client of raftlb's admin API. The CLI uses only
// this package to talk to a director.
package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/raftlb/raftlb/api/wire"
	"github.com/raftlb/raftlb/model"
	"github.com/raftlb/raftlb/trust"
)

// DefaultAddr is where `raftlb agent -dev` listens.
const DefaultAddr = "http://127.0.0.1:7480"

// Client talks to one director's API. Safe for concurrent use.
type Client struct {
	base     *url.URL
	token    string
	insecure bool
	http     *http.Client
	noLead   time.Duration
}

// WithAddr returns a client for another director's API (http(s)://host:port)
// that shares this one's token, TLS roots and connections.
func (c *Client) WithAddr(addr string) (*Client, error) {
	u, err := url.Parse(addr)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return nil, fmt.Errorf("address %q: want http(s)://host:port", addr)
	}
	cp := *c
	cp.base = u
	if err := cp.checkCleartext(); err != nil {
		return nil, err
	}
	return &cp, nil
}

// Scheme is the scheme of the API address (http or https).
func (c *Client) Scheme() string { return c.base.Scheme }

// Options configure a Client.
type Options struct {
	// Addr is http(s)://host:port, or host:port: https, except on a
	// loopback host (where a director's API listens without TLS by
	// default). Default DefaultAddr.
	Addr  string
	Token string // bearer token
	// How an https API is verified: TLS if set (its RootCAs), else the CA
	// bundle in CAFile, else the cluster CA derived from Token (every
	// director's certificate is issued by it; package trust), else the
	// system's roots.
	TLS     *tls.Config
	CAFile  string
	Timeout time.Duration // per request; default 30 s
	// Transport, if set, carries the requests (tests dial from inside a
	// network namespace with it); an *http.Transport without a TLS
	// configuration gets the one chosen above.
	Transport http.RoundTripper
	// NoLeaderWait is how long a request keeps retrying while the cluster
	// answers no_leader (an election: nothing was applied, so retrying is
	// safe). Default 10 s; negative disables.
	NoLeaderWait time.Duration
	// Insecure allows sending the token over plain HTTP to a host that is
	// not loopback (a director run with -insecure). Without it such a
	// request is refused before anything is sent.
	Insecure bool
}

// New returns a client for opts.
func New(opts Options) (*Client, error) {
	addr := opts.Addr
	if addr == "" {
		addr = DefaultAddr
	}
	if !strings.Contains(addr, "://") {
		scheme := "https"
		if host, _, err := net.SplitHostPort(addr); err == nil && trust.IsLoopback(host) {
			scheme = "http"
		}
		addr = scheme + "://" + addr
	}
	u, err := url.Parse(addr)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return nil, fmt.Errorf("address %q: want http(s)://host:port", opts.Addr)
	}
	tlsConf, err := clientTLS(opts)
	if err != nil {
		return nil, err
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil
	tr.TLSClientConfig = tlsConf
	if opts.Timeout == 0 {
		opts.Timeout = 30 * time.Second
	}
	var rt http.RoundTripper = tr
	if ht, ok := opts.Transport.(*http.Transport); ok && ht.TLSClientConfig == nil {
		ht = ht.Clone()
		ht.TLSClientConfig = tlsConf
		rt = ht
	} else if opts.Transport != nil {
		rt = opts.Transport
	}
	if opts.NoLeaderWait == 0 {
		opts.NoLeaderWait = 10 * time.Second
	}
	c := &Client{base: u, token: opts.Token, insecure: opts.Insecure, http: &http.Client{Transport: rt, Timeout: opts.Timeout}, noLead: opts.NoLeaderWait}
	if err := c.checkCleartext(); err != nil {
		return nil, err
	}
	return c, nil
}

// clientTLS picks how an https API is verified (Options.TLS).
func clientTLS(opts Options) (*tls.Config, error) {
	switch {
	case opts.TLS != nil:
		return opts.TLS.Clone(), nil
	case opts.CAFile != "":
		pem, err := os.ReadFile(opts.CAFile)
		if err != nil {
			return nil, fmt.Errorf("CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("CA file %s: no PEM certificates", opts.CAFile)
		}
		return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, nil
	case opts.Token != "":
		t, err := trust.FromTokens([]string{opts.Token})
		if err != nil {
			return nil, err
		}
		return t.ClientConfig(), nil
	}
	return &tls.Config{MinVersion: tls.VersionTLS12}, nil
}

// checkCleartext refuses to send the token in cleartext beyond loopback.
func (c *Client) checkCleartext() error {
	if c.base.Scheme == "http" && c.token != "" && !c.insecure && !trust.IsLoopback(c.base.Hostname()) {
		return fmt.Errorf("refusing to send the token in cleartext to %s: use https (the default for host:port), "+
			"or -insecure if that director runs with -insecure", c.base.Redacted())
	}
	return nil
}

// Addr returns the API base address.
func (c *Client) Addr() string { return c.base.String() }

// APIError is an error response from the API: its HTTP status and the
// {code, message, field} body.
type APIError struct {
	Status  int
	Code    string
	Message string
	Field   string
}

func (e *APIError) Error() string {
	if e.Field != "" {
		return e.Field + ": " + e.Message
	}
	return e.Message
}

// IsCode reports whether err is an API error with the given code.
func IsCode(err error, code string) bool {
	var ae *APIError
	return errors.As(err, &ae) && ae.Code == code
}

// Meta is what every response says besides its body.
type Meta struct {
	Index uint64 // X-Raftlb-Index
}

// do sends one request, retrying while the cluster has no leader.
func (c *Client) do(ctx context.Context, method, path string, query url.Values, in, out any) (Meta, error) {
	var body []byte
	if in != nil {
		var err error
		if body, err = json.Marshal(in); err != nil {
			return Meta{}, err
		}
	}
	deadline := time.Now().Add(c.noLead)
	wait := 50 * time.Millisecond
	for {
		m, err := c.once(ctx, method, path, query, body, out)
		if !IsCode(err, wire.CodeNoLeader) || time.Now().Add(wait).After(deadline) {
			return m, err
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return m, err
		case <-t.C:
		}
		wait = min(2*wait, time.Second)
	}
}

func (c *Client) once(ctx context.Context, method, path string, query url.Values, in []byte, out any) (Meta, error) {
	var body io.Reader
	if in != nil {
		body = bytes.NewReader(in)
	}
	u := *c.base
	// path's segments are already escaped (esc): keep them as the raw path
	// so that "[2001:db8::1]:80" is not escaped twice.
	rawPath := strings.TrimSuffix(c.base.EscapedPath(), "/") + path
	var err error
	if u.Path, err = url.PathUnescape(rawPath); err != nil {
		return Meta{}, fmt.Errorf("bad request path %q: %w", rawPath, err)
	}
	u.RawPath = rawPath
	u.RawQuery = query.Encode()
	req, err := http.NewRequestWithContext(ctx, method, u.String(), body)
	if err != nil {
		return Meta{}, err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return Meta{}, fmt.Errorf("cannot reach the raftlb API at %s: %w", c.base.Host, err)
	}
	defer resp.Body.Close()
	var m Meta
	if v := resp.Header.Get(wire.HeaderIndex); v != "" {
		m.Index, _ = strconv.ParseUint(v, 10, 64)
	}
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 256<<20))
	if err != nil {
		return m, err
	}
	if resp.StatusCode >= 300 {
		var body model.Error
		if json.Unmarshal(raw, &body) != nil || body.Message == "" {
			body = model.Error{Code: "http_" + strconv.Itoa(resp.StatusCode), Message: strings.TrimSpace(string(raw))}
		}
		return m, &APIError{Status: resp.StatusCode, Code: body.Code, Message: body.Message, Field: body.Field}
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			return m, fmt.Errorf("decode %s %s response: %w", method, path, err)
		}
	}
	return m, nil
}

func esc(s string) string { return url.PathEscape(s) }

func casQuery(cas uint64) url.Values {
	if cas == 0 {
		return nil
	}
	return url.Values{"cas": {strconv.FormatUint(cas, 10)}}
}

// ReadOpts select how a read is answered.
type ReadOpts struct {
	// Consistent asks the leader, after a raft barrier, instead of the local
	// (possibly slightly stale) state.
	Consistent bool
}

func (o ReadOpts) query() url.Values {
	if o.Consistent {
		return url.Values{"consistent": {"1"}}
	}
	return nil
}

// Status returns the director's raft status and peers.
func (c *Client) Status(ctx context.Context) (wire.Status, error) {
	var s wire.Status
	_, err := c.do(ctx, "GET", "/v1/status", nil, nil, &s)
	return s, err
}

// Services lists every service with its real servers.
func (c *Client) Services(ctx context.Context, o ReadOpts) ([]model.Service, Meta, error) {
	var out []model.Service
	m, err := c.do(ctx, "GET", "/v1/services", o.query(), nil, &out)
	return out, m, err
}

// Service returns one service.
func (c *Client) Service(ctx context.Context, name string, o ReadOpts) (model.Service, error) {
	var out model.Service
	_, err := c.do(ctx, "GET", "/v1/services/"+esc(name), o.query(), nil, &out)
	return out, err
}

// ServiceCreate is the body of a service creation: a spec and optional
// initial real servers.
type ServiceCreate struct {
	model.ServiceSpec
	Reals []model.RealSpec `json:"reals,omitempty"`
}

// CreateService creates a service.
func (c *Client) CreateService(ctx context.Context, s ServiceCreate) (wire.WriteResponse, error) {
	var out wire.WriteResponse
	_, err := c.do(ctx, "POST", "/v1/services", nil, s, &out)
	return out, err
}

// UpdateService replaces a service's spec. cas (if non-zero) must be its
// current modify_index.
func (c *Client) UpdateService(ctx context.Context, spec model.ServiceSpec, cas uint64) (wire.WriteResponse, error) {
	var out wire.WriteResponse
	_, err := c.do(ctx, "PUT", "/v1/services/"+esc(spec.Name), casQuery(cas), spec, &out)
	return out, err
}

// DeleteService deletes a service and its real servers.
func (c *Client) DeleteService(ctx context.Context, name string, cas uint64) (wire.WriteResponse, error) {
	var out wire.WriteResponse
	_, err := c.do(ctx, "DELETE", "/v1/services/"+esc(name), casQuery(cas), nil, &out)
	return out, err
}

// Reals lists a service's real servers.
func (c *Client) Reals(ctx context.Context, service string, o ReadOpts) ([]model.RealServer, error) {
	var out []model.RealServer
	_, err := c.do(ctx, "GET", "/v1/services/"+esc(service)+"/reals", o.query(), nil, &out)
	return out, err
}

// Real returns one real server; key is "addr:port".
func (c *Client) Real(ctx context.Context, service, key string, o ReadOpts) (model.RealServer, error) {
	var out model.RealServer
	_, err := c.do(ctx, "GET", "/v1/services/"+esc(service)+"/reals/"+esc(key), o.query(), nil, &out)
	return out, err
}

// CreateReal adds a real server to a service. Start r from
// model.NewRealServer(): a zero RealServer has weight 0 (no new connections).
func (c *Client) CreateReal(ctx context.Context, service string, r model.RealSpec) (wire.WriteResponse, error) {
	var out wire.WriteResponse
	_, err := c.do(ctx, "POST", "/v1/services/"+esc(service)+"/reals", nil, r, &out)
	return out, err
}

// UpdateReal replaces real server key of a service.
func (c *Client) UpdateReal(ctx context.Context, service, key string, r model.RealSpec, cas uint64) (wire.WriteResponse, error) {
	var out wire.WriteResponse
	_, err := c.do(ctx, "PUT", "/v1/services/"+esc(service)+"/reals/"+esc(key), casQuery(cas), r, &out)
	return out, err
}

// DeleteReal removes real server key from a service.
func (c *Client) DeleteReal(ctx context.Context, service, key string, cas uint64) (wire.WriteResponse, error) {
	var out wire.WriteResponse
	_, err := c.do(ctx, "DELETE", "/v1/services/"+esc(service)+"/reals/"+esc(key), casQuery(cas), nil, &out)
	return out, err
}

// ModifyReal reads real server key, applies fn and writes it back with
// compare-and-set, retrying (up to 5 times) if another writer got there
// first. It is how `raftlb real update` and `raftlb real drain` change one
// field without clobbering others.
func (c *Client) ModifyReal(ctx context.Context, service, key string, fn func(*model.RealSpec)) (wire.WriteResponse, error) {
	for attempt := 0; ; attempt++ {
		r, err := c.Real(ctx, service, key, ReadOpts{Consistent: true})
		if err != nil {
			return wire.WriteResponse{}, err
		}
		// What is written back is the spec: the cluster's decision and
		// the indexes are not the writer's to send.
		spec := r.Spec()
		fn(&spec)
		out, err := c.UpdateReal(ctx, service, key, spec, r.ModifyIndex)
		if err == nil || !IsCode(err, model.CodeCASMismatch) || attempt >= 4 {
			return out, err
		}
	}
}

// ModifyService is ModifyReal for a service's spec; an error from fn ends
// it without writing.
func (c *Client) ModifyService(ctx context.Context, name string, fn func(*model.ServiceSpec) error) (wire.WriteResponse, error) {
	for attempt := 0; ; attempt++ {
		s, err := c.Service(ctx, name, ReadOpts{Consistent: true})
		if err != nil {
			return wire.WriteResponse{}, err
		}
		spec := s.ServiceSpec
		spec.SchedFlags = slices.Clone(s.SchedFlags)
		if err := fn(&spec); err != nil {
			return wire.WriteResponse{}, err
		}
		out, err := c.UpdateService(ctx, spec, s.ModifyIndex)
		if err == nil || !IsCode(err, model.CodeCASMismatch) || attempt >= 4 {
			return out, err
		}
	}
}

// VIPs lists the VIPs.
func (c *Client) VIPs(ctx context.Context, o ReadOpts) ([]model.VIP, error) {
	var out []model.VIP
	_, err := c.do(ctx, "GET", "/v1/vips", o.query(), nil, &out)
	return out, err
}

// CreateVIP adds a VIP.
func (c *Client) CreateVIP(ctx context.Context, v model.VIP) (wire.WriteResponse, error) {
	var out wire.WriteResponse
	_, err := c.do(ctx, "POST", "/v1/vips", nil, v, &out)
	return out, err
}

// DeleteVIP removes the VIP with address addr (no prefix length).
func (c *Client) DeleteVIP(ctx context.Context, addr string, cas uint64) (wire.WriteResponse, error) {
	var out wire.WriteResponse
	_, err := c.do(ctx, "DELETE", "/v1/vips/"+esc(model.VIPKey(addr)), casQuery(cas), nil, &out)
	return out, err
}

// Settings returns the cluster settings.
func (c *Client) Settings(ctx context.Context, o ReadOpts) (model.Settings, error) {
	var out model.Settings
	_, err := c.do(ctx, "GET", "/v1/settings", o.query(), nil, &out)
	return out, err
}

// UpdateSettings replaces the cluster settings.
func (c *Client) UpdateSettings(ctx context.Context, s model.Settings, cas uint64) (wire.WriteResponse, error) {
	var out wire.WriteResponse
	_, err := c.do(ctx, "PUT", "/v1/settings", casQuery(cas), s, &out)
	return out, err
}

// Peers lists the raft voters.
func (c *Client) Peers(ctx context.Context) ([]wire.Peer, error) {
	var out []wire.Peer
	_, err := c.do(ctx, "GET", "/v1/cluster/peers", nil, nil, &out)
	return out, err
}

// Join adds a director to the cluster as a voter.
func (c *Client) Join(ctx context.Context, j wire.JoinRequest) (wire.WriteResponse, error) {
	var out wire.WriteResponse
	_, err := c.do(ctx, "POST", "/v1/cluster/join", nil, j, &out)
	return out, err
}

// Remove removes a director from the cluster.
func (c *Client) Remove(ctx context.Context, id string) (wire.WriteResponse, error) {
	var out wire.WriteResponse
	_, err := c.do(ctx, "POST", "/v1/cluster/remove", nil, wire.RemoveRequest{ID: id}, &out)
	return out, err
}

// TransferLeadership moves leadership to id ("" = raft picks).
func (c *Client) TransferLeadership(ctx context.Context, id string) (wire.WriteResponse, error) {
	var out wire.WriteResponse
	_, err := c.do(ctx, "POST", "/v1/cluster/transfer-leadership", nil, wire.TransferRequest{ID: id}, &out)
	return out, err
}

// RegisterNode records a director's API address.
func (c *Client) RegisterNode(ctx context.Context, n model.Node) (wire.WriteResponse, error) {
	var out wire.WriteResponse
	_, err := c.do(ctx, "POST", "/v1/cluster/nodes", nil, n, &out)
	return out, err
}
