package cluster

import (
	"fmt"
	"strings"
	"time"
)

// Profile is a named set of Raft timing parameters.
//
// The profile trades failover speed against tolerance of stalls:
//
//   - "lan" (the default) uses a 300ms heartbeat/election timeout and leader
//     lease. A dead leader is replaced after about 0.35 s (prompt elections,
//     election.go) and the VIPs move 154 ms later; a leader that is starved
//     of CPU, paused or cut off for less than ~0.3 s keeps its leadership.
//   - "fast" uses 100ms and fails over about 3x sooner, but a leader that is
//     starved of CPU, paused (GC, VM steal, swap) or on a congested link for
//     more than ~100ms loses leadership (a false failover: the VIPs move,
//     safely, for nothing). Use it only on dedicated, lightly loaded hosts on
//     a quiet network.
//
// A Profile is a plain value and safe to copy.
type Profile struct {
	// Name identifies the profile in logs and Status.
	Name string
	// HeartbeatTimeout is how long a follower waits without contact from the
	// leader before it starts an election.
	HeartbeatTimeout time.Duration
	// ElectionTimeout is how long a candidate waits before restarting an
	// election. Must be >= HeartbeatTimeout.
	ElectionTimeout time.Duration
	// LeaderLeaseTimeout is how long a leader keeps leading without
	// contacting a quorum. Must be < HeartbeatTimeout (prompt elections lower
	// the heartbeat timeout by 1 ns for an instant, and raft refuses a lease
	// above it). It cannot be changed
	// on a running node (see Node.SetProfile). It is raft's own lease, not
	// the VIP lease (lease.go): it bounds the leader stall the cluster
	// survives, since a leader that resumes after a longer stall finds its
	// quorum contacts stale and steps down; the built-in profiles set it to
	// 9/10 of the heartbeat timeout, close to the stall after which the
	// followers elect anyway.
	LeaderLeaseTimeout time.Duration
	// CommitTimeout bounds how long the leader waits before sending an
	// AppendEntries heartbeat that carries the latest commit index. It cannot
	// be changed on a running node.
	CommitTimeout time.Duration
}

// profileLAN is the default profile ("lan"); it tolerates ~0.3 s stalls. A
// failover costs the heartbeat timeout plus a slot or two of prompt
// elections (30 ms each, election.go) plus the VIP claim delay (154 ms):
// docs/benchmarks.md, bench:failover, has the measured gaps.
var profileLAN = Profile{
	Name:               "lan",
	HeartbeatTimeout:   300 * time.Millisecond,
	ElectionTimeout:    300 * time.Millisecond,
	LeaderLeaseTimeout: 270 * time.Millisecond,
	// Followers learn a new commit index on the leader's next AppendEntries,
	// sent after 1-2x CommitTimeout: it bounds how soon every director sees
	// a change. 20 ms put the write->applied-everywhere p50 at 35 ms; 5 ms
	// costs ~130 empty RPCs/s per follower when idle (docs/benchmarks.md).
	CommitTimeout: 5 * time.Millisecond,
}

// profileFast ("fast") fails over ~3x sooner than profileLAN, at the price
// of false failovers whenever the leader stalls for more than ~100ms.
var profileFast = Profile{
	Name:               "fast",
	HeartbeatTimeout:   100 * time.Millisecond,
	ElectionTimeout:    100 * time.Millisecond,
	LeaderLeaseTimeout: 90 * time.Millisecond,
	CommitTimeout:      5 * time.Millisecond,
}

var profiles = []Profile{profileLAN, profileFast}

// ProfileNames returns the names of the built-in profiles, default first.
func ProfileNames() []string {
	names := make([]string, len(profiles))
	for i, p := range profiles {
		names[i] = p.Name
	}
	return names
}

// ProfileByName returns the built-in profile with the given name. The empty
// name selects the default ("lan"). Unknown names yield an error listing the
// valid names.
func ProfileByName(name string) (Profile, error) {
	if name == "" {
		return profileLAN, nil
	}
	for _, p := range profiles {
		if p.Name == name {
			return p, nil
		}
	}
	return Profile{}, fmt.Errorf("cluster: unknown raft profile %q (valid: %s)", name, strings.Join(ProfileNames(), ", "))
}

// validate checks the invariants hashicorp/raft enforces, with errors that
// name the offending field.
func (p Profile) validate() error {
	const minTimeout = 5 * time.Millisecond
	switch {
	case p.HeartbeatTimeout < minTimeout:
		return fmt.Errorf("profile %q: HeartbeatTimeout %s must be >= %s", p.Name, p.HeartbeatTimeout, minTimeout)
	case p.ElectionTimeout < p.HeartbeatTimeout:
		return fmt.Errorf("profile %q: ElectionTimeout %s must be >= HeartbeatTimeout %s", p.Name, p.ElectionTimeout, p.HeartbeatTimeout)
	case p.LeaderLeaseTimeout < minTimeout:
		return fmt.Errorf("profile %q: LeaderLeaseTimeout %s must be >= %s", p.Name, p.LeaderLeaseTimeout, minTimeout)
	case p.LeaderLeaseTimeout >= p.HeartbeatTimeout:
		return fmt.Errorf("profile %q: LeaderLeaseTimeout %s must be below HeartbeatTimeout %s (prompt elections lower the heartbeat timeout for an instant)", p.Name, p.LeaderLeaseTimeout, p.HeartbeatTimeout)
	case p.CommitTimeout < time.Millisecond:
		return fmt.Errorf("profile %q: CommitTimeout %s must be >= 1ms", p.Name, p.CommitTimeout)
	}
	return nil
}
