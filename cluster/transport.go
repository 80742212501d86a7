package cluster

import (
	"errors"
	"io"
	"syscall"

	"github.com/hashicorp/raft"
)

// voteTransport is hashicorp's NetworkTransport with one change: a vote or
// pre-vote request that fails because the pooled connection it was sent on
// is dead is sent again on another one.
//
// The transport pools outbound connections per peer and never checks them.
// A director that led once keeps connections to the others in its pool
// after it steps down; when one of those peers restarts, its end of them
// is gone, and the next request on one fails with EOF (or a reset) without
// ever reaching the peer. For votes that cost an election: hashicorp asks
// each peer once per term, so a candidate whose pooled connections to the
// restarted peers were dead lost its term and waited an election timeout
// (found by the failover benchmark: a planned handover to such a director
// took 0.6–0.8 s instead of 30 ms, and the next leader, one term later,
// also had to wait the VIP claim delay).
//
// Only votes and pre-votes are resent: both are idempotent (a voter asked
// twice in a term by the same candidate answers the same; a pre-vote
// changes nothing). TimeoutNow is not (a duplicate would start a second
// election), and log replication retries by itself.
type voteTransport struct {
	*raft.NetworkTransport
}

// RequestVote implements raft.Transport.
func (t voteTransport) RequestVote(id raft.ServerID, target raft.ServerAddress, args *raft.RequestVoteRequest, resp *raft.RequestVoteResponse) error {
	return resendOnDeadConn(func() error { return t.NetworkTransport.RequestVote(id, target, args, resp) })
}

// RequestPreVote implements raft.WithPreVote.
func (t voteTransport) RequestPreVote(id raft.ServerID, target raft.ServerAddress, args *raft.RequestPreVoteRequest, resp *raft.RequestPreVoteResponse) error {
	return resendOnDeadConn(func() error { return t.NetworkTransport.RequestPreVote(id, target, args, resp) })
}

// resendOnDeadConn runs rpc until it succeeds, fails otherwise than on a
// dead connection, or has been tried once more than the pool can hold
// (every pooled connection to the peer may be dead; a failed one is
// closed, not returned, so the last try dials afresh).
func resendOnDeadConn(rpc func() error) error {
	var err error
	for range transportMaxPool + 1 {
		if err = rpc(); err == nil || !deadConn(err) {
			return err
		}
	}
	return err
}

// deadConn reports whether err is what a request on a connection the far
// end has closed fails with. A refused dial is not: the peer is down.
func deadConn(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

var (
	_ raft.Transport   = voteTransport{}
	_ raft.WithPreVote = voteTransport{}
	_ raft.WithClose   = voteTransport{}
)
