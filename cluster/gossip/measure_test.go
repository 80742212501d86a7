package gossip

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/raftlb/raftlb/internal/benchrec"
)

var (
	measure       = flag.Bool("gossip.measure", false, "run the gossip bandwidth measurement (about 2 minutes)")
	measureRecord = flag.String("gossip.record", "", "write the measurement table into this file (docs/benchmarks.md)")
	measureWindow = flag.Duration("gossip.window", 30*time.Second, "measurement window per rate")
)

// TestMeasureBandwidth measures gossip bytes per second per node with three
// directors on loopback, memberlist LAN defaults, 10,000 targets per
// director and changes at several rates. Opt-in: -gossip.measure.
func TestMeasureBandwidth(t *testing.T) {
	if !*measure {
		t.Skip("opt-in: -gossip.measure")
	}
	const targets = 10000
	names := []string{"a", "b", "c"}
	gs := make([]*Gossip, 0, 3)
	for i, name := range names {
		// Publish before joining: the initial 10,000 results reach the
		// others when they join (push/pull, and every member is owed the
		// view of a member that joins), before the measurement window.
		g, err := New(Config{NodeID: name, BindAddr: "127.0.0.1:0", Key: testKey, Logger: hclog.NewNullLogger()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { g.Shutdown() })
		g.Publish(obsFor(name, targets, true))
		if i > 0 {
			if _, err := g.Join([]string{gs[0].Addr()}); err != nil {
				t.Fatal(err)
			}
		}
		gs = append(gs, g)
	}
	converged := func() error {
		ref := gs[0].Views()
		for _, g := range gs[1:] {
			v := g.Views()
			for _, origin := range names {
				if len(v[origin]) != targets {
					return fmt.Errorf("%s has %d of %s's targets", g.Name(), len(v[origin]), origin)
				}
				for tgt, o := range ref[origin] {
					if v[origin][tgt] != o {
						return fmt.Errorf("%s differs on %s/%s", g.Name(), origin, tgt)
					}
				}
			}
		}
		return nil
	}
	eventually(t, 70*time.Second, "initial convergence", converged)
	eventually(t, 10*time.Second, "nothing pending", func() error {
		for _, g := range gs {
			if st := g.Stats(); st.Pending+st.InFlight != 0 {
				return fmt.Errorf("%s has %d pending, %d in flight", g.Name(), st.Pending, st.InFlight)
			}
		}
		return nil
	})

	type row struct {
		rate                     int
		sent, recv, dSent, sSent float64
		merges                   uint64
		rSent, resent, coalesced uint64
		published                uint64
		convergeAfter            time.Duration
	}
	var rows []row
	rng := rand.New(rand.NewPCG(1, 2))
	for _, rate := range []int{0, 100, 1000} {
		before := make([]Stats, len(gs))
		for i, g := range gs {
			before[i] = g.Stats()
		}
		start := time.Now()
		tick := time.NewTicker(100 * time.Millisecond)
		for time.Since(start) < *measureWindow {
			<-tick.C
			for _, g := range gs {
				batch := make([]Observation, 0, rate/10)
				for range rate / 10 {
					i := rng.IntN(targets)
					up := rng.IntN(2) == 0
					batch = append(batch, Observation{
						Target:  fmt.Sprintf("tcp/10.0.%d.%d:80#h1", i/250, i%250+1),
						Up:      up,
						Latency: time.Duration(rng.IntN(5000)) * time.Microsecond,
						Err:     map[bool]string{true: "", false: "connect: connection refused"}[up],
					})
				}
				g.Publish(batch)
			}
		}
		tick.Stop()
		el := time.Since(start).Seconds()
		stopped := time.Now()
		eventually(t, 70*time.Second, fmt.Sprintf("convergence after %d changes/s", rate), converged)
		conv := time.Since(stopped)
		var r row
		r.rate, r.convergeAfter = rate, conv
		for i, g := range gs {
			s := g.Stats()
			r.sent += float64(s.BytesSent-before[i].BytesSent) / el / 3
			r.recv += float64(s.BytesReceived-before[i].BytesReceived) / el / 3
			r.dSent += float64(s.DeltaBytesSent-before[i].DeltaBytesSent) / el / 3
			r.sSent += float64(s.StateBytesSent-before[i].StateBytesSent) / el / 3
			r.merges += s.StatesMerged - before[i].StatesMerged
			r.rSent += s.RecordsSent - before[i].RecordsSent
			r.published += s.Published - before[i].Published
			r.resent += s.BatchesResent - before[i].BatchesResent
			r.coalesced += s.Coalesced - before[i].Coalesced
		}
		rows = append(rows, r)
		t.Logf("%+v", r)
	}

	var b strings.Builder
	fmt.Fprintf(&b, "Measured %s on %s.\n\n", time.Now().UTC().Format("2006-01-02 15:04 UTC"), benchrec.Machine())
	fmt.Fprintf(&b, "Command: `go test ./cluster/gossip/ -run TestMeasureBandwidth -v -timeout 10m -gossip.measure -gossip.window %v -gossip.record $PWD/docs/benchmarks.md`\n\n", *measureWindow)
	fmt.Fprintf(&b, "Three directors in one process on 127.0.0.1, memberlist v0.5.4 LAN defaults (probe 1 s, gossip 200 ms to 3 nodes, push/pull 30 s), AES-256 gossip encryption, "+
		"this package's defaults (up/down changes sent after at most 10 ms, refreshes every 100 ms, in batches of up to %d bytes sent directly to each member and acknowledged), "+
		"%d targets per director, random targets changing at the given rate on every director for %v (about half of the changes flip up/down, the others change only the latency). "+
		"Bytes are per node per second, averaged over the three; wire = everything memberlist sent (probes, batches, acks, push/pull, after encryption), "+
		"batch payload = this package's batches and acks, state payload = push/pull full states, both before memberlist's compression and encryption "+
		"(push/pull runs every 30 s per node, so how many fall in a window varies; the merges column counts them). "+
		"Observations sent counts each observation once per member it was sent to (resends included); coalesced = observations that replaced an older one of the same target still waiting for a member; "+
		"resent = batches not acknowledged within the ack timeout (at least 250 ms), their observations sent again. Nothing is ever dropped: a member is owed at most one observation per target. "+
		"Converged = time from the last change until all three hold identical views.\n\n", batchBytes, targets, *measureWindow)
	b.WriteString("| changes/s per node | wire sent B/s | wire recv B/s | batch payload sent B/s | state payload sent B/s | push/pull merges (all nodes) | observations sent (all nodes) | coalesced before sent | batches resent | converged after last change |\n|---|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range rows {
		fmt.Fprintf(&b, "| %d | %.0f | %.0f | %.0f | %.0f | %d | %d | %d | %d | %.2f s |\n", r.rate, r.sent, r.recv, r.dSent, r.sSent, r.merges, r.rSent, r.coalesced, r.resent, r.convergeAfter.Seconds())
	}
	t.Log("\n" + b.String())
	if *measureRecord != "" {
		if err := benchrec.Record(*measureRecord, "gossip", "Health gossip: bandwidth per director", b.String()); err != nil {
			t.Fatal(err)
		}
	}
}
