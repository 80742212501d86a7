package dataplane

import (
	"context"
	"sync"

	"github.com/raftlb/raftlb/fsm"
)

// FSMSource is the reconciler's view of the replicated state. It wakes on
// every FSM change and on leadership changes (sync daemons in "leader" mode
// follow leadership), and answers incrementally from the FSM's change
// tracking.
type FSMSource struct {
	fsm    *fsm.FSM
	leader func() bool

	mu sync.Mutex
	ch chan struct{}
}

var _ IncrementalSource = (*FSMSource)(nil)

// NewFSMSource returns a source over f; leader reports whether this
// director leads.
func NewFSMSource(f *fsm.FSM, leader func() bool) *FSMSource {
	return &FSMSource{fsm: f, leader: leader, ch: make(chan struct{})}
}

// Changed implements Source.
func (s *FSMSource) Changed() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ch
}

func (s *FSMSource) bump() {
	s.mu.Lock()
	close(s.ch)
	s.ch = make(chan struct{})
	s.mu.Unlock()
}

// Desired implements Source: the whole desired state.
func (s *FSMSource) Desired() Desired {
	c := s.fsm.ServicesChangedSince(0) // every service and the index, read together
	t, names := FromFSM(c.Changed)
	d := Desired{Table: t, Names: names, Index: c.Index}
	d.Timeouts, d.Sync = s.extras()
	return d
}

// DesiredSince implements IncrementalSource.
func (s *FSMSource) DesiredSince(since uint64) (Delta, bool) {
	c := s.fsm.ServicesChangedSince(since)
	if c.Full {
		return Delta{}, false
	}
	d := Delta{Services: make(map[string]VirtualService, len(c.Changed)), Deleted: c.Deleted, Index: c.Index}
	for _, svc := range c.Changed {
		d.Services[svc.Name] = FromFSMService(svc)
	}
	d.Timeouts, d.Sync = s.extras()
	return d, true
}

func (s *FSMSource) extras() (Timeouts, []SyncDaemon) {
	st := s.fsm.Settings()
	return TimeoutsFromSettings(st.Timeouts), SyncFromSettings(st.Sync, s.leader())
}

// Watch turns FSM changes and leadership changes into wake-ups until ctx
// ends.
func (s *FSMSource) Watch(ctx context.Context, leaderCh <-chan bool) {
	for {
		changed := s.fsm.Changed()
		select {
		case <-ctx.Done():
			return
		case <-changed:
		case <-leaderCh:
		}
		s.bump()
	}
}
