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
	"time"

	"github.com/hashicorp/raft"
	"github.com/raftlb/raftlb/model"
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
	failure *Failure      // set once, by the first entry that cannot be applied faithfully
	changed chan struct{} // closed and replaced after every Apply and Restore
}

// Failure is why an FSM stopped applying: the raft log entry at Index was
// damaged or unreadable here. Once set it stays: every later Apply is
// refused and no snapshot is taken, so the state stays what it was after
// Index-1 on this director and never diverges silently from the others.
type Failure struct {
	Index uint64    `json:"index"`
	Term  uint64    `json:"term"`
	Err   string    `json:"error"`
	At    time.Time `json:"at"`
}

// Recovery is what an operator does about a Failure (docs/operations.md,
// "A damaged data dir").
const Recovery = "this director's copy of the raft log is damaged; the others are not affected. " +
	"Stop this director, run 'raftlb cluster remove <id>' against another one, wipe this director's data dir " +
	"and start it again with -join: it gets a fresh copy from the leader (docs/operations.md, \"A damaged data dir\")"

func (f *Failure) Error() string {
	return fmt.Sprintf("the FSM stopped at raft index %d (term %d): %s", f.Index, f.Term, f.Err)
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
	cmd, err := Decode(l.Data) // outside the lock: readers go on meanwhile
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failure != nil {
		res.Err = &model.Error{Code: model.CodeInternal, Message: f.failure.Error()}
		return res
	}
	switch {
	case errors.Is(err, ErrIgnorable):
		f.log.Warn("skipping a command type this director does not know (ignorable)", "index", l.Index, "err", err)
	case err != nil:
		// Never skip: the others applied this entry (or refused it) and
		// this director cannot know which. Stop here.
		f.failure = &Failure{Index: l.Index, Term: l.Term, Err: err.Error(), At: time.Now().UTC()}
		f.log.Error("raft log entry is damaged: this director stops applying the log", "index", l.Index, "term", l.Term,
			"err", err, "recovery", Recovery)
		res.Err = &model.Error{Code: model.CodeInternal, Message: f.failure.Error()}
		f.notifyLocked()
		return res
	default:
		f.st.term = l.Term
		res.Object, res.Err = f.st.apply(l.Index, cmd)
	}
	f.st.index = l.Index
	f.notifyLocked()
	return res
}

// Encode serialises c for this cluster's log: with the checksum (Encode)
// once every registered director reads it (Node.LogChecksums), without
// while one does not, so a director of an older release keeps applying the
// log during a rolling upgrade. A cluster with no director registered yet
// is new and gets checksums from the first entry.
func (f *FSM) Encode(c Command) ([]byte, error) {
	f.mu.RLock()
	checksum := true
	for _, n := range f.st.nodes {
		checksum = checksum && n.LogChecksums
	}
	f.mu.RUnlock()
	return encode(c, checksum)
}

// HealthWeights reports whether the leader may commit dynamic weights
// (encoding version 3): every registered director declares that it reads
// them (Node.HealthWeights), as Encode does for checksums. While one does
// not, health decisions carry no weight and a committed weight is kept.
func (f *FSM) HealthWeights() bool {
	f.mu.RLock()
	defer f.mu.RUnlock()
	for _, n := range f.st.nodes {
		if !n.HealthWeights {
			return false
		}
	}
	return true
}

// Failure returns why the FSM stopped applying, or nil while it is healthy.
func (f *FSM) Failure() *Failure {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.failure == nil {
		return nil
	}
	c := *f.failure
	return &c
}

func (f *FSM) notifyLocked() {
	close(f.changed)
	f.changed = make(chan struct{})
}

// Snapshot captures the state. The copy is made here; encoding happens in
// Persist, off the apply path.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.failure != nil {
		// A snapshot of a stopped FSM would record a state the log does
		// not describe as if it were complete.
		return nil, fmt.Errorf("no snapshot: %w", f.failure)
	}
	return &snapshot{d: f.st.dump()}, nil
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
	if f.failure != nil {
		f.mu.Unlock()
		return fmt.Errorf("restore: %w", f.failure)
	}
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
		cur, ch, failed := f.st.index, f.changed, f.failure
		f.mu.RUnlock()
		if cur >= idx {
			return nil
		}
		if failed != nil {
			return fmt.Errorf("waiting for index %d (applied %d): %w", idx, cur, failed)
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("waiting for index %d (applied %d): %w", idx, cur, ctx.Err())
		}
	}
}

// Services returns every service, sorted by name.
func (f *FSM) Services() []model.Service {
	f.mu.RLock()
	defer f.mu.RUnlock()
	out := make([]model.Service, 0, len(f.st.services))
	for _, k := range sortedKeys(f.st.services) {
		out = append(out, f.st.services[k].export())
	}
	return out
}

// Service returns one service by name.
func (f *FSM) Service(name string) (model.Service, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	e := f.st.services[name]
	if e == nil {
		return model.Service{}, false
	}
	return e.export(), true
}

// ServiceChanges is what changed among the services after an index.
type ServiceChanges struct {
	// Full: the history does not reach back that far (a snapshot was
	// restored, or too many deletions since): Changed holds every service
	// and the reader should rebuild.
	Full    bool
	Changed []model.Service // created or changed (spec or real servers), sorted by name
	Deleted []string        // names of services deleted and not re-created
	Index   uint64          // the applied index this answer reflects
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
func (f *FSM) ServiceSpec(name string) (model.ServiceSpec, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	e := f.st.services[name]
	if e == nil {
		return model.ServiceSpec{}, false
	}
	spec := e.spec
	spec.SchedFlags = slices.Clone(e.spec.SchedFlags)
	return spec, true
}

// Real returns one real server of a service by key ("addr:port"), and
// whether the service exists.
func (f *FSM) Real(service, key string) (r model.RealServer, found, serviceFound bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	e := f.st.services[service]
	if e == nil {
		return model.RealServer{}, false, false
	}
	if p := e.reals[key]; p != nil {
		return *p, true, true
	}
	return model.RealServer{}, false, true
}

// VIPs returns every VIP, sorted by address.
func (f *FSM) VIPs() []model.VIP {
	f.mu.RLock()
	defer f.mu.RUnlock()
	out := make([]model.VIP, 0, len(f.st.vips))
	for _, k := range sortedKeys(f.st.vips) {
		out = append(out, *f.st.vips[k])
	}
	return out
}

// VIP returns one VIP by key (its address).
func (f *FSM) VIP(key string) (model.VIP, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	v := f.st.vips[model.VIPKey(key)]
	if v == nil {
		return model.VIP{}, false
	}
	return *v, true
}

// Settings returns the cluster settings.
func (f *FSM) Settings() model.Settings {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.st.settings
}

// Node returns a director's registered metadata.
func (f *FSM) Node(id string) (model.Node, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	n := f.st.nodes[id]
	if n == nil {
		return model.Node{}, false
	}
	return *n, true
}

// Nodes returns every registered director, sorted by id.
func (f *FSM) Nodes() []model.Node {
	f.mu.RLock()
	defer f.mu.RUnlock()
	out := make([]model.Node, 0, len(f.st.nodes))
	for _, k := range sortedKeys(f.st.nodes) {
		out = append(out, *f.st.nodes[k])
	}
	return out
}

// ClusterID returns the cluster's id, "" until the first leader names it.
func (f *FSM) ClusterID() string {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.st.cluster
}

// LastRelease returns the last planned VIP release that was not cancelled
// since (nil: none).
func (f *FSM) LastRelease() *model.LeaseRelease {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.st.release == nil {
		return nil
	}
	r := *f.st.release
	return &r
}

// Applier commits an encoded command through raft and returns its index
// and what the FSM's Apply returned; *cluster.Node is one. It must be the
// leader's.
type Applier interface {
	Apply(cmd []byte, timeout time.Duration) (index uint64, response any, err error)
}

// EntryTooLargeError is returned by Commit for a command whose log entry
// would exceed the limit.
type EntryTooLargeError struct{ Size, Max int }

func (e *EntryTooLargeError) Error() string {
	return fmt.Sprintf("the change is %d bytes as a raft log entry, more than the limit of %d", e.Size, e.Max)
}

// Commit is the one path of a write: encode c for this cluster (Encode),
// refuse it if its entry is over maxEntry bytes (0: no limit), commit it
// through a (which waits for it to be applied on the leader) and return the
// FSM's result — whose Err is the command's refusal, the state unchanged —
// or the error raft returned (cluster.ErrNotLeader and friends).
func (f *FSM) Commit(a Applier, c Command, timeout time.Duration, maxEntry int) (*Result, error) {
	b, err := f.Encode(c)
	if err != nil {
		return nil, err
	}
	if maxEntry > 0 && len(b) > maxEntry {
		return nil, &EntryTooLargeError{Size: len(b), Max: maxEntry}
	}
	idx, resp, err := a.Apply(b, timeout)
	if err != nil {
		return nil, err
	}
	res, ok := resp.(*Result)
	if !ok {
		return nil, fmt.Errorf("fsm: unexpected apply result %T at index %d", resp, idx)
	}
	return res, nil
}
