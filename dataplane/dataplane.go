// Package dataplane turns the replicated state into kernel state.
//
// A Backend programs one kind of kernel load balancer (IPVS in
// dataplane/ipvs, nftables in dataplane/nft). The Reconciler owns the only
// goroutine that calls a Backend: it derives the desired Table from the FSM,
// keeps a cache of what it programmed, and hands the Backend only the
// difference. It reads the kernel once at start (Dump) and again on each
// periodic resync, to repair drift made behind its back.
//
// VIPs are not here: only the leader holds them (dataplane/vip, driven by the
// cluster's leadership).
package dataplane

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Service is a virtual service as a backend programs it. Exactly one of
// (Protocol, Address, Port) or Fwmark identifies it; Key is its identity.
type Service struct {
	Protocol  string     // tcp | udp | sctp; "" for a fwmark service
	Address   netip.Addr // invalid for a fwmark service
	Port      uint16     // 0 = all ports (persistent services only)
	Fwmark    uint32
	Family    string   // inet | inet6
	Scheduler string   // IPVS name: rr, wrr, lc, wlc, lblc, lblcr, dh, sh, sed, nq, mh, fo, ovf, twos
	Flags     []string // sorted subset of sh-fallback, sh-port, mh-fallback, mh-port, ops
	Timeout   uint32   // persistence in seconds; 0 = not persistent
	Netmask   int      // persistence granularity as a prefix length; 0 = the whole address
}

// Key is the service's identity: "tcp/192.0.2.1:80", "udp/[2001:db8::1]:53",
// "fwmark/inet/7" (the same format as model.ServiceSpec.Key).
func (s Service) Key() string {
	if s.Fwmark != 0 {
		return "fwmark/" + s.Family + "/" + strconv.FormatUint(uint64(s.Fwmark), 10)
	}
	return s.Protocol + "/" + netip.AddrPortFrom(s.Address, s.Port).String()
}

// Equal reports whether two services would be programmed identically.
func (s Service) Equal(o Service) bool {
	return s.Protocol == o.Protocol && s.Address == o.Address && s.Port == o.Port && s.Fwmark == o.Fwmark &&
		s.Family == o.Family && s.Scheduler == o.Scheduler && strings.Join(s.Flags, ",") == strings.Join(o.Flags, ",") &&
		s.Timeout == o.Timeout && s.Netmask == o.Netmask
}

// Destination is one real server of a service as a backend programs it.
type Destination struct {
	Address        netip.Addr
	Port           uint16
	Weight         int    // 0 = no new connections (drain)
	Forward        string // nat | dr | tun
	UpperThreshold uint32 // 0 = none
	LowerThreshold uint32
}

// Key is the destination's identity within its service: "addr:port".
func (d Destination) Key() string { return netip.AddrPortFrom(d.Address, d.Port).String() }

// VirtualService is a service with its destinations, keyed by
// Destination.Key.
type VirtualService struct {
	Service
	Dests map[string]Destination
}

// Table is a whole dataplane: virtual services keyed by Service.Key.
type Table map[string]VirtualService

// Timeouts are the IPVS connection timeouts in seconds; 0 leaves one alone.
type Timeouts struct {
	TCP, TCPFin, UDP int
}

// Op is the kind of a Change.
type Op int

// The operations, in the order the reconciler emits them within a batch:
// deletions of destinations, then of services, then additions and updates of
// services, then of destinations.
const (
	DeleteDest Op = iota
	DeleteService
	AddService
	UpdateService
	AddDest
	UpdateDest
)

var opNames = [...]string{"delete-dest", "delete-service", "add-service", "update-service", "add-dest", "update-dest"}

func (o Op) String() string {
	if int(o) < len(opNames) {
		return opNames[o]
	}
	return "op(" + strconv.Itoa(int(o)) + ")"
}

// Change is one kernel operation. Dest is set for the *Dest operations.
type Change struct {
	Op      Op
	Service Service
	Dest    Destination
}

func (c Change) String() string {
	switch c.Op {
	case AddDest, UpdateDest, DeleteDest:
		return fmt.Sprintf("%s %s %s", c.Op, c.Service.Key(), c.Dest.Key())
	}
	return fmt.Sprintf("%s %s", c.Op, c.Service.Key())
}

// ChangeError is a change a backend could not make.
type ChangeError struct {
	Change Change
	Err    error
}

func (e ChangeError) Error() string { return e.Change.String() + ": " + e.Err.Error() }

// Backend programs one kind of kernel dataplane.
//
// Threading: only the Reconciler's goroutine calls a Backend's methods.
type Backend interface {
	// Name is "ipvs" or "nft".
	Name() string
	// Dump reads every service and destination the kernel has, raftlb's
	// or not. It is the only full read: the reconciler calls it at start
	// and at each periodic resync, never per change.
	Dump() (Table, error)
	// Apply makes the changes in order and returns those that failed.
	// nft applies the batch in one transaction; if the kernel refuses it,
	// each service is retried alone and only the changes of services that
	// still fail are returned.
	//
	// programmed is the reconciler's cache: what it believes the kernel
	// holds before these changes, the only copy of it. A backend reads it
	// (nft: the destinations a changed service keeps, since it rewrites
	// the service whole; IPVS: those of a service it must recreate) and
	// neither changes it nor keeps it past the call.
	//
	// Every change is idempotent, whatever the kernel holds (as the
	// operations of Cilium's reconciler are): adding what exists updates
	// it, updating what is absent creates it, deleting what is absent
	// succeeds. A backend that finds a changed service absent when the
	// cache has it (deleted behind raftlb's back) recreates it with the
	// cached destinations, and one that finds it present when the cache
	// has not (made by someone else, or by an earlier run) makes it hold
	// only what the batch gives it: the change converges at once, not at
	// the next resync. A change is returned as failed only when the
	// kernel refuses what it asks for.
	Apply(programmed Table, changes []Change) []ChangeError
	// SetTimeouts sets the connection timeouts (IPVS only; others ignore).
	SetTimeouts(Timeouts) error
	// Close releases the backend's sockets. It does not remove what was
	// programmed: a restarting director keeps forwarding.
	Close() error
}

// SyncDaemon is an IPVS connection-synchronisation daemon.
type SyncDaemon struct {
	Role       string // master | backup
	SyncID     int
	Interface  string
	McastGroup netip.Addr // zero = kernel default (224.0.0.81)
	McastPort  int        // 0 = kernel default (8848)
	McastTTL   int        // 0 = kernel default (1)
	MaxLen     int        // 0 = kernel default
}

// SyncBackend is implemented by backends that have a connection-sync
// daemon (IPVS).
type SyncBackend interface {
	SyncDaemons() ([]SyncDaemon, error)
	StartSyncDaemon(SyncDaemon) error
	StopSyncDaemon(role string) error
}

// ErrUnsupported reports a kernel that lacks what a backend needs (for
// example no IPVS); the message says what is missing.
var ErrUnsupported = errors.New("dataplane not supported by this kernel")

// Capabilities describe what a backend can express, for validation.
type Capabilities struct {
	Schedulers  []string // supported IPVS scheduler names
	Flags       []string // supported scheduler flags
	Forwards    []string // supported forwarding methods
	Persistence bool
	Fwmark      bool
	Thresholds  bool
}
