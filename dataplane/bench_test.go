package dataplane

import (
	"flag"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/raftlb/raftlb/internal/benchrec"
	"github.com/raftlb/raftlb/model"
)

// fsmServices builds nSvc services of nDst real servers each, as the FSM
// returns them.
func fsmServices(nSvc, nDst int) []model.Service {
	out := make([]model.Service, 0, nSvc)
	for i := range nSvc {
		s := model.Service{ServiceSpec: model.ServiceSpec{Name: fmt.Sprintf("s%d", i), Protocol: "tcp",
			Address: fmt.Sprintf("192.0.%d.%d", i/250, i%250+1), Port: 80, Family: "inet", Scheduler: "wrr", Forward: "nat"}}
		for j := range nDst {
			s.Reals = append(s.Reals, model.RealServer{Address: fmt.Sprintf("10.%d.%d.%d", i, j/250, j%250+1), Port: 80, Weight: 1, State: model.StateEnabled})
		}
		out = append(out, s)
	}
	return out
}

// BenchmarkChangeAt100k is the reconciler's CPU cost of one real-server
// change on a 100k-destination table: rebuild the desired table from the
// FSM's services, diff it against the cache, apply the one change.
func BenchmarkChangeAt100k(b *testing.B) {
	svcs := fsmServices(100, 1000)
	fb := newFake()
	r := NewReconciler(fb, Options{})
	t, _ := FromFSM(svcs)
	r.FullPass(Desired{Table: t})
	b.ResetTimer()
	for i := range b.N {
		svcs[7].Reals[3].Weight = 2 + i%2
		t, _ := FromFSM(svcs)
		r.Sync(Desired{Table: t})
	}
	b.StopTimer()
	if got := len(fb.takeApplied()); got != 100+100*1000+b.N {
		b.Fatalf("%d kernel ops, want one per change", got)
	}
}

var record = flag.String("dataplane.record", "", "run TestRecordReconcilerBench and write its table into this file (bench:reconciler markers)")

// TestRecordReconcilerBench measures the reconciler's cost of one change on
// a 100k-destination table, full rebuild vs. incremental, and records it.
//
//	go test ./dataplane/ -run TestRecordReconcilerBench -dataplane.record ../docs/benchmarks.md
func TestRecordReconcilerBench(t *testing.T) {
	if *record == "" {
		t.Skip("-dataplane.record not given")
	}
	var rows strings.Builder
	for _, c := range []struct {
		name string
		f    func(*testing.B)
	}{{"full rebuild and diff (before)", BenchmarkChangeAt100k}, {"incremental from the FSM's change tracking (now)", BenchmarkIncrementalChangeAt100k}} {
		r := testing.Benchmark(c.f)
		fmt.Fprintf(&rows, "| %s | %.2f ms | %.2f MB | %d | 1 |\n", c.name,
			float64(r.NsPerOp())/1e6, float64(r.AllocedBytesPerOp())/1e6, r.AllocsPerOp())
	}
	table := fmt.Sprintf("Measured %s on %s.\n\nCommand: `go test ./dataplane/ -run TestRecordReconcilerBench -dataplane.record ../docs/benchmarks.md`\n\n"+
		"One real server's weight changes in a table of 100 services × 1,000 destinations (100k); the backend is an in-memory fake, so this is the reconciler's own CPU and memory per change.\n\n"+
		"| reconciler path | CPU per change | allocated per change | allocations | kernel operations |\n|---|---|---|---|---|\n%s",
		time.Now().UTC().Format("2006-01-02 15:04 MST"), benchrec.Machine(), rows.String())
	t.Log("\n" + table)
	if err := benchrec.Record(*record, "reconciler", "Dataplane reconciler: cost of one change at 100k destinations", table); err != nil {
		t.Fatal(err)
	}
}
