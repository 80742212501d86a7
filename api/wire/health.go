package wire

import (
	"time"

	"github.com/raftlb/raftlb/model"
)

// HealthReport is GET /v1/health: per real server of every checked service,
// the committed decision and every director's view, as the answering
// director knows them, and the gossip membership. ?service=NAME limits it
// to one service.
type HealthReport struct {
	NodeID string `json:"node_id"` // the answering director
	Leader bool   `json:"leader"`  // it leads, so it is the one deciding
	// Directors are the registered directors and gossip members; live ones
	// are alive in gossip and registered as non-witness directors: only
	// their views count.
	Directors []HealthDirector `json:"directors"`
	Services  []ServiceHealth  `json:"services"`
	Gossip    *GossipStatus    `json:"gossip,omitempty"`
	Prober    *ProberStats     `json:"prober,omitempty"` // nil on a witness
	Decider   DeciderStats     `json:"decider"`
}

// HealthDirector is one director as the health decision sees it.
type HealthDirector struct {
	ID         string `json:"id"`
	Live       bool   `json:"live"`
	Witness    bool   `json:"witness,omitempty"`
	Registered bool   `json:"registered"`            // in the replicated director list
	Gossip     string `json:"gossip"`                // alive | suspect | dead | left | unknown
	GossipAddr string `json:"gossip_addr,omitempty"` // where it gossips
}

// ServiceHealth is one checked service.
type ServiceHealth struct {
	Name   string       `json:"name"`
	Type   string       `json:"type"`   // the check type
	Check  string       `json:"check"`  // model.Check.Hash of its check
	Policy string       `json:"policy"` // majority | any | all
	Spec   *model.Check `json:"spec"`   // the normalised check
	// QuorumLost: the service's healthy weight is below its quorum (the
	// sorry server, if any, serves).
	QuorumLost bool               `json:"quorum_lost,omitempty"`
	Reals      []RealHealthReport `json:"reals"`
}

// RealHealthReport is one real server of a checked service.
type RealHealthReport struct {
	Key    string `json:"key"`    // addr:port in the service
	Target string `json:"target"` // the probe it shares with other services: checked address/spec hash
	State  string `json:"state"`  // administrative: enabled | drain | disabled
	// Decision is the committed one: up, down, or none (never decided:
	// counts as up). Since is the raft index of the transition.
	Decision string `json:"decision"`
	Since    uint64 `json:"since,omitempty"`
	Reason   string `json:"reason,omitempty"`
	// Weight is the decided dynamic weight (absent: the configured one).
	Weight *int           `json:"weight,omitempty"`
	Views  []DirectorView `json:"views"`
}

// DirectorView is one director's latest view of a real server (after its
// rise/fall counts), as gossiped.
type DirectorView struct {
	Director  string  `json:"director"`
	Live      bool    `json:"live"` // counted in the decision
	Up        bool    `json:"up"`
	Err       string  `json:"error,omitempty"` // the last check's error (also while still up)
	LatencyMS float64 `json:"latency_ms"`
	// Weight is the dynamic weight of its last successful check (absent:
	// the configured weight); WeightUnknown: its director cannot tell (an
	// older release), so the view counts for up/down only.
	Weight        *int `json:"weight,omitempty"`
	WeightUnknown bool `json:"weight_unknown,omitempty"`
	// CheckedAt is the time of the last check: only for the answering
	// director's own view (others gossip changes, not every check).
	CheckedAt *time.Time `json:"checked_at,omitempty"`
	// UpdatedAt is when the answering director learned this view (it
	// changed then).
	UpdatedAt *time.Time `json:"updated_at,omitempty"`
}

// DeciderStats are this director's counters as the deciding leader.
type DeciderStats struct {
	Passes      uint64     `json:"passes"`      // evaluations while leading
	Commits     uint64     `json:"commits"`     // SetHealth entries committed
	Transitions uint64     `json:"transitions"` // real-server transitions in them
	Errors      uint64     `json:"errors"`      // failed commits (retried)
	LastPass    *time.Time `json:"last_pass,omitempty"`
	LastError   string     `json:"last_error,omitempty"`
}

// GossipStatus is this director's gossip endpoint: its address, the
// members it knows and its counters.
type GossipStatus struct {
	Addr    string         `json:"addr"`
	Members []GossipMember `json:"members"`
	Stats   GossipStats    `json:"stats"`
}

// GossipMember is one gossip member.
type GossipMember struct {
	Name  string `json:"name"`
	Addr  string `json:"addr"`
	State string `json:"state"` // alive | suspect | dead | left
}

// HealthStatus is the "health" part of /v1/status.
type HealthStatus struct {
	Prober  *ProberStats `json:"prober,omitempty"`
	Decider DeciderStats `json:"decider"`
}
