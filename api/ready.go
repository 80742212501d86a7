package api

import (
	"fmt"
	"sync"
	"time"

	"github.com/raftlb/raftlb/api/wire"
)

// Readiness (GET /readyz): a director is ready to take API traffic when it
// serves (not Stopped), knows a leader, and its FSM keeps up with what the
// leader committed. "Keeps up" has a bound, so that a busy director is not
// dropped by a load balancer for the few entries always in flight under
// steady writes: the applied index is within ReadyMaxLag entries of the
// commit index this director knows (from its last leader contact), or it has
// reached the commit index this director knew ReadyMaxDelay ago. A director
// replaying a backlog (restarted, or back from a partition) is not ready
// until one of the two holds.
const (
	ReadyMaxLag   = 256
	ReadyMaxDelay = time.Second
)

// readyInputs is what decideReady looks at.
type readyInputs struct {
	Stopped         *wire.Stopped
	LeaderID        string
	Commit, Applied uint64
	// CommitBefore is the commit index known MaxDelay ago (ok: a sample that
	// old exists).
	CommitBefore uint64
	HaveBefore   bool
	MaxLag       uint64
	MaxDelay     time.Duration
}

// decideReady is the readiness rule; the reason says why not.
func decideReady(in readyInputs) (bool, string) {
	switch {
	case in.Stopped != nil:
		return false, "stopped: " + in.Stopped.Reason
	case in.LeaderID == "":
		return false, "no leader known"
	case in.Applied >= in.Commit || in.Commit-in.Applied <= in.MaxLag:
		return true, ""
	case in.HaveBefore && in.Applied >= in.CommitBefore:
		return true, ""
	}
	return false, fmt.Sprintf("catching up: applied %d of %d (more than %d entries behind, and behind what was committed %v ago)",
		in.Applied, in.Commit, in.MaxLag, in.MaxDelay)
}

// commitHistory remembers the commit index over the last moments, sampled
// when readiness is asked (no timer: a director nobody asks costs nothing).
type commitHistory struct {
	mu      sync.Mutex
	samples []commitSample // oldest first, at most maxSamples
}

type commitSample struct {
	at     time.Time
	commit uint64
}

const maxSamples = 64

// observe records commit at now and returns the newest commit index
// recorded at least delay before now (ok false: none that old).
func (h *commitHistory) observe(now time.Time, commit uint64, delay time.Duration) (before uint64, ok bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, s := range h.samples {
		if now.Sub(s.at) < delay {
			break
		}
		before, ok = s.commit, true
	}
	// Keep one sample per delay/4 at most, and none much older than the
	// one just used.
	if n := len(h.samples); n == 0 || now.Sub(h.samples[n-1].at) >= delay/4 {
		h.samples = append(h.samples, commitSample{at: now, commit: commit})
	}
	for len(h.samples) > 1 && (len(h.samples) > maxSamples || now.Sub(h.samples[1].at) >= delay) {
		h.samples = h.samples[1:]
	}
	return before, ok
}
