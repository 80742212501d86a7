package integration

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/raftlb/raftlb/api/wire"
	"github.com/raftlb/raftlb/internal/benchrec"
	"github.com/raftlb/raftlb/internal/netlab"
)

var (
	healthBench   = flag.Bool("health.bench", false, "run TestHealthDetectionLatency (three directors in namespaces, about a minute)")
	healthRecord  = flag.String("health.record", "", "write its table into this file (docs/benchmarks.md, bench:health-detect markers)")
	healthSamples = flag.Int("health.samples", 25, "server stops to measure")
)

// gossipCounters reads director i's gossip byte counters from /v1/status.
func (l *nsLab) gossipCounters(i int) (sent, recv uint64) {
	l.t.Helper()
	st, err := l.api(i).Status(context.Background())
	if err != nil {
		l.t.Fatal(err)
	}
	b, _ := json.Marshal(st.Gossip)
	var g wire.GossipStatus
	if err := json.Unmarshal(b, &g); err != nil {
		l.t.Fatal(err)
	}
	return g.Stats.BytesSent, g.Stats.BytesReceived
}

// gossipRate measures the mean gossip bytes per second per director over d
// while fn runs (fn nil: idle).
func (l *nsLab) gossipRate(d time.Duration, fn func()) (sent, recv float64, el time.Duration) {
	var s0, r0 [3]uint64
	for i := range l.dirs {
		s0[i], r0[i] = l.gossipCounters(i)
	}
	start := time.Now()
	if fn != nil {
		fn()
	} else {
		time.Sleep(d)
	}
	el = time.Since(start)
	for i := range l.dirs {
		s, r := l.gossipCounters(i)
		sent += float64(s-s0[i]) / el.Seconds() / 3
		recv += float64(r-r0[i]) / el.Seconds() / 3
	}
	return sent, recv, el
}

func pct(ds []time.Duration, p float64) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(p*float64(len(s))+0.5) - 1
	return s[min(max(i, 0), len(s)-1)]
}

// TestHealthDetectionLatency measures, with three directors in network
// namespaces (nft dataplane, HTTP check every 200 ms, fall 3, rise 2), the
// time from a real server's listener closing until the real server is out
// of the dataplane of every director (as /v1/status reports it, polled
// every few ms from the client namespace), and the gossip bytes per second
// per director. Opt-in: -health.bench.
func TestHealthDetectionLatency(t *testing.T) {
	if !*healthBench {
		t.Skip("opt-in: -health.bench")
	}
	l := newNSLab(t)
	rs1 := newRSServer(t, netlab.Name("rs1"), "10.20.0.11:8080", "rs1")
	newRSServer(t, netlab.Name("rs2"), "10.20.0.12:8080", "rs2")
	l.configureChecked(checkArgs...)
	allTwo := func() bool { return l.dests(0) == 2 && l.dests(1) == 2 && l.dests(2) == 2 }
	l.waitFor("both real servers on every director", allTwo)

	idleSent, idleRecv, idleEl := l.gossipRate(10*time.Second, nil)

	var first, last []time.Duration // per sample: the first and the last director
	samples := *healthSamples
	busySent, busyRecv, busyEl := l.gossipRate(0, func() {
		for n := range samples {
			l.waitFor("rs1 back on every director", allTwo)
			l.waitFor("three up views of rs1", func() bool {
				r, ok := l.realHealth(0, "10.20.0.11:8080")
				return ok && viewsOf(r) == "d1:up d2:up d3:up"
			})
			time.Sleep(time.Duration(rand.Int64N(int64(checkInterval)))) // a random phase against the checks
			gone := make([]time.Duration, 3)
			var wg sync.WaitGroup
			start := time.Now()
			rs1.stop()
			for i := range l.dirs {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for time.Since(start) < 10*time.Second {
						if l.dests(i) == 1 {
							gone[i] = time.Since(start)
							return
						}
						time.Sleep(2 * time.Millisecond)
					}
				}()
			}
			wg.Wait()
			for i, g := range gone {
				if g == 0 {
					t.Fatalf("sample %d: rs1 never left d%d's dataplane", n, i+1)
				}
			}
			first, last = append(first, slices.Min(gone)), append(last, slices.Max(gone))
			t.Logf("sample %d: %v", n, gone)
			rs1.start()
		}
	})

	bound := checkFall*checkInterval + 100*time.Millisecond
	var b strings.Builder
	fmt.Fprintf(&b, "Measured %s on %s.\n\n", time.Now().UTC().Format("2006-01-02 15:04 UTC"), benchrec.Machine())
	fmt.Fprintf(&b, "Command: `go test ./integration/ -run TestHealthDetectionLatency -v -timeout 10m -health.bench -health.samples %d -health.record $PWD/docs/benchmarks.md`\n\n", samples)
	fmt.Fprintf(&b, "Three `raftlb agent` processes in network namespaces (nft dataplane, fast raft timing, gossip every 100 ms with up/down changes sent at once, 20 ms decision window), "+
		"one service with an HTTP check every %v (timeout 150 ms, fall %d, rise %d), majority policy, two real servers. "+
		"One real server's listener is closed at a random phase against the checks; detection is the time until it is gone from "+
		"a director's dataplane as /v1/status reports it (polled every ~2 ms per director from the client namespace). "+
		"%d samples (with fewer than 100, p99 is the maximum). Target: p99 ≤ fall × interval + 100 ms = %v.\n\n", checkInterval, checkFall, checkRise, samples, bound)
	b.WriteString("| detection | p50 | p99 | max |\n|---|---|---|---|\n")
	row := func(name string, ds []time.Duration) {
		fmt.Fprintf(&b, "| %s | %d ms | %d ms | %d ms |\n", name, pct(ds, 0.5).Milliseconds(), pct(ds, 0.99).Milliseconds(), slices.Max(ds).Milliseconds())
	}
	row("first director", first)
	row("every director (the last one)", last)
	b.WriteString("\n| gossip per director | sent B/s | received B/s | window |\n|---|---|---|---|\n")
	fmt.Fprintf(&b, "| idle (2 targets, no changes) | %.0f | %.0f | %.0f s |\n", idleSent, idleRecv, idleEl.Seconds())
	fmt.Fprintf(&b, "| during the samples (a change every ~1.5 s) | %.0f | %.0f | %.0f s |\n", busySent, busyRecv, busyEl.Seconds())
	t.Log("\n" + b.String())
	if p := pct(last, 0.99); p > bound {
		t.Logf("note: p99 %v is over the target %v", p, bound)
	}
	if *healthRecord != "" {
		if err := benchrec.Record(*healthRecord, "health-detect", "Health checks: detection latency and gossip with three directors", b.String()); err != nil {
			t.Fatal(err)
		}
	}
}
