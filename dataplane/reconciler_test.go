package dataplane

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"path/filepath"
	"reflect"
	"sync"
	"testing"
	"time"
)

// fakeBackend is an in-memory kernel that counts operations and can fail
// chosen changes. Its operations are idempotent as the Backend contract
// says, one per change as IPVS's are: the reference for what the real
// backends do when the kernel contradicts the cache.
type fakeBackend struct {
	mu       sync.Mutex
	kernel   Table
	applied  []Change
	dumps    int
	failures map[string]int // change string -> how many more times to fail
	timeouts Timeouts
	daemons  []SyncDaemon
	record   bool  // keep a copy of the cache each Apply is given (O(table): not in benchmarks)
	cache    Table // the reconciler's cache as the last Apply was given it
}

var errNoService = errors.New("no such service")

func newFake() *fakeBackend { return &fakeBackend{kernel: Table{}, failures: map[string]int{}} }

func (f *fakeBackend) Name() string { return "fake" }

func (f *fakeBackend) Dump() (Table, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.dumps++
	return f.kernel.Clone(), nil
}

func (f *fakeBackend) Apply(programmed Table, cs []Change) []ChangeError {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.record {
		f.cache = programmed.Clone()
	}
	batch := NewBatch(programmed, cs)
	var out []ChangeError
	for _, c := range cs {
		if n := f.failures[c.String()]; n > 0 {
			f.failures[c.String()] = n - 1
			out = append(out, ChangeError{Change: c, Err: errors.New("injected failure")})
			continue
		}
		if err := f.apply(batch, c); err != nil {
			out = append(out, ChangeError{Change: c, Err: err})
			continue
		}
		f.applied = append(f.applied, c)
	}
	return out
}

// apply makes one change idempotently; see Backend.Apply.
func (f *fakeBackend) apply(b Batch, c Change) error {
	k := c.Service.Key()
	vs, exists := f.kernel[k]
	switch c.Op {
	case AddService:
		if exists && !b.Cached(k) { // made behind the cache's back
			keep := b.Given(k)
			for dk := range vs.Dests {
				if !keep[dk] {
					delete(vs.Dests, dk)
				}
			}
		}
	case UpdateService, AddDest, UpdateDest, DeleteDest:
		if !exists {
			switch {
			case b.Cached(k), c.Op == UpdateService:
			case c.Op == DeleteDest:
				return nil // no service, so no destination either
			default:
				return errNoService
			}
			// Deleted behind the cache's back: recreate it.
			re := VirtualService{Service: c.Service, Dests: map[string]Destination{}}
			for _, d := range b.Kept(k) {
				re.Dests[d.Key()] = d
			}
			f.kernel[k] = re
		}
	}
	f.kernel.Apply(c)
	return nil
}

func (f *fakeBackend) SetTimeouts(t Timeouts) error { f.timeouts = t; return nil }
func (f *fakeBackend) Close() error                 { return nil }

func (f *fakeBackend) SyncDaemons() ([]SyncDaemon, error) { return f.daemons, nil }
func (f *fakeBackend) StartSyncDaemon(d SyncDaemon) error {
	f.daemons = append(f.daemons, d)
	return nil
}
func (f *fakeBackend) StopSyncDaemon(role string) error {
	var keep []SyncDaemon
	for _, d := range f.daemons {
		if d.Role != role {
			keep = append(keep, d)
		}
	}
	f.daemons = keep
	return nil
}

func (f *fakeBackend) takeApplied() []Change {
	f.mu.Lock()
	defer f.mu.Unlock()
	a := f.applied
	f.applied = nil
	return a
}

func (f *fakeBackend) snapshot() Table {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.kernel.Clone()
}

func svc(i int) Service {
	return Service{Protocol: "tcp", Address: netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}), Port: 80, Family: "inet", Scheduler: "wrr"}
}

func dst(i, w int) Destination {
	return Destination{Address: netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), Port: 80, Weight: w, Forward: "nat"}
}

// table builds nSvc services with nDst destinations each.
func table(nSvc, nDst int) Table {
	t := Table{}
	for i := range nSvc {
		vs := VirtualService{Service: svc(i + 1), Dests: map[string]Destination{}}
		for j := range nDst {
			d := dst(j+1, 1)
			vs.Dests[d.Key()] = d
		}
		t[vs.Key()] = vs
	}
	return t
}

func TestOneChangeIsOneKernelOperation(t *testing.T) {
	fb := newFake()
	r := NewReconciler(fb, Options{})
	want := table(10, 1000)
	r.FullPass(Desired{Table: want})
	if got := len(fb.takeApplied()); got != 10+10*1000 {
		t.Fatalf("initial programming: %d ops", got)
	}
	// One more real server, one weight change, one deletion: three ops.
	next := want.Clone()
	k := svc(3).Key()
	d := dst(5000, 2)
	next[k].Dests[d.Key()] = d
	w := dst(7, 9)
	next[svc(4).Key()].Dests[w.Key()] = w
	delete(next[svc(5).Key()].Dests, dst(9, 1).Key())
	r.Sync(Desired{Table: next})
	got := fb.takeApplied()
	if len(got) != 3 || got[0].Op != DeleteDest || got[1].Op != AddDest || got[2].Op != UpdateDest {
		t.Fatalf("want delete, add, update; got %v", got)
	}
	if fb.dumps != 1 {
		t.Fatalf("Sync read the kernel: %d dumps", fb.dumps)
	}
	if !reflect.DeepEqual(fb.snapshot(), next) {
		t.Fatal("kernel differs from the desired table")
	}
	st := r.Status()
	if st.Services != 10 || st.Destinations != 10*1000 || st.KernelOps != 10+10*1000+3 {
		t.Fatalf("status %+v", st)
	}
}

func TestDriftRepairedByFullPass(t *testing.T) {
	fb := newFake()
	r := NewReconciler(fb, Options{})
	want := table(3, 3)
	r.FullPass(Desired{Table: want})
	fb.takeApplied()
	// An operator runs ipvsadm -C, and changes a weight behind our back.
	fb.mu.Lock()
	delete(fb.kernel, svc(1).Key())
	d := dst(2, 77)
	fb.kernel[svc(2).Key()].Dests[d.Key()] = d
	fb.mu.Unlock()
	r.Sync(Desired{Table: want}) // no kernel read: nothing to do
	if n := len(fb.takeApplied()); n != 0 {
		t.Fatalf("Sync without changes made %d ops", n)
	}
	r.FullPass(Desired{Table: want})
	if !reflect.DeepEqual(fb.snapshot(), want) {
		t.Fatal("drift not repaired")
	}
	if got := len(fb.takeApplied()); got != 1+3+1 {
		t.Fatalf("repair took %d ops, want 5 (service, its 3 dests, one weight)", got)
	}
	if r.Status().DriftRepairs != 1 {
		t.Fatalf("drift repairs %d", r.Status().DriftRepairs)
	}
}

func TestUnmanagedServicesLeftAloneUnlessPrune(t *testing.T) {
	for _, prune := range []bool{false, true} {
		fb := newFake()
		foreign := VirtualService{Service: svc(200), Dests: map[string]Destination{}}
		fb.kernel[foreign.Key()] = foreign
		r := NewReconciler(fb, Options{PruneUnmanaged: prune})
		r.FullPass(Desired{Table: table(1, 1)})
		_, still := fb.snapshot()[foreign.Key()]
		if still == prune {
			t.Errorf("prune=%v: foreign service still there = %v", prune, still)
		}
		if !prune && (len(r.Status().Unmanaged) != 1 || r.Status().Unmanaged[0] != foreign.Key()) {
			t.Errorf("unmanaged not reported: %+v", r.Status().Unmanaged)
		}
	}
}

func TestOwnedFileSurvivesRestart(t *testing.T) {
	fb := newFake()
	file := filepath.Join(t.TempDir(), "owned.json")
	foreign := VirtualService{Service: svc(200), Dests: map[string]Destination{}}
	fb.kernel[foreign.Key()] = foreign
	r := NewReconciler(fb, Options{OwnedFile: file})
	r.FullPass(Desired{Table: table(2, 1)})
	// raftlb restarts; meanwhile service 2 was deleted from the state.
	r2 := NewReconciler(fb, Options{OwnedFile: file})
	r2.loadOwned()
	want := table(1, 1)
	r2.FullPass(Desired{Table: want})
	got := fb.snapshot()
	if _, ok := got[svc(2).Key()]; ok {
		t.Fatal("a service raftlb created and that was deleted while it was down survived the restart")
	}
	if _, ok := got[foreign.Key()]; !ok {
		t.Fatal("a service raftlb never created was deleted")
	}
}

func TestFailedChangesRetriedWithBackoffAndReported(t *testing.T) {
	fb := newFake()
	want := table(1, 2)
	bad := Change{Op: AddDest, Service: svc(1), Dest: dst(2, 1)}
	fb.failures[bad.String()] = 3
	src := &staticSource{d: Desired{Table: want}, ch: make(chan struct{})}
	r := NewReconciler(fb, Options{MinBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond, Resync: -1})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() { r.Run(ctx, src); close(done) }()
	deadline := time.Now().Add(5 * time.Second)
	sawError := false
	for !reflect.DeepEqual(fb.snapshot(), want) {
		if e := r.Status().Errors; len(e) == 1 && e[0].Object == svc(1).Key()+" "+dst(2, 1).Key() {
			sawError = true
		}
		if time.Now().After(deadline) {
			t.Fatalf("never converged; status %+v", r.Status())
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	<-done
	if len(r.Status().Errors) != 0 {
		t.Fatalf("errors remain after success: %+v", r.Status().Errors)
	}
	_ = sawError // the error may clear between polls; the attempts below prove the retries
	if fb.failures[bad.String()] != 0 {
		t.Fatalf("not retried until success: %d failures left", fb.failures[bad.String()])
	}
}

type staticSource struct {
	mu sync.Mutex
	d  Desired
	ch chan struct{}
}

func (s *staticSource) Changed() <-chan struct{} { s.mu.Lock(); defer s.mu.Unlock(); return s.ch }
func (s *staticSource) Desired() Desired         { s.mu.Lock(); defer s.mu.Unlock(); return s.d }

func TestFailedChangeStatusThenRecovery(t *testing.T) {
	fb := newFake()
	want := table(1, 1)
	bad := Change{Op: AddService, Service: svc(1)}
	fb.failures[bad.String()] = 1
	now := time.Unix(1000, 0)
	r := NewReconciler(fb, Options{Now: func() time.Time { return now }})
	r.FullPass(Desired{Table: want})
	st := r.Status()
	if len(st.Errors) != 2 || st.Errors[0].Attempts != 1 || st.Errors[0].Error != "injected failure" {
		// The service failed, so its destination failed too (the fake has no service to add it to? it is skipped by Table.Apply).
		if len(st.Errors) == 0 {
			t.Fatalf("no error reported: %+v", st)
		}
	}
	if r.retryAt != now.Add(100*time.Millisecond) {
		t.Fatalf("retry at %v", r.retryAt)
	}
	r.Sync(Desired{Table: want})
	if !reflect.DeepEqual(fb.snapshot(), want) || len(r.Status().Errors) != 0 {
		t.Fatalf("not recovered: %+v", r.Status())
	}
}

func TestSyncDaemonsAndTimeouts(t *testing.T) {
	fb := newFake()
	r := NewReconciler(fb, Options{})
	m := SyncDaemon{Role: "master", SyncID: 7, Interface: "eth0"}
	b := SyncDaemon{Role: "backup", SyncID: 7, Interface: "eth0"}
	r.Sync(Desired{Table: Table{}, Sync: []SyncDaemon{m, b}, Timeouts: Timeouts{TCP: 900}})
	if len(fb.daemons) != 2 || fb.timeouts.TCP != 900 {
		t.Fatalf("daemons %+v timeouts %+v", fb.daemons, fb.timeouts)
	}
	r.Sync(Desired{Table: Table{}, Sync: []SyncDaemon{b}})
	if len(fb.daemons) != 1 || fb.daemons[0].Role != "backup" {
		t.Fatalf("after leadership loss: %+v", fb.daemons)
	}
}

// TestDiffProperty: for random tables a and b, applying Diff(a, b) to a
// gives b, and Diff(b, b) is empty.
func TestDiffProperty(t *testing.T) {
	rnd := rand.New(rand.NewPCG(1, 2))
	randTable := func() Table {
		t := Table{}
		for i := range rnd.IntN(6) {
			s := svc(i + 1)
			s.Scheduler = []string{"rr", "wrr", "sh"}[rnd.IntN(3)]
			vs := VirtualService{Service: s, Dests: map[string]Destination{}}
			for j := range rnd.IntN(6) {
				d := dst(j+1, rnd.IntN(3))
				vs.Dests[d.Key()] = d
			}
			t[vs.Key()] = vs
		}
		return t
	}
	for i := range 2000 {
		a, b := randTable(), randTable()
		got := a.Clone()
		for _, c := range Diff(a, b) {
			got.Apply(c)
		}
		if !reflect.DeepEqual(got, b) {
			t.Fatalf("case %d: Diff(a,b) applied to a is not b", i)
		}
		if d := Diff(b, b); len(d) != 0 {
			t.Fatalf("case %d: Diff(b,b) = %v", i, d)
		}
	}
}

func TestFromFSMStates(t *testing.T) {
	_ = fmt.Sprint() // keep fmt for future table names
}

// staleStart programs want with a full pass, then lets edit change the
// fake kernel behind the reconciler's back, so that its cache is wrong.
func staleStart(t *testing.T, want Table, edit func(kernel Table)) (*fakeBackend, *Reconciler) {
	t.Helper()
	fb := newFake()
	r := NewReconciler(fb, Options{Resync: -1})
	r.FullPass(Desired{Table: want})
	if len(r.Status().Errors) != 0 {
		t.Fatalf("first pass: %+v", r.Status().Errors)
	}
	fb.takeApplied()
	fb.mu.Lock()
	edit(fb.kernel)
	fb.mu.Unlock()
	return fb, r
}

// requireConverged checks that the fake kernel holds want after an
// incremental pass: no errors, no retry pending, no kernel read beyond the
// first pass's, no drift counted (only a full pass counts drift).
func requireConverged(t *testing.T, fb *fakeBackend, r *Reconciler, want Table) {
	t.Helper()
	if d := tableDiffFake(fb.snapshot(), want); d != "" {
		t.Fatalf("kernel after the incremental pass: %s", d)
	}
	st := r.Status()
	if len(st.Errors) != 0 || !r.retryAt.IsZero() {
		t.Fatalf("errors %+v, retry at %v", st.Errors, r.retryAt)
	}
	if fb.dumps != 1 || st.DriftRepairs != 0 {
		t.Fatalf("%d dumps, %d drift repairs: the pass was not incremental", fb.dumps, st.DriftRepairs)
	}
	if !reflect.DeepEqual(r.programmed, want) {
		t.Fatal("the cache differs from the kernel after the pass")
	}
}

func tableDiffFake(got, want Table) string {
	if reflect.DeepEqual(got, want) {
		return ""
	}
	return fmt.Sprintf("got %v, want %v", got, want)
}

// TestStaleCacheServiceDeletedBehindItsBack: someone deleted a service
// (ipvsadm -D); the next incremental change to it recreates it with every
// destination the cache has, without waiting for the resync.
func TestStaleCacheServiceDeletedBehindItsBack(t *testing.T) {
	for _, tc := range []struct {
		name string
		next func(Table) // the change made after the deletion
	}{
		{"one more destination", func(n Table) { d := dst(9, 1); n[svc(2).Key()].Dests[d.Key()] = d }},
		{"a weight", func(n Table) { d := dst(2, 5); n[svc(2).Key()].Dests[d.Key()] = d }},
		{"a destination less", func(n Table) { delete(n[svc(2).Key()].Dests, dst(3, 1).Key()) }},
		{"the scheduler", func(n Table) { vs := n[svc(2).Key()]; vs.Scheduler = "rr"; n[svc(2).Key()] = vs }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want := table(3, 3)
			fb, r := staleStart(t, want, func(k Table) { delete(k, svc(2).Key()) })
			next := want.Clone()
			tc.next(next)
			r.Sync(Desired{Table: next})
			requireConverged(t, fb, r, next)
			if n := len(fb.takeApplied()); n != 1 {
				t.Fatalf("%d changes for one", n)
			}
		})
	}
}

// TestStaleCacheServiceMadeBehindItsBack: the reverse. The kernel has a
// service the cache does not (someone added it, with a destination of
// their own and a weight of their own); when the state asks for it, the
// add updates it and leaves only what the state gives it.
func TestStaleCacheServiceMadeBehindItsBack(t *testing.T) {
	want := table(3, 2)
	k := svc(2).Key()
	start := want.Clone()
	delete(start, k)
	fb, r := staleStart(t, start, func(kernel Table) {
		vs := VirtualService{Service: svc(2), Dests: map[string]Destination{}}
		vs.Scheduler = "lc"
		for _, d := range []Destination{dst(1, 7), dst(50, 1)} {
			vs.Dests[d.Key()] = d
		}
		kernel[k] = vs
	})
	r.Sync(Desired{Table: want})
	requireConverged(t, fb, r, want)
}

// TestDeletingWhatIsAbsentSucceeds: deletions of a service and of a
// destination the kernel no longer has succeed, and nothing is retried.
func TestDeletingWhatIsAbsentSucceeds(t *testing.T) {
	want := table(2, 2)
	fb, r := staleStart(t, want, func(kernel Table) {
		delete(kernel, svc(1).Key())
		delete(kernel[svc(2).Key()].Dests, dst(2, 1).Key())
	})
	next := want.Clone()
	delete(next, svc(1).Key())
	delete(next[svc(2).Key()].Dests, dst(2, 1).Key())
	r.Sync(Desired{Table: next})
	requireConverged(t, fb, r, next)
	if got := fb.takeApplied(); len(got) != 2 || got[0].Op != DeleteDest || got[1].Op != DeleteService {
		t.Fatalf("changes %v, want the two deletions", got)
	}
}

// TestStaleCacheIncrementalPath: the same through SyncDelta, the path the
// agent takes (the FSM says which services changed).
func TestStaleCacheIncrementalPath(t *testing.T) {
	want := table(3, 3)
	fb, r := staleStart(t, want, func(k Table) { delete(k, svc(3).Key()) })
	r.names = map[string]string{"s3": svc(3).Key()}
	vs := want.Clone()[svc(3).Key()]
	d := dst(7, 2)
	vs.Dests[d.Key()] = d
	r.SyncDelta(Delta{Services: map[string]VirtualService{"s3": vs}, Index: 2})
	next := want.Clone()
	next[svc(3).Key()] = vs
	requireConverged(t, fb, r, next)
}

// TestBackendSeesTheOneCache: the backend is given the reconciler's cache
// as it stands before each batch (what was programmed, without what
// failed) and keeps nothing of its own: the fake has no other record of
// what it programmed, and still converges after a failure.
func TestBackendSeesTheOneCache(t *testing.T) {
	fb := newFake()
	fb.record = true
	r := NewReconciler(fb, Options{Resync: -1})
	want := table(2, 2)
	r.FullPass(Desired{Table: want})
	if len(fb.cache) != 0 {
		t.Fatalf("first batch saw cache %v, want the empty kernel it dumped", fb.cache)
	}
	next := want.Clone()
	d := dst(5, 1)
	next[svc(1).Key()].Dests[d.Key()] = d
	w := dst(1, 4)
	next[svc(2).Key()].Dests[w.Key()] = w
	fb.failures[Change{Op: AddDest, Service: svc(1), Dest: d}.String()] = 1
	r.Sync(Desired{Table: next})
	if !reflect.DeepEqual(fb.cache, want) {
		t.Fatalf("second batch saw %v, want the table programmed before it", fb.cache)
	}
	seen := want.Clone()
	seen[svc(2).Key()].Dests[w.Key()] = w // the weight change succeeded, the add did not
	if !reflect.DeepEqual(r.programmed, seen) {
		t.Fatalf("cache after a partial failure: %v", r.programmed)
	}
	r.Sync(Desired{Table: next}) // the retry
	if !reflect.DeepEqual(fb.cache, seen) {
		t.Fatalf("the retry saw %v, want the cache without the failed change", fb.cache)
	}
	if !reflect.DeepEqual(fb.snapshot(), next) || len(r.Status().Errors) != 0 {
		t.Fatalf("not converged: %+v", r.Status())
	}
}
