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
//   - "lan" (the default) uses a 500ms heartbeat/election timeout. A leader
//     failure is detected after roughly 0.5–1s, and a director that is
//     briefly starved of CPU or sits behind a congested link survives stalls
//     of about half a second without triggering an election.
//   - "fast" uses a 100ms heartbeat/election timeout and fails over roughly
//     5x sooner, but a director that is starved of CPU, paused (GC, VM
//     steal, swap) or on a congested link for more than ~100ms triggers a
//     false election, which costs a leadership change and a short write
//     outage. Use it only on dedicated, lightly loaded hosts on a quiet
//     network.
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
	// contacting a quorum. Must be <= HeartbeatTimeout. It cannot be changed
	// on a running node (see Node.SetProfile).
	LeaderLeaseTimeout time.Duration
	// CommitTimeout bounds how long the leader waits before sending an
	// AppendEntries heartbeat that carries the latest commit index. It cannot
	// be changed on a running node.
	CommitTimeout time.Duration
}

// profileLAN is the default profile ("lan"); it tolerates ~0.3 s stalls. A
// failover costs detection (raft: one to two heartbeat timeouts, 0.3-0.6 s)
// plus the election plus the VIP claim delay (154 ms); when the first
// election is refused (a follower still knows the dead leader) another
// election timeout is added: measured median 0.85 s, max 1.34 s on SIGKILL
// (docs/benchmarks.md, bench:failover).
var profileLAN = Profile{
	Name:               "lan",
	HeartbeatTimeout:   300 * time.Millisecond,
	ElectionTimeout:    300 * time.Millisecond,
	LeaderLeaseTimeout: 150 * time.Millisecond,
	// Followers learn a new commit index on the leader's next AppendEntries,
	// sent after 1-2x CommitTimeout: it bounds how soon every director sees
	// a change. 20 ms put the write->applied-everywhere p50 at 35 ms; 5 ms
	// costs ~130 empty RPCs/s per follower when idle (docs/benchmarks.md).
	CommitTimeout: 5 * time.Millisecond,
}

// profileFast ("fast") fails over ~5x sooner than profileLAN, at the price of false
// elections whenever a director stalls for more than ~100ms.
var profileFast = Profile{
	Name:               "fast",
	HeartbeatTimeout:   100 * time.Millisecond,
	ElectionTimeout:    100 * time.Millisecond,
	LeaderLeaseTimeout: 50 * time.Millisecond,
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
	case p.LeaderLeaseTimeout > p.HeartbeatTimeout:
		return fmt.Errorf("profile %q: LeaderLeaseTimeout %s must be <= HeartbeatTimeout %s", p.Name, p.LeaderLeaseTimeout, p.HeartbeatTimeout)
	case p.CommitTimeout < time.Millisecond:
		return fmt.Errorf("profile %q: CommitTimeout %s must be >= 1ms", p.Name, p.CommitTimeout)
	}
	return nil
}
