// Package wire is the admin API's wire format: the types every request and
// answer of /v1 is made of, shared by the server (api), the Go client
// (api/client) and the CLI. It is a leaf beside model: a client that
// imports it gets no raft, bolt, memberlist or checker code.
//
// Write types are apart from the records read back where they differ
// (model.RealSpec is what a writer says of a real server; model.RealServer
// adds what the cluster decides and the indexes).
package wire

import (
	"time"

	"github.com/raftlb/raftlb/model"
)

// Headers.
const (
	// HeaderIndex carries, on every successful /v1 response, the FSM index
	// the answer reflects (reads) or the index a write committed at.
	HeaderIndex = "X-Raftlb-Index"
	// HeaderForwardedBy marks a request one director forwarded to the leader;
	// a forwarded request is never forwarded again.
	HeaderForwardedBy = "X-Raftlb-Forwarded-By"
)

// More error codes, beyond those of package fsm.
const (
	CodeNoLeader         = "no_leader"          // 503: no leader known or reachable; nothing was applied, retrying is safe
	CodeLeadershipLost   = "leadership_lost"    // 503: leadership changed mid-write; it may or may not have been applied
	CodeUnauthorized     = "unauthorized"       // 401: missing or wrong bearer token
	CodeTooLarge         = "too_large"          // 413
	CodeMethod           = "method_not_allowed" // 405
	CodeUnsupportedMedia = "unsupported_media"  // 415
	CodeStopped          = "stopped"            // 503: this director's FSM stopped on a damaged log entry (fsm.Failure)
	CodeTimeout          = "timeout"            // 408: the request body did not arrive in time
)

// Error is the body of every error response.
type Error = model.Error

// WriteResponse is the body of every successful write. Exactly one object
// field is set for creates and updates; none for deletes.
type WriteResponse struct {
	Index    uint64            `json:"index"`
	Service  *model.Service    `json:"service,omitempty"`
	Real     *model.RealServer `json:"real,omitempty"`
	VIP      *model.VIP        `json:"vip,omitempty"`
	Settings *model.Settings   `json:"settings,omitempty"`
	Node     *model.Node       `json:"node,omitempty"`
}

// Status is GET /v1/status.
type Status struct {
	ClusterID     string     `json:"cluster_id,omitempty"` // named by the first leader
	NodeID        string     `json:"node_id"`
	RaftAddr      string     `json:"raft_addr"`
	Role          string     `json:"role"` // leader | follower | candidate | shutdown
	LeaderID      string     `json:"leader_id"`
	LeaderAddr    string     `json:"leader_addr"`
	Term          uint64     `json:"term"`
	CommitIndex   uint64     `json:"commit_index"`
	AppliedIndex  uint64     `json:"applied_index"`
	LastContact   *time.Time `json:"last_contact,omitempty"`
	TimingProfile string     `json:"timing_profile"`
	// Stopped is set when this director stopped serving: it left raft and
	// answers no reads or writes until its data dir is replaced
	// (docs/operations.md, "A damaged data dir").
	Stopped  *Stopped  `json:"stopped,omitempty"`
	Security *Security `json:"security,omitempty"`
	Peers    []Peer    `json:"peers"`
	Version  string    `json:"version"`
	// Dataplane is this director's dataplane reconciler status.
	Dataplane *DataplaneStatus `json:"dataplane,omitempty"`
	// VIPs are the VIPs this director holds, its lease and its
	// announcement counters (absent with -dataplane none).
	VIPs *VIPStatus `json:"vips,omitempty"`
	// Leadership: this director's priority, witness role, tracked-check
	// fault and (on the leader) the leadership decision.
	Leadership *LeadershipStatus `json:"leadership,omitempty"`
	// Gossip is this director's gossip endpoint: address, members with
	// their state, counters.
	Gossip *GossipStatus `json:"gossip,omitempty"`
	// Health is the prober's and the decider's counters.
	Health *HealthStatus `json:"health,omitempty"`
}

// Security is how a director's raft and API are protected.
type Security struct {
	// Insecure: run with -insecure, raft and the API may be plain off
	// loopback (anyone who reaches the raft port can change the state).
	Insecure bool   `json:"insecure,omitempty"`
	Raft     string `json:"raft"` // "mutual TLS (cluster CA)", "mutual TLS (-raft-tls-*)", "plain TCP (loopback)", "plain TCP (-insecure)"
	API      string `json:"api"`  // "HTTPS (cluster CA)", "HTTPS (-api-tls-*)", "HTTP (loopback)", "HTTP (-insecure)"
	// CAFingerprint is the SHA-256 of the cluster CA's public key, derived
	// from the token ('raftlb tls ca' prints the certificate).
	CAFingerprint string `json:"ca_fingerprint,omitempty"`
}

// Stopped says why a director stopped serving: the raft log entry at Index
// is damaged on it (fsm.Failure), or its data dir belongs to another
// cluster.
type Stopped struct {
	Reason   string `json:"reason"`
	Index    uint64 `json:"index,omitempty"`
	Recovery string `json:"recovery"`
}

// Peer is one raft voter with the API address it registered.
type Peer struct {
	ID       string `json:"id"`
	Address  string `json:"address"`
	Suffrage string `json:"suffrage"`
	Leader   bool   `json:"leader"`
	APIAddr  string `json:"api_addr,omitempty"`
}

// JoinRequest is POST /v1/cluster/join: add a director as a voter.
type JoinRequest struct {
	ID        string `json:"id"`
	Address   string `json:"address"` // its raft address
	APIAddr   string `json:"api_addr,omitempty"`
	APIScheme string `json:"api_scheme,omitempty"`
}

// RemoveRequest is POST /v1/cluster/remove.
type RemoveRequest struct {
	ID string `json:"id"`
}

// TransferRequest is POST /v1/cluster/transfer-leadership. An empty ID lets
// raft pick the most up-to-date follower.
type TransferRequest struct {
	ID string `json:"id,omitempty"`
}

// Ready is GET /readyz and /healthz.
type Ready struct {
	Ready  bool   `json:"ready"`
	Reason string `json:"reason,omitempty"`
}
