package fsm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"

	"github.com/hashicorp/raft"
)

// FSM is raftlb's raft.FSM.
//
// Threading: raft calls Apply, Snapshot and Restore from one goroutine; Persist
// of a snapshot runs concurrently with later Applies (it works on a copy).
// Every read method is safe from any goroutine and returns copies.
type FSM struct {
	log *slog.Logger

	mu      sync.RWMutex
	st      *state
	changed chan struct{} // closed and replaced after every Apply and Restore
}

var _ raft.FSM = (*FSM)(nil)

// New returns an empty FSM. A nil logger discards.
func New(log *slog.Logger) *FSM {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &FSM{log: log, st: newState(), changed: make(chan struct{})}
}

// Apply applies one raft log entry and returns a *Result.
func (f *FSM) Apply(l *raft.Log) any {
	if l.Type != raft.LogCommand {
		return nil
	}
	res := &Result{Index: l.Index}
	cmd, err := Decode(l.Data)
	f.mu.Lock()
	switch {
	case errors.Is(err, ErrIgnorable):
		f.log.Warn("skipping a command type this director does not know (ignorable)", "index", l.Index, "err", err)
	case err != nil:
		f.log.Error("cannot decode raft log entry; it changes nothing here", "index", l.Index, "err", err)
		res.Err = &Error{Code: CodeInternal, Message: err.Error()}
	default:
		f.st.term = l.Term
		res.Object, res.Err = f.st.apply(l.Index, cmd)
	}
	f.st.index = l.Index
	f.notifyLocked()
	f.mu.Unlock()
	return res
}

func (f *FSM) notifyLocked() {
	close(f.changed)
	f.changed = make(chan struct{})
}

// Snapshot captures the state. The copy is made here; encoding happens in
// Persist, off the apply path.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.RLock()
	d := f.st.dump()
	f.mu.RUnlock()
	return &snapshot{d: d}, nil
}

// Restore replaces the state with a snapshot written by Persist.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	var d Dump
	if err := json.NewDecoder(rc).Decode(&d); err != nil {
		return fmt.Errorf("restore: decode snapshot: %w", err)
	}
	st, err := stateFromDump(d)
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	f.mu.Lock()
	f.st = st
	f.notifyLocked()
	f.mu.Unlock()
	return nil
}

type snapshot struct{ d Dump }

func (s *snapshot) Persist(sink raft.SnapshotSink) error {
	if err := json.NewEncoder(sink).Encode(s.d); err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("persist snapshot: %w", err)
	}
	return sink.Close()
}

func (s *snapshot) Release() {}

// Dump returns a deep copy of the whole state.
func (f *FSM) Dump() Dump {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.st.dump()
}

// Index returns the last applied raft index.
func (f *FSM) Index() uint64 {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.st.index
}

// Changed returns a channel that is closed at the next Apply or Restore.
// Read the state after receiving from it, then call Changed again.
func (f *FSM) Changed() <-chan struct{} {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.changed
}

// WaitIndex blocks until the FSM has applied idx or ctx ends.
func (f *FSM) WaitIndex(ctx context.Context, idx uint64) error {
	for {
		f.mu.RLock()
		cur, ch := f.st.index, f.changed
		f.mu.RUnlock()
		if cur >= idx {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("waiting for index %d (applied %d): %w", idx, cur, ctx.Err())
		}
	}
}

// Services returns every service, sorted by name.
func (f *FSM) Services() []Service {
	f.mu.RLock()
	defer f.mu.RUnlock()
	out := make([]Service, 0, len(f.st.services))
	for _, k := range sortedKeys(f.st.services) {
		out = append(out, f.st.services[k].export())
	}
	return out
}

// Service returns one service by name.
func (f *FSM) Service(name string) (Service, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	e := f.st.services[name]
	if e == nil {
		return Service{}, false
	}
	return e.export(), true
}

// ServiceChanges is what changed among the services after an index.
type ServiceChanges struct {
	// Full: the history does not reach back that far (a snapshot was
	// restored, or too many deletions since): Changed holds every service
	// and the reader should rebuild.
	Full    bool
	Changed []Service // created or changed (spec or real servers), sorted by name
	Deleted []string  // names of services deleted and not re-created
	Index   uint64    // the applied index this answer reflects
}

// ServicesChangedSince reports the services changed after index since, so a
// reader (the dataplane reconciler) pays for what changed rather than for
// the whole table. It scans the services, not their real servers.
func (f *FSM) ServicesChangedSince(since uint64) ServiceChanges {
	f.mu.RLock()
	defer f.mu.RUnlock()
	st := f.st
	out := ServiceChanges{Index: st.index, Full: since < st.fullBefore}
	for _, k := range sortedKeys(st.services) {
		if e := st.services[k]; out.Full || e.touched > since {
			out.Changed = append(out.Changed, e.export())
		}
	}
	if !out.Full {
		for _, name := range sortedKeys(st.tombs) {
			if st.tombs[name] > since && st.services[name] == nil {
				out.Deleted = append(out.Deleted, name)
			}
		}
	}
	return out
}

// ServiceSpec returns one service's spec without copying its real
// servers: O(1) whatever the size of the service.
func (f *FSM) ServiceSpec(name string) (ServiceSpec, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	e := f.st.services[name]
	if e == nil {
		return ServiceSpec{}, false
	}
	spec := e.spec
	spec.SchedFlags = slices.Clone(e.spec.SchedFlags)
	return spec, true
}

// Real returns one real server of a service by key ("addr:port"), and
// whether the service exists.
func (f *FSM) Real(service, key string) (r RealServer, found, serviceFound bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	e := f.st.services[service]
	if e == nil {
		return RealServer{}, false, false
	}
	if p := e.reals[key]; p != nil {
		return *p, true, true
	}
	return RealServer{}, false, true
}

// VIPs returns every VIP, sorted by address.
func (f *FSM) VIPs() []VIP {
	f.mu.RLock()
	defer f.mu.RUnlock()
	out := make([]VIP, 0, len(f.st.vips))
	for _, k := range sortedKeys(f.st.vips) {
		out = append(out, *f.st.vips[k])
	}
	return out
}

// VIP returns one VIP by key (its address).
func (f *FSM) VIP(key string) (VIP, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	v := f.st.vips[VIPKey(key)]
	if v == nil {
		return VIP{}, false
	}
	return *v, true
}

// Settings returns the cluster settings.
func (f *FSM) Settings() Settings {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.st.settings
}

// Node returns a director's registered metadata.
func (f *FSM) Node(id string) (Node, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	n := f.st.nodes[id]
	if n == nil {
		return Node{}, false
	}
	return *n, true
}

// Nodes returns every registered director, sorted by id.
func (f *FSM) Nodes() []Node {
	f.mu.RLock()
	defer f.mu.RUnlock()
	out := make([]Node, 0, len(f.st.nodes))
	for _, k := range sortedKeys(f.st.nodes) {
		out = append(out, *f.st.nodes[k])
	}
	return out
}

// LastRelease returns the last planned VIP release that was not cancelled
// since (nil: none).
func (f *FSM) LastRelease() *LeaseRelease {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.st.release == nil {
		return nil
	}
	r := *f.st.release
	return &r
}
