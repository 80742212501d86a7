package dataplane

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"maps"
	"os"
	"slices"
	"sync"
	"time"
)

// Source supplies the desired state and says when it may have changed.
type Source interface {
	// Changed returns a channel closed at the next change.
	Changed() <-chan struct{}
	// Desired returns the state to program now.
	Desired() Desired
}

// Options configure a Reconciler.
type Options struct {
	Log *slog.Logger
	// Resync is the period of the full pass that re-reads the kernel and
	// repairs drift (default 30 s; negative disables).
	Resync time.Duration
	// OwnedFile records which services raftlb programmed, so that after a
	// restart it still deletes a service removed while it was down, and
	// never touches services it did not create. Empty: kept in memory only.
	OwnedFile string
	// PruneUnmanaged deletes kernel services raftlb does not own (off:
	// they are only reported).
	PruneUnmanaged bool
	// Backoff bounds for retrying failed changes (default 100 ms .. 30 s).
	MinBackoff, MaxBackoff time.Duration
	// Now is the clock (tests).
	Now func() time.Time
}

// ObjectError is a service or destination the reconciler could not program.
type ObjectError struct {
	Object   string    `json:"object"` // "tcp/192.0.2.1:80" or "tcp/192.0.2.1:80 10.0.0.1:80"
	Op       string    `json:"op"`
	Error    string    `json:"error"`
	Attempts int       `json:"attempts"`
	Since    time.Time `json:"since"`
}

// Status is the reconciler's state, shown in /v1/status.
type Status struct {
	Backend        string        `json:"backend"`
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
	ResyncInterval string        `json:"resync_interval"`
}

// Reconciler keeps a Backend equal to a Source. Create with NewReconciler,
// then Run it on one goroutine; Status may be called from any goroutine.
type Reconciler struct {
	b    Backend
	opts Options
	log  *slog.Logger

	// Owned by the Run goroutine.
	programmed Table             // what raftlb believes the kernel holds, for the services it owns
	names      map[string]string // service name -> key, as last desired
	since      uint64            // FSM index the cache reflects (incremental sources)
	dumped     bool              // a full pass has read the kernel at least once
	owned      map[string]bool   // services raftlb programmed or is asked to
	saved      map[string]bool   // the owned set last written to OwnedFile
	failures   map[string]*ObjectError
	retryAt    time.Time
	timeouts   Timeouts
	syncRun    []SyncDaemon

	mu     sync.Mutex
	status Status
}

// NewReconciler returns a reconciler for b.
func NewReconciler(b Backend, opts Options) *Reconciler {
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.Resync == 0 {
		opts.Resync = 30 * time.Second
	}
	if opts.MinBackoff == 0 {
		opts.MinBackoff = 100 * time.Millisecond
	}
	if opts.MaxBackoff == 0 {
		opts.MaxBackoff = 30 * time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	r := &Reconciler{b: b, opts: opts, log: opts.Log.With("dataplane", b.Name()),
		programmed: Table{}, names: map[string]string{}, owned: map[string]bool{}, failures: map[string]*ObjectError{}}
	r.status.Backend = b.Name()
	r.status.ResyncInterval = opts.Resync.String()
	return r
}

// Status returns a copy of the current status.
func (r *Reconciler) Status() Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.status
	s.Errors = slices.Clone(s.Errors)
	s.Unmanaged = slices.Clone(s.Unmanaged)
	s.SyncDaemons = slices.Clone(s.SyncDaemons)
	return s
}

// Run reconciles until ctx ends: a full pass at start (one kernel dump),
// then a diff per change of the source, retries with backoff, and a full
// pass every Resync period.
func (r *Reconciler) Run(ctx context.Context, src Source) {
	r.loadOwned()
	r.FullPass(src.Desired())
	var resync <-chan time.Time
	if r.opts.Resync > 0 {
		t := time.NewTicker(r.opts.Resync)
		defer t.Stop()
		resync = t.C
	}
	for {
		changed := src.Changed()
		var retry <-chan time.Time
		var timer *time.Timer
		if !r.retryAt.IsZero() {
			timer = time.NewTimer(max(0, r.retryAt.Sub(r.opts.Now())))
			retry = timer.C
		}
		select {
		case <-ctx.Done():
		case <-changed:
			r.syncFrom(src)
		case <-retry:
			if r.dumped {
				r.Sync(src.Desired())
			} else {
				r.FullPass(src.Desired()) // the kernel was never read
			}
		case <-resync:
			r.FullPass(src.Desired())
		}
		if timer != nil {
			timer.Stop()
		}
		if ctx.Err() != nil {
			return
		}
	}
}

// syncFrom syncs incrementally when the source can say what changed and
// nothing is waiting for a retry, else in full.
func (r *Reconciler) syncFrom(src Source) {
	if inc, ok := src.(IncrementalSource); ok && len(r.failures) == 0 {
		if d, ok := inc.DesiredSince(r.since); ok {
			r.SyncDelta(d)
			return
		}
	}
	r.Sync(src.Desired())
}

// Sync programs the difference between what was programmed and d. It reads
// nothing from the kernel. Exported for tests and benchmarks; Run calls it.
func (r *Reconciler) Sync(d Desired) {
	r.apply(Diff(r.programmed, d.Table))
	r.remember(d)
	r.syncExtras(d)
	r.publish(func(s *Status) { s.LastSync = r.opts.Now() })
}

// remember records which desired state the cache now follows.
func (r *Reconciler) remember(d Desired) {
	if d.Names != nil {
		r.names = maps.Clone(d.Names)
	}
	r.since = d.Index
}

// SyncDelta programs only what changed in d: the changed services are
// diffed against their cached state, nothing else is looked at.
func (r *Reconciler) SyncDelta(d Delta) {
	from, to := Table{}, Table{}
	take := func(key string) {
		if vs, ok := r.programmed[key]; ok {
			from[key] = vs
		}
	}
	for name, vs := range d.Services {
		if old, ok := r.names[name]; ok {
			take(old) // its key may have changed
		}
		take(vs.Key())
		to[vs.Key()] = vs
		r.names[name] = vs.Key()
	}
	for _, name := range d.Deleted {
		if old, ok := r.names[name]; ok {
			take(old)
			delete(r.names, name)
		}
	}
	r.apply(Diff(from, to))
	r.since = d.Index
	r.syncExtras(Desired{Timeouts: d.Timeouts, Sync: d.Sync})
	r.publish(func(s *Status) { s.LastSync = r.opts.Now() })
}

// FullPass re-reads the kernel (the only full read) and repairs any
// difference from d. A kernel that differs from what was programmed is
// drift (an operator's ipvsadm -C, another tool): logged and counted.
func (r *Reconciler) FullPass(d Desired) {
	kernel, err := r.b.Dump()
	if err != nil {
		r.log.Error("cannot read the kernel's dataplane; will retry", "err", err)
		r.publish(func(s *Status) { s.LastError = "dump: " + err.Error() })
		r.scheduleRetry(r.opts.MinBackoff)
		return
	}
	// Ours: what we programmed before (this run or, via OwnedFile, an
	// earlier one) and what we are asked to program now.
	for k := range d.Table {
		r.owned[k] = true
	}
	ours := Table{}
	var unmanaged []string
	for _, k := range sortedKeys(kernel) {
		if r.owned[k] || r.opts.PruneUnmanaged {
			ours[k] = kernel[k]
		} else {
			unmanaged = append(unmanaged, k)
		}
	}
	if len(unmanaged) > 0 {
		r.log.Warn("kernel services raftlb does not manage are left alone (-dataplane-prune deletes them)", "services", unmanaged)
	}
	if r.dumped {
		if drift := Diff(r.programmed, ours); len(drift) > 0 {
			r.log.Warn("dataplane drift: the kernel differs from what raftlb programmed; repairing", "differences", len(drift), "first", drift[0].String())
			r.publish(func(s *Status) { s.DriftRepairs++ })
		}
	}
	changes := Diff(ours, d.Table)
	r.dumped = true
	r.programmed = ours
	r.apply(changes)
	r.remember(d)
	r.syncExtras(d)
	now := r.opts.Now()
	r.publish(func(s *Status) {
		s.Unmanaged = unmanaged
		s.LastSync, s.LastResync = now, now
		s.LastError = ""
	})
}

// apply hands changes to the backend and records the result in the cache.
func (r *Reconciler) apply(changes []Change) {
	if len(changes) == 0 {
		return
	}
	failed := r.b.Apply(r.programmed, changes)
	bad := make(map[string]error, len(failed))
	for _, f := range failed {
		bad[f.Change.String()] = f.Err
	}
	now := r.opts.Now()
	for _, c := range changes {
		obj := objectKey(c)
		if err, ok := bad[c.String()]; ok {
			fe := r.failures[obj]
			if fe == nil {
				fe = &ObjectError{Object: obj, Since: now}
				r.failures[obj] = fe
			}
			fe.Op, fe.Error = c.Op.String(), err.Error()
			fe.Attempts++
			r.log.Error("dataplane change failed; will retry", "change", c.String(), "attempt", fe.Attempts, "err", err)
			continue
		}
		r.programmed.Apply(c)
		delete(r.failures, obj)
		if c.Op == DeleteService {
			// Its destinations went with it.
			for k := range r.failures {
				if len(k) > len(obj) && k[:len(obj)+1] == obj+" " {
					delete(r.failures, k)
				}
			}
		}
	}
	r.updateOwned()
	if len(r.failures) > 0 {
		worst := 0
		for _, f := range r.failures {
			worst = max(worst, f.Attempts)
		}
		r.scheduleRetry(r.backoff(worst))
	} else {
		r.retryAt = time.Time{}
	}
	svcs, dests := r.programmed.Count()
	errs := make([]ObjectError, 0, len(r.failures))
	for _, k := range sortedKeys(r.failures) {
		errs = append(errs, *r.failures[k])
	}
	ops := uint64(len(changes) - len(failed))
	r.publish(func(s *Status) {
		s.Services, s.Destinations, s.Errors = svcs, dests, errs
		s.KernelOps += ops
	})
}

func objectKey(c Change) string {
	switch c.Op {
	case AddDest, UpdateDest, DeleteDest:
		return c.Service.Key() + " " + c.Dest.Key()
	}
	return c.Service.Key()
}

func (r *Reconciler) backoff(attempts int) time.Duration {
	d := r.opts.MinBackoff
	for i := 1; i < attempts && d < r.opts.MaxBackoff; i++ {
		d *= 2
	}
	return min(d, r.opts.MaxBackoff)
}

func (r *Reconciler) scheduleRetry(d time.Duration) { r.retryAt = r.opts.Now().Add(d) }

// syncExtras applies timeouts and sync daemons when they change.
func (r *Reconciler) syncExtras(d Desired) {
	if d.Timeouts != r.timeouts && d.Timeouts != (Timeouts{}) {
		if err := r.b.SetTimeouts(d.Timeouts); err != nil {
			r.log.Error("cannot set IPVS timeouts", "err", err)
			r.scheduleRetry(r.opts.MinBackoff)
		} else {
			r.timeouts = d.Timeouts
		}
	}
	sb, ok := r.b.(SyncBackend)
	if !ok || slices.Equal(d.Sync, r.syncRun) {
		return
	}
	for _, old := range r.syncRun {
		if !slices.Contains(d.Sync, old) {
			if err := sb.StopSyncDaemon(old.Role); err != nil {
				r.log.Error("cannot stop the IPVS sync daemon", "role", old.Role, "err", err)
			}
		}
	}
	var running []SyncDaemon
	for _, want := range d.Sync {
		if slices.Contains(r.syncRun, want) {
			running = append(running, want)
			continue
		}
		if err := sb.StartSyncDaemon(want); err != nil {
			r.log.Error("cannot start the IPVS sync daemon; will retry", "role", want.Role, "err", err)
			r.scheduleRetry(r.opts.MinBackoff)
			continue
		}
		running = append(running, want)
	}
	r.syncRun = running
	r.publish(func(s *Status) { s.SyncDaemons = slices.Clone(running) })
}

func (r *Reconciler) publish(f func(*Status)) {
	r.mu.Lock()
	f(&r.status)
	r.mu.Unlock()
}

// ownedFileV1 is the on-disk list of services raftlb programmed.
type ownedFileV1 struct {
	Version  int      `json:"version"`
	Services []string `json:"services"`
}

func (r *Reconciler) loadOwned() {
	if r.opts.OwnedFile == "" {
		return
	}
	b, err := os.ReadFile(r.opts.OwnedFile)
	if errors.Is(err, os.ErrNotExist) {
		return
	}
	var f ownedFileV1
	if err == nil {
		err = json.Unmarshal(b, &f)
	}
	if err != nil {
		r.log.Error("cannot read the list of services raftlb programmed; services it created earlier and that were deleted meanwhile stay until a resync with -dataplane-prune", "file", r.opts.OwnedFile, "err", err)
		return
	}
	for _, k := range f.Services {
		r.owned[k] = true
	}
	r.saved = maps.Clone(r.owned)
}

// updateOwned makes owned the programmed services plus those whose
// deletion failed (still ours), and persists it when it changed.
func (r *Reconciler) updateOwned() {
	next := make(map[string]bool, len(r.programmed))
	for k := range r.programmed {
		next[k] = true
	}
	for k, f := range r.failures {
		if f.Op == DeleteService.String() {
			next[k] = true
		}
	}
	r.owned = next
	if r.opts.OwnedFile == "" || maps.Equal(next, r.saved) {
		return
	}
	r.saved = maps.Clone(next)
	b, _ := json.Marshal(ownedFileV1{Version: 1, Services: sortedKeys(next)})
	tmp := r.opts.OwnedFile + ".tmp"
	err := os.WriteFile(tmp, b, 0o600)
	if err == nil {
		err = os.Rename(tmp, r.opts.OwnedFile)
	}
	if err != nil {
		r.log.Error("cannot record the services raftlb owns", "file", r.opts.OwnedFile, "err", err)
	}
}
