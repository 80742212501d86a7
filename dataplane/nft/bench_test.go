package nft

import (
	"flag"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/raftlb/raftlb/dataplane"
	"github.com/raftlb/raftlb/internal/benchrec"
)

var (
	benchRun    = flag.Bool("nft.bench", false, "run TestBenchmarkTable (programming 1k, 10k and 100k destinations)")
	benchRecord = flag.String("nft.record", "", "with -nft.bench, write the table into this file between the bench:nft markers")
)

const benchCommand = "go test ./dataplane/nft/ -run TestBenchmarkTable -count=1 -v -nft.bench -nft.record ../../docs/benchmarks.md"

// benchTable returns services of perService destinations each, dests in
// all; persistent services get a pin set and chain per destination.
func benchTable(dests, perService int, persistent bool) dataplane.Table {
	t := dataplane.Table{}
	for i := range dests / perService {
		s := svc(fmt.Sprintf("tcp/10.%d.%d.%d:80", 100+i/65536, i/256%256, i%256), "wrr")
		if persistent {
			s.Timeout = 300
		}
		vs := dataplane.VirtualService{Service: s, Dests: map[string]dataplane.Destination{}}
		for j := range perService {
			d := dest(fmt.Sprintf("10.%d.%d.%d:8080", 200+j/65536, j/256%256, j%256), 1+j%3)
			vs.Dests[d.Key()] = d
		}
		t[s.Key()] = vs
	}
	return t
}

type benchRow struct {
	dests, services         int
	persistent              bool
	program, dump           time.Duration
	changeP50, changeMax    time.Duration
	programMsgs, changeMsgs int
}

func TestBenchmarkTable(t *testing.T) {
	if !*benchRun {
		t.Skip("a benchmark: run with -nft.bench (see docs/benchmarks.md)")
	}
	cases := []struct {
		dests, per int
		persistent bool
	}{{1000, 100, false}, {10000, 100, false}, {100000, 100, false}, {1000, 100, true}, {10000, 100, true}}
	var rows []benchRow
	for _, c := range cases {
		rows = append(rows, benchOne(t, c.dests, c.per, c.persistent))
	}
	out := renderBench(rows)
	t.Log("\n" + out)
	if *benchRecord != "" {
		if err := recordBench(*benchRecord, out); err != nil {
			t.Fatal(err)
		}
	}
}

func benchOne(t *testing.T, dests, per int, persistent bool) benchRow {
	var row benchRow
	t.Run(fmt.Sprintf("%d-persistent-%t", dests, persistent), func(t *testing.T) {
		_, _, b := nsBackend(t)
		tbl := benchTable(dests, per, persistent)
		row = benchRow{dests: dests, services: len(tbl), persistent: persistent}
		mustDump(t, b) // as the reconciler does at start
		changes := dataplane.Diff(dataplane.Table{}, tbl)
		start := time.Now()
		mustApply(t, b, dataplane.Table{}, changes)
		row.program, row.programMsgs = time.Since(start), b.lastMsgs

		start = time.Now()
		got := mustDump(t, b)
		row.dump = time.Since(start)
		if len(got) != len(tbl) {
			t.Fatalf("dumped %d services, want %d", len(got), len(tbl))
		}

		// One destination's weight changes, in a different service each
		// time.
		keys := slices.Sorted(func(yield func(string) bool) {
			for k := range tbl {
				if !yield(k) {
					return
				}
			}
		})
		var times []time.Duration
		for i := range 21 {
			vs := tbl[keys[i%len(keys)]]
			d := sortedDests(vs)[0]
			d.Weight = 10 + i
			start := time.Now()
			mustApply(t, b, tbl, []dataplane.Change{{Op: dataplane.UpdateDest, Service: vs.Service, Dest: d}})
			times = append(times, time.Since(start))
			vs.Dests[d.Key()] = d
		}
		row.changeMsgs = b.lastMsgs
		slices.Sort(times)
		row.changeP50, row.changeMax = times[len(times)/2], times[len(times)-1]
	})
	return row
}

func renderBench(rows []benchRow) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Measured %s on %s.\n\n", time.Now().UTC().Format("2006-01-02 15:04 MST"), benchrec.Machine())
	fmt.Fprintf(&b, "Command: `%s` (as root; go test runs the binary in the package directory, hence the path)\n\n", benchCommand)
	fmt.Fprintf(&b, "Load average when it started: %s.\n\n", loadAverage())
	b.WriteString("One director namespace, the real kernel, nothing else in its ruleset. Services are `wrr` with 100 destinations " +
		"each (weights 1–3); persistent ones have a 300 s timeout (a sticky rule and a pin chain per destination). " +
		"\"program\" is one `Apply` of every change from an empty table (one nftables transaction); \"dump\" a full `Dump` " +
		"(read everything but the remembered clients, and verify it); \"one change\" an `Apply` of one destination's weight " +
		"change (21 runs, each in another service), which rewrites that service's chain and dst_ set and nothing else, " +
		"so its cost follows the size of that service, not of the table.\n\n")
	b.WriteString("| destinations | services | persistent | program | netlink msgs | dump | one change p50 | one change max | msgs per change |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range rows {
		fmt.Fprintf(&b, "| %d | %d | %s | %s | %d | %s | %s | %s | %d |\n", r.dests, r.services, map[bool]string{true: "yes", false: "no"}[r.persistent],
			ms(r.program), r.programMsgs, ms(r.dump), ms(r.changeP50), ms(r.changeMax), r.changeMsgs)
	}
	return b.String()
}

func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	return strings.Join(strings.Fields(string(b))[:3], " ")
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d.Microseconds())/1000) }

// recordBench writes table into the bench:nft section of path.
func recordBench(path, table string) error {
	return benchrec.Record(path, "nft", "nftables dataplane: programming and changing destinations", table)
}
