//go:build vmguest

package guest

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/raftlb/raftlb/dataplane"
)

// destsPerService is the size of each service in the benchmark tables.
const destsPerService = 100

// benchTable is n destinations in n/destsPerService TCP services, every
// destination address distinct.
func benchTable(n int) dataplane.Table {
	t := dataplane.Table{}
	for k := 0; k < n; k++ {
		i := k / destsPerService
		s := dataplane.Service{Protocol: "tcp", Address: netip.AddrFrom4([4]byte{10, 100, byte(i >> 8), byte(i)}),
			Port: 80, Family: "inet", Scheduler: "wlc"}
		vs, ok := t[s.Key()]
		if !ok {
			vs = dataplane.VirtualService{Service: s, Dests: map[string]dataplane.Destination{}}
			t[s.Key()] = vs
		}
		d := dataplane.Destination{Address: netip.AddrFrom4([4]byte{10, byte(1 + k>>16), byte(k >> 8), byte(k)}),
			Port: 8080, Weight: 1, Forward: "nat"}
		vs.Dests[d.Key()] = d
	}
	return t
}

// restoreRules writes t in ipvsadm -R format (what ipvsadm-save prints).
func restoreRules(t dataplane.Table) string {
	var b strings.Builder
	for _, vs := range t {
		fmt.Fprintf(&b, "-A -t %s -s %s\n", netip.AddrPortFrom(vs.Address, vs.Port), vs.Scheduler)
		for _, d := range vs.Dests {
			fmt.Fprintf(&b, "-a -t %s -r %s -m -w %d\n", netip.AddrPortFrom(vs.Address, vs.Port), d.Key(), d.Weight)
		}
	}
	return b.String()
}

// ipvsadmRestore runs ipvsadm-restore (flush, then ipvsadm -R) in ns with
// the rules on its standard input and returns how long it took.
func ipvsadmRestore(t *testing.T, ns, rules string) time.Duration {
	t.Helper()
	f := "/tmp/bench.rules"
	if err := os.WriteFile(f, []byte(rules), 0o644); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	out, err := exec.Command("ip", "netns", "exec", ns, "sh", "-c", "sh /usr/sbin/ipvsadm-restore < "+f).CombinedOutput()
	d := time.Since(start)
	if err != nil {
		t.Fatalf("ipvsadm-restore: %v\n%s", err, out)
	}
	return d
}

type benchRow struct {
	dests, services int
	program         time.Duration // Backend.Apply of every change, from empty
	programOps      int
	restore         time.Duration // ipvsadm-restore of the same table, from empty
	dump            time.Duration // Backend.Dump of the table
	one             time.Duration // reconciler Sync of one more destination
	oneOps          uint64
	restoreOne      time.Duration // ipvsadm-restore of the table with one more destination
	restoreOneOps   int
	fullPass        time.Duration // reconciler FullPass (dump + diff) that finds nothing to do
}

// TestBenchmark measures, at 1k, 10k and 100k destinations, programming a
// table from empty with the Backend against ipvsadm-restore, and one change
// on top through the reconciler against restoring the whole table again.
// It prints a markdown table between BENCH-MD-BEGIN and BENCH-MD-END, which
// run.sh (BENCH=1 RECORD=docs/benchmarks.md) copies into the docs.
func TestBenchmark(t *testing.T) {
	if !*benchFlag {
		t.Skip("the benchmark runs with BENCH=1 ./integration/vm/run.sh")
	}
	ns := "bench"
	b := backend(t, newNS(t, ns))
	var rows []benchRow
	for _, n := range []int{1000, 10000, 100000} {
		tab := benchTable(n)
		row := benchRow{dests: n, services: len(tab)}
		inNS(t, ns, "ipvsadm", "-C")

		changes := addChanges(tab)
		start := time.Now()
		applyAll(t, b, dataplane.Table{}, changes)
		row.program, row.programOps = time.Since(start), len(changes)

		start = time.Now()
		dump, err := b.Dump()
		row.dump = time.Since(start)
		if err != nil {
			t.Fatal(err)
		}
		if d := DiffTables(tab, dump); d != "" {
			t.Fatalf("%d destinations: the kernel differs:\n%.2000s", n, d)
		}

		// One more destination through the reconciler: a diff against its
		// cache and one kernel operation, no dump.
		r := dataplane.NewReconciler(b, dataplane.Options{Resync: -1})
		start = time.Now()
		r.FullPass(dataplane.Desired{Table: tab})
		row.fullPass = time.Since(start)
		if ops := r.Status().KernelOps; ops != 0 {
			t.Fatalf("a full pass over what is already programmed made %d kernel operations", ops)
		}
		more := tab.Clone()
		extra := dataplane.Destination{Address: netip.AddrFrom4([4]byte{10, 250, 0, 1}), Port: 8080, Weight: 1, Forward: "nat"}
		var first string
		for k := range more {
			first = k
			break
		}
		more[first].Dests[extra.Key()] = extra
		ops := r.Status().KernelOps
		start = time.Now()
		r.Sync(dataplane.Desired{Table: more})
		row.one, row.oneOps = time.Since(start), r.Status().KernelOps-ops
		if st := r.Status(); len(st.Errors) > 0 {
			t.Fatalf("reconciler errors: %+v", st.Errors)
		}

		// ipvsadm-restore of the same table from empty, then of the table
		// with the one extra destination (a restore-based tool can only
		// flush and reload everything).
		inNS(t, ns, "ipvsadm", "-C")
		row.restore = ipvsadmRestore(t, ns, restoreRules(tab))
		row.restoreOne = ipvsadmRestore(t, ns, restoreRules(more))
		row.restoreOneOps = 1 + len(more) + n + 1
		if dump, err := b.Dump(); err != nil || DiffTables(more, dump) != "" {
			t.Fatalf("after ipvsadm-restore the kernel differs (%v)", err)
		}
		t.Logf("%d destinations: %+v", n, row)
		rows = append(rows, row)
	}
	inNS(t, ns, "ipvsadm", "-C")
	printBench(rows)
}

func printBench(rows []benchRow) {
	var uts syscall.Utsname
	syscall.Uname(&uts)
	mem := "?"
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb int
		fmt.Sscanf(strings.TrimPrefix(strings.SplitN(string(b), "\n", 2)[0], "MemTotal:"), "%d", &kb)
		mem = fmt.Sprintf("%d MiB", kb/1024)
	}
	fmt.Println("BENCH-MD-BEGIN")
	fmt.Printf("Guest: Linux %s, %d vCPUs, %s, %s. Services of %d NAT destinations each (wlc).\n\n",
		utsString(uts.Release[:]), runtime.NumCPU(), mem, runtime.Version(), destsPerService)
	fmt.Println("| destinations | services | Backend: program from empty | ipvsadm-restore: same table | restore / Backend | Backend: Dump | reconciler full pass, nothing to do | one more destination: reconciler | one more destination: ipvsadm-restore | restore / reconciler |")
	fmt.Println("|---|---|---|---|---|---|---|---|---|---|")
	for _, r := range rows {
		fmt.Printf("| %d | %d | %s (%d ops, %.1f µs/op) | %s | %.2f× | %s | %s (0 ops) | %s (%d kernel op) | %s (%d ops: flush + all) | %.0f× |\n",
			r.dests, r.services, dur(r.program), r.programOps, float64(r.program.Microseconds())/float64(r.programOps),
			dur(r.restore), r.restore.Seconds()/r.program.Seconds(), dur(r.dump), dur(r.fullPass),
			dur(r.one), r.oneOps, dur(r.restoreOne), r.restoreOneOps, r.restoreOne.Seconds()/r.one.Seconds())
	}
	fmt.Println("BENCH-MD-END")
}

// dur formats a duration with three significant digits.
func dur(d time.Duration) string {
	switch {
	case d >= time.Second:
		return fmt.Sprintf("%.2f s", d.Seconds())
	case d >= time.Millisecond:
		return fmt.Sprintf("%.3g ms", float64(d)/float64(time.Millisecond))
	default:
		return fmt.Sprintf("%.3g µs", float64(d)/float64(time.Microsecond))
	}
}
