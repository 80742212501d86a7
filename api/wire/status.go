package wire

import (
	"time"

	"github.com/raftlb/raftlb/model"
)

// The parts of GET /v1/status that a director's subsystems report. They
// mirror the subsystems' own status types field for field (so the JSON is
// what it was when those were sent as they are), converted by the agent:
// the subsystems keep their types, the wire keeps its, and a conversion
// such as wire.VIPStats(vip.Stats{}) stops compiling the day the two
// drift apart.

// LeaseStatus is the VIP lease (docs/fencing.md).
type LeaseStatus struct {
	Holding    bool      `json:"holding"`
	Until      time.Time `json:"until,omitzero"`
	Reason     string    `json:"reason"`
	Duration   string    `json:"duration"`
	ClaimDelay string    `json:"claim_delay"`
	// LastFailover is the last claim's time from leadership won to the VIPs
	// held.
	LastFailover string `json:"last_failover,omitempty"`
	// ClaimedOnRelease: the last claim skipped the claim delay because the
	// previous holder committed its release (planned handover).
	ClaimedOnRelease bool `json:"claimed_on_release,omitempty"`
}

// VIPStatus is the "vips" part: the VIPs this director holds, its lease
// and its announcement counters.
type VIPStatus struct {
	Held  []model.VIP `json:"held"`
	Lease LeaseStatus `json:"lease"`
	Stats VIPStats    `json:"stats"`
}

// VIPStats are the VIP manager's counters.
type VIPStats struct {
	Held            int       `json:"held"`             // VIPs held now
	Added           uint64    `json:"added"`            // addresses added
	Removed         uint64    `json:"removed"`          // addresses removed
	AddrErrors      uint64    `json:"addr_errors"`      // failed adds, removes and kernel reads
	Announced       uint64    `json:"announced"`        // announcements sent
	AnnounceErrors  uint64    `json:"announce_errors"`  // announcements that failed
	AnnounceSkipped uint64    `json:"announce_skipped"` // VIPs on interfaces that cannot announce
	AnnounceGated   uint64    `json:"announce_gated"`   // announcements withheld by the lease or the fence
	Repaired        uint64    `json:"repaired"`         // held VIPs re-added by the refresh pass
	LastError       string    `json:"last_error,omitempty"`
	LastErrorAt     time.Time `json:"last_error_at,omitzero"`
}

// DataplaneStatus is the "dataplane" part: the reconciler of this
// director's kernel tables.
type DataplaneStatus struct {
	Backend        string        `json:"backend"` // ipvs | nft | none
	Services       int           `json:"services"`
	Destinations   int           `json:"destinations"`
	LastSync       time.Time     `json:"last_sync,omitzero"`
	LastResync     time.Time     `json:"last_resync,omitzero"`
	KernelOps      uint64        `json:"kernel_ops"`
	DriftRepairs   uint64        `json:"drift_repairs"`
	Errors         []ObjectError `json:"errors,omitempty"`
	Unmanaged      []string      `json:"unmanaged,omitempty"`
	SyncDaemons    []SyncDaemon  `json:"sync_daemons,omitempty"`
	LastError      string        `json:"last_error,omitempty"`
	ResyncInterval string        `json:"resync_interval,omitempty"`
}

// ObjectError is one kernel object that could not be programmed (retried
// with backoff).
type ObjectError struct {
	Object   string    `json:"object"` // "tcp/192.0.2.1:80" or "tcp/192.0.2.1:80 10.0.0.1:80"
	Op       string    `json:"op"`
	Error    string    `json:"error"`
	Attempts int       `json:"attempts"`
	Since    time.Time `json:"since"`
}

// SyncDaemon is an IPVS connection-sync daemon running on this director.
type SyncDaemon struct {
	Role       string // master | backup
	SyncID     int
	Interface  string
	McastGroup string // "" = kernel default (224.0.0.81)
	McastPort  int    // 0 = kernel default (8848)
	McastTTL   int    // 0 = kernel default (1)
	MaxLen     int    // 0 = kernel default
}

// LeadershipStatus is the "leadership" part: this director's preferences
// and, on the leader, its decision.
type LeadershipStatus struct {
	Priority     int    `json:"priority"`
	PreemptDelay string `json:"preempt_delay,omitempty"`
	NoPreempt    bool   `json:"nopreempt,omitempty"`
	Witness      bool   `json:"witness,omitempty"`
	Fault        string `json:"fault,omitempty"`
	Decision     string `json:"decision,omitempty"`
}

// GossipStats are the gossip endpoint's counters.
type GossipStats struct {
	// Wire bytes: everything memberlist sent and received, after
	// encryption, and their smoothed rates (bytes per second).
	BytesSent, BytesReceived   uint64
	SentPerSec, ReceivedPerSec float64
	// Payload bytes of raftlb's own messages before framing and
	// encryption, and of full states exchanged by push/pull.
	DeltaBytesSent, DeltaBytesReceived uint64
	StateBytesSent, StateBytesReceived uint64

	Published      uint64 // observations published
	StateChanges   uint64 // of which up/down changes or first views
	Coalesced      uint64 // observations that replaced a waiting one
	BatchesSent    uint64
	RecordsSent    uint64
	BatchesAcked   uint64
	BatchesResent  uint64
	AcksSent       uint64
	SendErrors     uint64
	Pending        int // (member, target) observations waiting to be sent
	PendingChanges int // of which up/down changes
	InFlight       int // batches not yet acknowledged

	BatchesReceived uint64
	DeltasApplied   uint64
	StatesMerged    uint64
	BadMessages     uint64 // raftlb messages dropped: garbage, wrong version, oversize
	BadPackets      uint64 // packets and streams memberlist rejected (wrong key, garbage)
	StaleDiscarded  uint64
}

// ProberStats are this director's prober counters.
type ProberStats struct {
	Targets  int
	Workers  int
	InFlight int
	Attempts uint64 // completed check attempts since start, retries included
	// WindowAttempts is the number of attempts completed in the last full
	// window, which ended at WindowEnd: the watchdog counter.
	Window         time.Duration
	WindowAttempts uint64
	WindowEnd      time.Time
	// MaxLag is the longest a due check waited for a worker in the last
	// window.
	MaxLag         time.Duration
	LastCompletion time.Time
	// Stalled: no check completed for far longer than the slowest target's
	// cycle.
	Stalled bool
}
