//go:build vmguest

package guest

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/raftlb/raftlb/dataplane"
)

// TestDriftRepair: the reconciler over the real Backend programs a table;
// changes made behind its back (ipvsadm -C, ipvsadm -e) are repaired by the
// next full pass, and a service it does not own is left alone.
func TestDriftRepair(t *testing.T) {
	ns := "drift"
	b := backend(t, newNS(t, ns))
	r := dataplane.NewReconciler(b, dataplane.Options{Resync: -1})

	fw := dataplane.Service{Fwmark: 9, Family: "inet6", Scheduler: "wrr", Timeout: 30}
	want := table(
		svc("tcp", "198.51.100.1:80", "wlc"), dest("10.2.0.1:80", "nat", 1), dest("10.2.0.2:80", "nat", 3),
		svc("udp", "[2001:db8::53]:53", "rr"), dest("[2001:db8:2::1]:53", "dr", 1),
		fw, dest("[2001:db8:2::2]:0", "tun", 2),
	)
	r.FullPass(dataplane.Desired{Table: want})
	requireKernelHas(t, b, ns, want)
	st := r.Status()
	if len(st.Errors) > 0 || st.DriftRepairs != 0 || st.Services != 3 || st.Destinations != 4 {
		t.Fatalf("after the first pass: %+v", st)
	}

	// An operator flushes everything.
	inNS(t, ns, "ipvsadm", "-C")
	if got, _ := b.Dump(); len(got) != 0 {
		t.Fatalf("ipvsadm -C left %d services", len(got))
	}
	r.FullPass(dataplane.Desired{Table: want})
	requireKernelHas(t, b, ns, want)
	if st := r.Status(); st.DriftRepairs != 1 {
		t.Fatalf("drift repairs = %d, want 1", st.DriftRepairs)
	}

	// An operator edits a weight and deletes a destination; someone adds
	// a service of their own.
	inNS(t, ns, "ipvsadm", "-e", "-t", "198.51.100.1:80", "-r", "10.2.0.2:80", "-m", "-w", "9")
	inNS(t, ns, "ipvsadm", "-d", "-u", "[2001:db8::53]:53", "-r", "[2001:db8:2::1]:53")
	inNS(t, ns, "ipvsadm", "-A", "-t", "198.51.100.99:80", "-s", "rr")
	r.FullPass(dataplane.Desired{Table: want})
	foreign := svc("tcp", "198.51.100.99:80", "rr")
	withForeign := want.Clone()
	withForeign[foreign.Key()] = dataplane.VirtualService{Service: foreign, Dests: map[string]dataplane.Destination{}}
	requireKernelHas(t, b, ns, withForeign)
	st = r.Status()
	if st.DriftRepairs != 2 || !slices.Equal(st.Unmanaged, []string{foreign.Key()}) {
		t.Fatalf("drift repairs %d (want 2), unmanaged %v (want [%s])", st.DriftRepairs, st.Unmanaged, foreign.Key())
	}

	// An incremental change is one kernel operation, without a dump.
	ops := st.KernelOps
	more := want.Clone()
	extra := dest("10.2.0.3:80", "nat", 1)
	more["tcp/198.51.100.1:80"].Dests[extra.Key()] = extra
	r.Sync(dataplane.Desired{Table: more})
	withForeign["tcp/198.51.100.1:80"].Dests[extra.Key()] = extra
	requireKernelHas(t, b, ns, withForeign)
	if d := r.Status().KernelOps - ops; d != 1 {
		t.Fatalf("adding one destination took %d kernel operations, want 1", d)
	}
	t.Logf("status: %+v", r.Status())

	// The periodic resync does the same on its own: a reconciler running
	// with a short period puts a flushed table back. It owns b now; the
	// test reads through a Backend of its own (a Backend is not for
	// concurrent use).
	reader := backend(t, "/run/netns/"+ns)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done })
	runner := dataplane.NewReconciler(b, dataplane.Options{Resync: 300 * time.Millisecond})
	go func() { defer close(done); runner.Run(ctx, staticSource{dataplane.Desired{Table: more}}) }()
	eventually(t, 5*time.Second, func() error { return kernelEquals(reader, withForeign) })
	inNS(t, ns, "ipvsadm", "-C")
	eventually(t, 5*time.Second, func() error {
		if runner.Status().DriftRepairs == 0 {
			return errNotYet
		}
		return kernelEquals(reader, more) // the foreign service went with the flush
	})
	requireKernelHas(t, reader, ns, more)
}

// staticSource is a dataplane.Source that never changes.
type staticSource struct{ d dataplane.Desired }

func (s staticSource) Changed() <-chan struct{}   { return nil }
func (s staticSource) Desired() dataplane.Desired { return s.d }

// kernelEquals compares the Backend's Dump with want.
func kernelEquals(b dataplane.Backend, want dataplane.Table) error {
	got, err := b.Dump()
	if err != nil {
		return err
	}
	if d := DiffTables(want, got); d != "" {
		return fmt.Errorf("kernel differs: %s", d)
	}
	return nil
}
