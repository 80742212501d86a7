// Package api is raftlb's REST/JSON admin API under /v1: the server every
// director runs. Its wire types are in api/wire, the Go client the CLI uses
// in api/client.
//
// Reads are answered from the local FSM; ?consistent=1 confirms leadership
// first (on the leader, forwarding there if needed). Writes are validated
// locally, forwarded to the leader when this director is not it, and answered
// with the raft index they were committed at. Errors are always JSON
// {code, message, field}.
package api
