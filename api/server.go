package api

import (
	"bytes"
	"context"
	"crypto/subtle"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/raftlb/raftlb/api/wire"
	"github.com/raftlb/raftlb/cluster"
	"github.com/raftlb/raftlb/fsm"
	"github.com/raftlb/raftlb/model"
	"github.com/raftlb/raftlb/trust"
)

// Raft is what the API needs of the local raft node; *cluster.Node has it.
type Raft interface {
	Apply(cmd []byte, timeout time.Duration) (uint64, any, error)
	IsLeader() bool
	Leader() (addr, id string)
	Status() cluster.Status
	Peers() ([]cluster.Peer, error)
	AddVoter(id, addr string) error
	RemoveServer(id string) error
	TransferLeadership(id string) error
	Barrier(timeout time.Duration) error
}

// Config configures a Server.
type Config struct {
	FSM  *fsm.FSM
	Raft Raft

	// Token is the shared bearer token ("" = none configured);
	// ExtraTokens are accepted too (a rotation in progress).
	Token       string
	ExtraTokens []string
	// TokenForReads requires the token on every /v1 request (the API
	// listens beyond loopback). TokenForWrites requires it on writes (off
	// only in -dev). Without a Token, a request that needs one is refused.
	TokenForReads, TokenForWrites bool

	// ForwardTLS is used to reach the leader's API when it serves HTTPS.
	ForwardTLS *tls.Config
	// Insecure allows forwarding a request with its token over plain HTTP
	// to a leader that is not on loopback (directors run with -insecure).
	Insecure bool
	// Security describes how this director's raft and API are protected,
	// for /v1/status.
	Security *wire.Security
	// ApplyTimeout bounds one raft Apply (default 10 s).
	ApplyTimeout time.Duration
	// MaxBody is the largest accepted request body (default 4 MiB; 413).
	MaxBody int64
	// BodyTimeout bounds reading a request body (default 30 s; 408), so an
	// authorised client cannot hold a connection by sending slowly.
	BodyTimeout time.Duration
	// MaxReals is the most real servers one request may carry (default
	// 10000; 400 on "reals").
	MaxReals int
	// MaxEntry is the largest raft log entry a write may become (default
	// 4 MiB; 413): a huge entry delays every heartbeat behind it.
	MaxEntry int
	Log      *slog.Logger
	Version  string
	// Dataplane, if set, returns this director's dataplane status for
	// /v1/status.
	Dataplane func() *wire.DataplaneStatus
	// VIPs, if set, returns the VIPs this director holds and its
	// announcement counters.
	VIPs func() *wire.VIPStatus
	// Leadership, if set, returns this director's leadership preferences
	// and decision for /v1/status.
	Leadership func() *wire.LeadershipStatus

	// Health checking (api/health.go). Health, if set, answers GET
	// /v1/health (service "" = every checked service) with a
	// *HealthReport; Gossip and HealthStats, if set, give the "gossip" and
	// "health" parts of /v1/status.
	Health      func(service string) *wire.HealthReport
	Gossip      func() *wire.GossipStatus
	HealthStats func() *wire.HealthStatus

	// Stopped, if set, says why this director stopped serving (nil: it
	// serves). Default: the FSM's failure.
	Stopped func() *wire.Stopped
	// Readiness bounds (ready.go); 0 takes ReadyMaxLag / ReadyMaxDelay.
	ReadyMaxLag   uint64
	ReadyMaxDelay time.Duration
}

// Request limits (Config); docs/api.md "Limits".
const (
	DefaultMaxBody     = 4 << 20
	DefaultBodyTimeout = 30 * time.Second
	DefaultMaxReals    = 10000
	DefaultMaxEntry    = 4 << 20
)

// Server serves the API. Create it with NewServer and mount Handler.
type Server struct {
	cfg     Config
	mux     *http.ServeMux
	fwd     *http.Client
	commits commitHistory // for readiness (ready.go)
}

// NewServer returns a Server for cfg.
func NewServer(cfg Config) *Server {
	if cfg.ApplyTimeout == 0 {
		cfg.ApplyTimeout = 10 * time.Second
	}
	if cfg.MaxBody == 0 {
		cfg.MaxBody = DefaultMaxBody
	}
	if cfg.BodyTimeout == 0 {
		cfg.BodyTimeout = DefaultBodyTimeout
	}
	if cfg.MaxReals == 0 {
		cfg.MaxReals = DefaultMaxReals
	}
	if cfg.MaxEntry == 0 {
		cfg.MaxEntry = DefaultMaxEntry
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.ReadyMaxLag == 0 {
		cfg.ReadyMaxLag = ReadyMaxLag
	}
	if cfg.ReadyMaxDelay == 0 {
		cfg.ReadyMaxDelay = ReadyMaxDelay
	}
	if cfg.Stopped == nil {
		cfg.Stopped = func() *wire.Stopped { return StoppedBy(cfg.FSM.Failure()) }
	}
	s := &Server{cfg: cfg, mux: http.NewServeMux()}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = cfg.ForwardTLS
	tr.Proxy = nil
	s.fwd = &http.Client{Transport: tr, Timeout: cfg.ApplyTimeout + 5*time.Second}
	s.routes()
	return s
}

// Handler returns the HTTP handler.
func (s *Server) Handler() http.Handler { return s.mux }

type methods map[string]http.HandlerFunc

func (s *Server) handle(pattern string, m methods) {
	allow := slices.Sorted(func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	})
	s.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		h, ok := m[r.Method]
		if !ok {
			w.Header().Set("Allow", strings.Join(allow, ", "))
			writeError(w, http.StatusMethodNotAllowed, &wire.Error{Code: wire.CodeMethod,
				Message: fmt.Sprintf("%s is not allowed on %s (allowed: %s)", r.Method, r.URL.Path, strings.Join(allow, ", "))})
			return
		}
		h(w, r)
	})
}

func (s *Server) routes() {
	s.handle("/healthz", methods{"GET": s.healthz})
	s.handle("/readyz", methods{"GET": s.readyz})
	s.handle("/v1/status", methods{"GET": s.getStatus})
	s.handle("/v1/health", methods{"GET": s.getHealth})
	s.handle("/v1/services", methods{"GET": s.listServices, "POST": s.createService})
	s.handle("/v1/services/{name}", methods{"GET": s.getService, "PUT": s.updateService, "DELETE": s.deleteService})
	s.handle("/v1/services/{name}/reals", methods{"GET": s.listReals, "POST": s.createReal})
	s.handle("/v1/services/{name}/reals/{key}", methods{"GET": s.getReal, "PUT": s.updateReal, "DELETE": s.deleteReal})
	s.handle("/v1/vips", methods{"GET": s.listVIPs, "POST": s.createVIP})
	s.handle("/v1/vips/{addr}", methods{"GET": s.getVIP, "PUT": s.updateVIP, "DELETE": s.deleteVIP})
	s.handle("/v1/settings", methods{"GET": s.getSettings, "PUT": s.updateSettings})
	s.handle("/v1/cluster/peers", methods{"GET": s.getPeers})
	s.handle("/v1/cluster/nodes", methods{"GET": s.listNodes, "POST": s.registerNode})
	s.handle("/v1/cluster/join", methods{"POST": s.join})
	s.handle("/v1/cluster/remove", methods{"POST": s.remove})
	s.handle("/v1/cluster/transfer-leadership", methods{"POST": s.transfer})
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, &wire.Error{Code: model.CodeNotFound, Message: "no such endpoint: " + r.URL.Path})
	})
}

// ---- responses ----

func statusOf(e *wire.Error) int {
	switch e.Code {
	case model.CodeInvalid:
		return http.StatusBadRequest
	case model.CodeNotFound:
		return http.StatusNotFound
	case model.CodeConflict, model.CodeCASMismatch:
		return http.StatusConflict
	case wire.CodeNoLeader, wire.CodeLeadershipLost, wire.CodeStopped:
		return http.StatusServiceUnavailable
	case wire.CodeUnauthorized:
		return http.StatusUnauthorized
	case wire.CodeTooLarge:
		return http.StatusRequestEntityTooLarge
	case wire.CodeMethod:
		return http.StatusMethodNotAllowed
	case wire.CodeUnsupportedMedia:
		return http.StatusUnsupportedMediaType
	case wire.CodeTimeout:
		return http.StatusRequestTimeout
	}
	return http.StatusInternalServerError
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, e *wire.Error) {
	if status == 0 {
		status = statusOf(e)
	}
	writeJSON(w, status, e)
}

func noLeader(format string, args ...any) *wire.Error {
	return &wire.Error{Code: wire.CodeNoLeader, Message: fmt.Sprintf(format, args...)}
}

func badRequest(field, format string, args ...any) *wire.Error {
	return &wire.Error{Code: model.CodeInvalid, Field: field, Message: fmt.Sprintf(format, args...)}
}

// ---- auth ----

func (s *Server) authorize(w http.ResponseWriter, r *http.Request, write bool) bool {
	if !s.cfg.TokenForReads && !(write && s.cfg.TokenForWrites) {
		return true
	}
	if s.cfg.Token != "" {
		scheme, got, ok := strings.Cut(r.Header.Get("Authorization"), " ")
		got = strings.TrimSpace(got)
		if ok && strings.EqualFold(scheme, "Bearer") {
			match := subtle.ConstantTimeCompare([]byte(got), []byte(s.cfg.Token))
			for _, t := range s.cfg.ExtraTokens {
				match |= subtle.ConstantTimeCompare([]byte(got), []byte(t))
			}
			if match == 1 {
				return true
			}
		}
	}
	w.Header().Set("WWW-Authenticate", `Bearer realm="raftlb"`)
	msg := "a valid bearer token is required (Authorization: Bearer <token>; the CLI reads -token or RAFTLB_TOKEN)"
	if s.cfg.Token == "" {
		msg = "this director has no token configured (-token-file), so it accepts no requests that need one"
	}
	writeError(w, http.StatusUnauthorized, &wire.Error{Code: wire.CodeUnauthorized, Message: msg})
	return false
}

// ---- request decoding ----

// readBody reads a bounded request body. A non-empty body must be sent as
// application/json: browsers can send form types and type-less bodies
// cross-origin without a CORS preflight, and a -dev director on loopback
// takes writes without a token.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request) ([]byte, *wire.Error) {
	// The deadline is on the connection: a body still arriving when it
	// passes fails the read, and the connection is closed.
	_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(s.cfg.BodyTimeout))
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.MaxBody))
	if err != nil {
		var mb *http.MaxBytesError
		var ne net.Error
		switch {
		case errors.As(err, &mb):
			return nil, &wire.Error{Code: wire.CodeTooLarge, Message: fmt.Sprintf("request body is larger than %d bytes (raftlb agent -api-max-body)", s.cfg.MaxBody)}
		case errors.As(err, &ne) && ne.Timeout():
			return nil, &wire.Error{Code: wire.CodeTimeout, Message: fmt.Sprintf("the request body did not arrive within %v", s.cfg.BodyTimeout)}
		}
		return nil, badRequest("body", "cannot read: %v", err)
	}
	if len(b) > 0 {
		ct := r.Header.Get("Content-Type")
		if mt, _, _ := strings.Cut(ct, ";"); strings.TrimSpace(strings.ToLower(mt)) != "application/json" {
			return nil, &wire.Error{Code: wire.CodeUnsupportedMedia, Field: "Content-Type",
				Message: fmt.Sprintf("%q: request bodies must be sent as application/json (curl: -H 'Content-Type: application/json')", ct)}
		}
	}
	return b, nil
}

// decodeStrict decodes one JSON object into v, refusing unknown fields and
// trailing data, and names the offending field in its error.
func decodeStrict(body []byte, v any) *wire.Error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var te *json.UnmarshalTypeError
		var se *json.SyntaxError
		switch {
		case errors.Is(err, io.EOF):
			return badRequest("body", "empty: a JSON object is required")
		case errors.As(err, &te):
			return badRequest(jsonPath(te.Field), "must be a JSON %s, not %s", te.Type, te.Value)
		case errors.As(err, &se):
			return badRequest("body", "not valid JSON at byte %d: %v", se.Offset, err)
		}
		if f, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
			name := strings.Trim(f, `"`)
			return badRequest(keyPath(body, name), "unknown field")
		}
		return badRequest("body", "%v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return badRequest("body", "unexpected data after the JSON object")
	}
	return nil
}

// jsonPath turns the path encoding/json reports in an UnmarshalTypeError
// into the field's JSON spelling: it drops the Go names of embedded structs
// ("ServiceSpec.port" → "port"; every JSON name raftlb uses is lower case, Go
// type names are not), and names the whole body when the path is empty (the
// body is not a JSON object).
func jsonPath(goPath string) string {
	var parts []string
	for p := range strings.SplitSeq(goPath, ".") {
		if p == "" || unicode.IsUpper([]rune(p)[0]) {
			continue
		}
		parts = append(parts, p)
	}
	if len(parts) == 0 {
		return "body"
	}
	return strings.Join(parts, ".")
}

// keyPath finds where name occurs as an object key in body and returns its
// path ("sync.bogus", "reals[1].bogus"); json's unknown-field error carries
// only the name. If the name occurs more than once, the first is reported.
func keyPath(body []byte, name string) string {
	var v any
	if json.Unmarshal(body, &v) != nil {
		return name
	}
	var walk func(v any, path string) (string, bool)
	walk = func(v any, path string) (string, bool) {
		join := func(k string) string {
			if path == "" {
				return k
			}
			return path + "." + k
		}
		switch x := v.(type) {
		case map[string]any:
			if _, ok := x[name]; ok {
				return join(name), true
			}
			for _, k := range slices.Sorted(maps.Keys(x)) {
				if p, ok := walk(x[k], join(k)); ok {
					return p, true
				}
			}
		case []any:
			for i, e := range x {
				if p, ok := walk(e, fmt.Sprintf("%s[%d]", path, i)); ok {
					return p, true
				}
			}
		}
		return "", false
	}
	if p, ok := walk(v, ""); ok {
		return p
	}
	return name
}

// casParam reads ?cas=N (N ≥ 1); 0 means not given.
func casParam(r *http.Request) (uint64, *wire.Error) {
	q := r.URL.Query()
	if !q.Has("cas") {
		return 0, nil
	}
	v := q.Get("cas")
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil || n == 0 {
		return 0, badRequest("cas", "%q is not a modify_index (a whole number ≥ 1)", v)
	}
	return n, nil
}

// ---- the write path ----

type prepareFunc func(r *http.Request, body []byte) (func() (*wire.WriteResponse, *wire.Error), *wire.Error)

// write runs one write of replicated data: prepare validates the request on
// this director and returns the action to run on the leader; if this
// director is not the leader, the request is forwarded there instead and
// answered once this director has applied it too (read-your-writes).
func (s *Server) write(w http.ResponseWriter, r *http.Request, okStatus int, prepare prepareFunc) {
	s.writeOpts(w, r, okStatus, true, prepare)
}

// membershipWrite is write for raft membership operations. A forwarded one
// does not wait to be applied here: after a remove, this director may never
// apply another entry.
func (s *Server) membershipWrite(w http.ResponseWriter, r *http.Request, prepare prepareFunc) {
	s.writeOpts(w, r, http.StatusOK, false, prepare)
}

func (s *Server) writeOpts(w http.ResponseWriter, r *http.Request, okStatus int, readYourWrites bool, prepare prepareFunc) {
	if !s.authorize(w, r, true) || s.refuseStopped(w) {
		return
	}
	body, e := s.readBody(w, r)
	if e != nil {
		writeError(w, 0, e)
		return
	}
	do, e := prepare(r, body)
	if e != nil {
		writeError(w, 0, e)
		return
	}
	if !s.cfg.Raft.IsLeader() {
		s.forward(w, r, body, readYourWrites)
		return
	}
	resp, e := do()
	if e != nil {
		writeError(w, 0, e)
		return
	}
	w.Header().Set(wire.HeaderIndex, strconv.FormatUint(resp.Index, 10))
	writeJSON(w, okStatus, resp)
}

// apply commits cmd through raft and turns the FSM's result into a response.
func (s *Server) apply(cmd fsm.Command) (*wire.WriteResponse, *wire.Error) {
	res, err := s.cfg.FSM.Commit(s.cfg.Raft, cmd, s.cfg.ApplyTimeout, s.cfg.MaxEntry)
	var big *fsm.EntryTooLargeError
	switch {
	case errors.As(err, &big):
		return nil, &wire.Error{Code: wire.CodeTooLarge, Message: big.Error() + " (raftlb agent -api-max-entry): split it"}
	case errors.Is(err, cluster.ErrNotLeader):
		return nil, &wire.Error{Code: wire.CodeLeadershipLost, Message: fmt.Sprintf("leadership changed while the write was in flight; it may or may not have been applied: read, then retry (%v)", err)}
	case err != nil:
		return nil, &wire.Error{Code: model.CodeInternal, Message: "raft apply: " + err.Error()}
	case res.Err != nil:
		return nil, res.Err
	}
	idx := res.Index
	out := &wire.WriteResponse{Index: idx}
	switch o := res.Object.(type) {
	case model.Service:
		out.Service = &o
	case model.RealServer:
		out.Real = &o
	case model.VIP:
		out.VIP = &o
	case model.Settings:
		out.Settings = &o
	case model.Node:
		out.Node = &o
	}
	return out, nil
}

func (s *Server) applyFn(cmd fsm.Command) (func() (*wire.WriteResponse, *wire.Error), *wire.Error) {
	return func() (*wire.WriteResponse, *wire.Error) { return s.apply(cmd) }, nil
}

// forwardCatchUp bounds how long a request waits for this director to
// replay the log far enough to know the leader's API address.
const forwardCatchUp = 2 * time.Second

// forward relays r to the leader's API and copies its answer back. With
// waitApplied, a successful write is answered only once this director has
// applied it.
func (s *Server) forward(w http.ResponseWriter, r *http.Request, body []byte, waitApplied bool) {
	if by := r.Header.Get(wire.HeaderForwardedBy); by != "" {
		writeError(w, 0, noLeader("request forwarded by %s reached a director that is not the leader (leadership is moving): retry", by))
		return
	}
	_, leaderID := s.cfg.Raft.Leader()
	if leaderID == "" {
		writeError(w, 0, noLeader("no leader is known right now (election in progress or no quorum): retry"))
		return
	}
	node, ok := s.cfg.FSM.Node(leaderID)
	if !ok {
		// A director that just restarted knows the leader from its first
		// heartbeat before it has replayed the entry that registered it.
		commit := s.cfg.Raft.Status().CommitIndex
		ctx, cancel := context.WithTimeout(r.Context(), forwardCatchUp)
		err := s.waitApplied(ctx, commit)
		cancel()
		if node, ok = s.cfg.FSM.Node(leaderID); !ok {
			msg := fmt.Sprintf("leader %s has not registered its API address yet: retry", leaderID)
			if err != nil {
				msg = fmt.Sprintf("this director is still catching up (applied %d of %d) and does not know leader %s's API address yet: retry",
					s.cfg.FSM.Index(), commit, leaderID)
			}
			writeError(w, 0, noLeader("%s", msg))
			return
		}
	}
	if host, _, _ := net.SplitHostPort(node.APIAddr); node.APIScheme != "https" && !s.cfg.Insecure && !trust.IsLoopback(host) {
		writeError(w, 0, noLeader("leader %s registered a plain-HTTP API at %s: this director does not send tokens in cleartext "+
			"(run every director with TLS, or all of them with -insecure)", leaderID, node.APIAddr))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.ApplyTimeout+5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, r.Method, node.APIScheme+"://"+node.APIAddr+r.URL.RequestURI(), bytes.NewReader(body))
	if err != nil {
		writeError(w, 0, &wire.Error{Code: model.CodeInternal, Message: err.Error()})
		return
	}
	for _, h := range []string{"Authorization", "Content-Type"} {
		if v := r.Header.Get(h); v != "" {
			req.Header.Set(h, v)
		}
	}
	req.Header.Set(wire.HeaderForwardedBy, s.cfg.Raft.Status().ID)
	resp, err := s.fwd.Do(req)
	if err != nil {
		var op *net.OpError
		if errors.As(err, &op) && op.Op == "dial" {
			writeError(w, 0, noLeader("cannot reach leader %s at %s: %v", leaderID, node.APIAddr, err))
		} else {
			writeError(w, 0, &wire.Error{Code: wire.CodeLeadershipLost, Message: fmt.Sprintf("lost the connection to leader %s mid-request; the write may or may not have been applied: %v", leaderID, err)})
		}
		return
	}
	defer resp.Body.Close()
	// Read-your-writes through this director: before answering a forwarded
	// write, wait until the local FSM has applied it, so a read sent here
	// next sees it.
	if waitApplied && resp.StatusCode < 300 {
		if idx, err := strconv.ParseUint(resp.Header.Get(wire.HeaderIndex), 10, 64); err == nil {
			if err := s.waitApplied(ctx, idx); err != nil {
				s.cfg.Log.Warn("forwarded write committed but not yet applied here", "index", idx, "err", err)
			}
		}
	}
	for _, h := range []string{"Content-Type", wire.HeaderIndex, "WWW-Authenticate", "Allow"} {
		if v := resp.Header.Get(h); v != "" {
			w.Header().Set(h, v)
		}
	}
	w.WriteHeader(resp.StatusCode)
	_, _ = io.Copy(w, resp.Body)
}

// waitApplied waits until the FSM on this director has applied idx, the
// index of a data write (an FSM command). Raft's applied index is no
// substitute: hashicorp/raft advances it when it hands entries to the FSM
// goroutine, before they are applied, and a read in that window missed the
// write (seen under load in TestThreeDirectors).
func (s *Server) waitApplied(ctx context.Context, idx uint64) error {
	for {
		changed := s.cfg.FSM.Changed() // closed at the next Apply or Restore
		if s.cfg.FSM.Index() >= idx {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-changed:
		}
	}
}

// refuseStopped answers 503 stopped when this director's FSM stopped on a
// damaged log entry: its state will never catch up, so it serves neither
// reads (they would be stale forever) nor writes.
func (s *Server) refuseStopped(w http.ResponseWriter) bool {
	st := s.cfg.Stopped()
	if st == nil {
		return false
	}
	writeError(w, 0, &wire.Error{Code: wire.CodeStopped, Message: st.Reason + ": " + st.Recovery})
	return true
}

// StoppedBy describes an FSM failure (nil: none).
func StoppedBy(fl *fsm.Failure) *wire.Stopped {
	if fl == nil {
		return nil
	}
	return &wire.Stopped{Reason: fl.Error(), Index: fl.Index, Recovery: fsm.Recovery}
}

// ---- the read path ----

// read answers a read from the local FSM. With ?consistent=1 the answer
// comes from the leader after a raft barrier, so it reflects every write
// committed before the request.
func (s *Server) read(w http.ResponseWriter, r *http.Request, get func() (any, *wire.Error)) {
	if !s.authorize(w, r, false) || (r.URL.Path != "/v1/status" && s.refuseStopped(w)) {
		return
	}
	if c := r.URL.Query().Get("consistent"); c != "" && c != "0" && c != "false" {
		if !s.cfg.Raft.IsLeader() {
			s.forward(w, r, nil, false)
			return
		}
		if err := s.cfg.Raft.Barrier(s.cfg.ApplyTimeout); err != nil {
			writeError(w, 0, noLeader("cannot confirm leadership for a consistent read: %v", err))
			return
		}
	}
	idx := s.cfg.FSM.Index()
	v, e := get()
	if e != nil {
		writeError(w, 0, e)
		return
	}
	w.Header().Set(wire.HeaderIndex, strconv.FormatUint(idx, 10))
	writeJSON(w, http.StatusOK, v)
}

// ---- health ----

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, wire.Ready{Ready: true})
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	st := s.cfg.Raft.Status()
	in := readyInputs{Stopped: s.cfg.Stopped(), LeaderID: st.LeaderID, Commit: st.CommitIndex,
		Applied: max(st.AppliedIndex, s.cfg.FSM.Index()), MaxLag: s.cfg.ReadyMaxLag, MaxDelay: s.cfg.ReadyMaxDelay}
	in.CommitBefore, in.HaveBefore = s.commits.observe(time.Now(), st.CommitIndex, in.MaxDelay)
	if ok, reason := decideReady(in); !ok {
		writeJSON(w, http.StatusServiceUnavailable, wire.Ready{Reason: reason})
		return
	}
	writeJSON(w, http.StatusOK, wire.Ready{Ready: true})
}

// ---- status and cluster ----

func (s *Server) peers() ([]wire.Peer, *wire.Error) {
	ps, err := s.cfg.Raft.Peers()
	if err != nil {
		return nil, &wire.Error{Code: model.CodeInternal, Message: "raft configuration: " + err.Error()}
	}
	out := make([]wire.Peer, 0, len(ps))
	for _, p := range ps {
		q := wire.Peer{ID: p.ID, Address: p.Address, Suffrage: p.Suffrage, Leader: p.Leader}
		if n, ok := s.cfg.FSM.Node(p.ID); ok {
			q.APIAddr = n.APIAddr
		}
		out = append(out, q)
	}
	return out, nil
}

func (s *Server) getStatus(w http.ResponseWriter, r *http.Request) {
	s.read(w, r, func() (any, *wire.Error) {
		st := s.cfg.Raft.Status()
		// Raft's applied index covers no-ops but is set around the hand-off
		// to the FSM goroutine, so for an instant it can trail a write the
		// FSM has already applied (and answered); report the larger, so
		// applied_index never trails an index a write returned.
		out := wire.Status{ClusterID: s.cfg.FSM.ClusterID(), NodeID: st.ID, RaftAddr: st.Addr, Role: st.State, LeaderID: st.LeaderID, LeaderAddr: st.LeaderAddr,
			Term: st.Term, CommitIndex: st.CommitIndex, AppliedIndex: max(st.AppliedIndex, s.cfg.FSM.Index()),
			TimingProfile: st.Profile, Version: s.cfg.Version, Stopped: s.cfg.Stopped(), Security: s.cfg.Security}
		if s.cfg.Dataplane != nil {
			out.Dataplane = s.cfg.Dataplane()
		}
		if s.cfg.Leadership != nil {
			out.Leadership = s.cfg.Leadership()
		}
		if s.cfg.VIPs != nil {
			out.VIPs = s.cfg.VIPs()
		}
		if s.cfg.Gossip != nil {
			out.Gossip = s.cfg.Gossip()
		}
		if s.cfg.HealthStats != nil {
			out.Health = s.cfg.HealthStats()
		}
		if !st.LastContact.IsZero() && st.State != "leader" {
			lc := st.LastContact.UTC()
			out.LastContact = &lc
		}
		ps, e := s.peers()
		if e != nil {
			return nil, e
		}
		out.Peers = ps
		return out, nil
	})
}

func (s *Server) getPeers(w http.ResponseWriter, r *http.Request) {
	s.read(w, r, func() (any, *wire.Error) { return s.peers() })
}

func (s *Server) listNodes(w http.ResponseWriter, r *http.Request) {
	s.read(w, r, func() (any, *wire.Error) { return s.cfg.FSM.Nodes(), nil })
}

func (s *Server) registerNode(w http.ResponseWriter, r *http.Request) {
	s.write(w, r, http.StatusOK, func(r *http.Request, body []byte) (func() (*wire.WriteResponse, *wire.Error), *wire.Error) {
		var n model.Node
		if e := decodeStrict(body, &n); e != nil {
			return nil, e
		}
		n, err := model.NormalizeNode(n)
		if err != nil {
			return nil, model.AsError(err)
		}
		return s.applyFn(&fsm.RegisterNode{Node: n})
	})
}

func checkRaftAddr(field, a string) *wire.Error {
	host, port, err := net.SplitHostPort(a)
	if err != nil || host == "" {
		return badRequest(field, "%q is not host:port", a)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return badRequest(field, "%q: port must be 1-65535", a)
	}
	if ip, err := netip.ParseAddr(host); err == nil && ip.IsUnspecified() {
		return badRequest(field, "%q: an unspecified address cannot be dialled", a)
	}
	return nil
}

func clusterErr(field, id string, err error) *wire.Error {
	switch {
	case errors.Is(err, cluster.ErrNotLeader):
		return &wire.Error{Code: wire.CodeLeadershipLost, Message: fmt.Sprintf("leadership changed mid-operation: check, then retry (%v)", err)}
	case errors.Is(err, cluster.ErrUnknownPeer):
		return &wire.Error{Code: model.CodeNotFound, Field: field, Message: fmt.Sprintf("%q is not a member of the cluster", id)}
	case errors.Is(err, cluster.ErrConflict):
		return &wire.Error{Code: model.CodeConflict, Field: field, Message: err.Error()}
	}
	return &wire.Error{Code: model.CodeInternal, Message: err.Error()}
}

func (s *Server) join(w http.ResponseWriter, r *http.Request) {
	s.membershipWrite(w, r, func(r *http.Request, body []byte) (func() (*wire.WriteResponse, *wire.Error), *wire.Error) {
		var j wire.JoinRequest
		if e := decodeStrict(body, &j); e != nil {
			return nil, e
		}
		if !model.ValidName(j.ID) {
			return nil, badRequest("id", "%q is not a valid node id", j.ID)
		}
		if e := checkRaftAddr("address", j.Address); e != nil {
			return nil, e
		}
		var reg *fsm.RegisterNode
		if j.APIAddr != "" {
			n, err := model.NormalizeNode(model.Node{ID: j.ID, RaftAddr: j.Address, APIAddr: j.APIAddr, APIScheme: j.APIScheme})
			if err != nil {
				return nil, model.AsError(err)
			}
			reg = &fsm.RegisterNode{Node: n}
		}
		return func() (*wire.WriteResponse, *wire.Error) {
			if err := s.cfg.Raft.AddVoter(j.ID, j.Address); err != nil {
				return nil, clusterErr("id", j.ID, err)
			}
			if reg != nil {
				return s.apply(reg)
			}
			return &wire.WriteResponse{Index: s.cfg.Raft.Status().LastIndex}, nil
		}, nil
	})
}

func (s *Server) remove(w http.ResponseWriter, r *http.Request) {
	s.membershipWrite(w, r, func(r *http.Request, body []byte) (func() (*wire.WriteResponse, *wire.Error), *wire.Error) {
		var q wire.RemoveRequest
		if e := decodeStrict(body, &q); e != nil {
			return nil, e
		}
		if !model.ValidName(q.ID) {
			return nil, badRequest("id", "%q is not a valid node id", q.ID)
		}
		return func() (*wire.WriteResponse, *wire.Error) {
			known, voters := false, 0
			if ps, err := s.cfg.Raft.Peers(); err == nil {
				for _, p := range ps {
					known = known || p.ID == q.ID
					if p.Suffrage == "voter" {
						voters++
					}
				}
			}
			if !known {
				return nil, clusterErr("id", q.ID, cluster.ErrUnknownPeer)
			}
			if voters <= 1 {
				return nil, &wire.Error{Code: model.CodeConflict, Field: "id", Message: fmt.Sprintf(
					"%q is the cluster's last voter: a cluster cannot remove its last member (stop the director instead, or add another voter first)", q.ID)}
			}
			// Forget its API address first: once the leader removes itself it
			// can no longer write.
			if _, ok := s.cfg.FSM.Node(q.ID); ok {
				if _, e := s.apply(&fsm.DeregisterNode{ID: q.ID}); e != nil {
					return nil, e
				}
			}
			if err := s.cfg.Raft.RemoveServer(q.ID); err != nil {
				return nil, clusterErr("id", q.ID, err)
			}
			return &wire.WriteResponse{Index: s.cfg.Raft.Status().LastIndex}, nil
		}, nil
	})
}

func (s *Server) transfer(w http.ResponseWriter, r *http.Request) {
	s.membershipWrite(w, r, func(r *http.Request, body []byte) (func() (*wire.WriteResponse, *wire.Error), *wire.Error) {
		var q wire.TransferRequest
		if len(bytes.TrimSpace(body)) > 0 {
			if e := decodeStrict(body, &q); e != nil {
				return nil, e
			}
		}
		if q.ID != "" && !model.ValidName(q.ID) {
			return nil, badRequest("id", "%q is not a valid node id", q.ID)
		}
		return func() (*wire.WriteResponse, *wire.Error) {
			if err := s.cfg.Raft.TransferLeadership(q.ID); err != nil {
				return nil, clusterErr("id", q.ID, err)
			}
			return &wire.WriteResponse{Index: s.cfg.Raft.Status().LastIndex}, nil
		}, nil
	})
}
