// Command writes benchmarks replicated writes: three directors in this
// process over real TCP on loopback; a client writes through the leader's
// HTTP API and a write counts as done when all three FSMs have applied its
// index. It prints a markdown table and, with -record, writes it into
// docs/benchmarks.md between its markers.
//
//	go run ./integration/bench/writes -record
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/raftlb/raftlb/agent"
	"github.com/raftlb/raftlb/api/client"
	"github.com/raftlb/raftlb/cluster"
	"github.com/raftlb/raftlb/internal/benchrec"
	"github.com/raftlb/raftlb/model"
)

func main() {
	latN := flag.Int("latency-writes", 2000, "sequential writes for the latency row")
	dur := flag.Duration("duration", 10*time.Second, "length of the sustained-throughput run")
	conc := flag.Int("clients", 16, "concurrent clients for the throughput row")
	profiles := flag.String("profiles", "lan,fast", "timing profiles to measure")
	record := flag.String("record", "", "write the table into this markdown file between the bench:writes markers (e.g. docs/benchmarks.md)")
	flag.Parse()
	os.Setenv(cluster.LogLevelEnv, "off")

	var rows []string
	for _, p := range agent.SplitList(*profiles) {
		r, err := run(p, *latN, *dur, *conc)
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		rows = append(rows, r...)
	}
	table := render(rows, *latN, *dur, *conc)
	fmt.Print(table)
	if *record != "" {
		if err := recordInto(*record, table); err != nil {
			fmt.Fprintln(os.Stderr, "record:", err)
			os.Exit(1)
		}
	}
}

func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

type trio struct {
	agents []*agent.Agent
	dirs   []string
}

func (t *trio) close() {
	for _, a := range t.agents {
		_ = a.Shutdown(context.Background())
	}
	for _, d := range t.dirs {
		os.RemoveAll(d)
	}
}

func startTrio(profile string) (*trio, error) {
	t := &trio{}
	var peers []cluster.Server
	var cfgs []agent.Config
	for i := range 3 {
		raft, err := freeAddr()
		if err != nil {
			return nil, err
		}
		apiAddr, err := freeAddr()
		if err != nil {
			return nil, err
		}
		dir, err := os.MkdirTemp("", "raftlb-bench-")
		if err != nil {
			return nil, err
		}
		t.dirs = append(t.dirs, dir)
		id := fmt.Sprintf("b%d", i+1)
		peers = append(peers, cluster.Server{ID: id, Address: raft})
		cfgs = append(cfgs, agent.Config{NodeID: id, DataDir: dir, RaftAddr: raft, APIAddr: apiAddr, Token: "bench",
			Profile: profile, Dataplane: agent.DataplaneNone, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	}
	for _, c := range cfgs {
		c.Peers = peers
		a, err := agent.Start(context.Background(), c)
		if err != nil {
			t.close()
			return nil, err
		}
		t.agents = append(t.agents, a)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, a := range t.agents {
		if err := a.WaitReady(ctx); err != nil {
			t.close()
			return nil, err
		}
	}
	return t, nil
}

func (t *trio) leader() *agent.Agent {
	for _, a := range t.agents {
		if a.Node().IsLeader() {
			return a
		}
	}
	return nil
}

// waitAll blocks until every director applied idx.
func (t *trio) waitAll(ctx context.Context, idx uint64) error {
	for _, a := range t.agents {
		if err := a.FSM().WaitIndex(ctx, idx); err != nil {
			return err
		}
	}
	return nil
}

var seq atomic.Uint64

// write creates one real server (a small, realistic command) and returns
// the index it committed at.
func write(ctx context.Context, c *client.Client) (uint64, error) {
	n := seq.Add(1)
	r := model.NewRealSpec()
	r.Address = fmt.Sprintf("10.%d.%d.%d", (n>>16)&255, (n>>8)&255, n&255)
	res, err := c.CreateReal(ctx, "bench", r)
	return res.Index, err
}

func run(profile string, latN int, dur time.Duration, conc int) ([]string, error) {
	t, err := startTrio(profile)
	if err != nil {
		return nil, err
	}
	defer t.close()
	ld := t.leader()
	if ld == nil {
		return nil, errors.New("no leader")
	}
	c, err := client.New(client.Options{Addr: ld.APIURL(), Token: "bench"})
	if err != nil {
		return nil, err
	}
	ctx := context.Background()
	spec := model.NewServiceSpec()
	spec.Name, spec.Protocol, spec.Address, spec.Port, spec.Scheduler = "bench", "tcp", "192.0.2.1", 80, "wrr"
	if _, err := c.CreateService(ctx, client.ServiceCreate{ServiceSpec: spec}); err != nil {
		return nil, err
	}

	// One client, one write at a time: latency to applied-on-all-three.
	lat := make([]time.Duration, 0, latN)
	for range latN {
		start := time.Now()
		idx, err := write(ctx, c)
		if err == nil {
			err = t.waitAll(ctx, idx)
		}
		if err != nil {
			return nil, err
		}
		lat = append(lat, time.Since(start))
	}
	slices.Sort(lat)
	pct := func(p float64) time.Duration { return lat[min(len(lat)-1, int(p*float64(len(lat))))] }

	// conc clients writing for dur: sustained rate, then every write must
	// be applied on all three.
	var done atomic.Int64
	var maxIdx atomic.Uint64
	var wg sync.WaitGroup
	var firstErr error
	var errOnce sync.Once
	stop := time.Now().Add(dur)
	start := time.Now()
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(stop) {
				idx, err := write(ctx, c)
				if err != nil {
					errOnce.Do(func() { firstErr = err })
					return
				}
				done.Add(1)
				for {
					cur := maxIdx.Load()
					if idx <= cur || maxIdx.CompareAndSwap(cur, idx) {
						break
					}
				}
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}
	if err := t.waitAll(ctx, maxIdx.Load()); err != nil {
		return nil, err
	}
	elapsed := time.Since(start)
	ms := func(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d.Microseconds())/1000) }
	return []string{
		fmt.Sprintf("| %s | 1 client, sequential | %s | %s | %s | %s | %.0f |", profile, ms(pct(0.5)), ms(pct(0.99)), ms(lat[len(lat)-1]), "-", float64(latN)/sum(lat).Seconds()),
		fmt.Sprintf("| %s | %d clients, %s | - | - | - | %d | %.0f |", profile, conc, dur, done.Load(), float64(done.Load())/elapsed.Seconds()),
	}, nil
}

func sum(ds []time.Duration) time.Duration {
	var s time.Duration
	for _, d := range ds {
		s += d
	}
	return s
}

func render(rows []string, latN int, dur time.Duration, conc int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Measured %s on %s.\n\n", time.Now().UTC().Format("2006-01-02 15:04 MST"), benchrec.Machine())
	fmt.Fprintf(&b, "Command: `go run ./integration/bench/writes -latency-writes %d -duration %s -clients %d -record docs/benchmarks.md`\n\n", latN, dur, conc)
	b.WriteString("Three directors in one process, raft over TCP on 127.0.0.1, raft-boltdb on local disk. A write is `POST /v1/services/bench/reals` to the leader's API; it counts as done when all three FSMs have applied its index.\n\n")
	b.WriteString("| profile | load | p50 | p99 | max | writes | writes/s |\n|---|---|---|---|---|---|---|\n")
	for _, r := range rows {
		b.WriteString(r + "\n")
	}
	return b.String()
}

func recordInto(path, table string) error {
	return benchrec.Record(path, "writes", "Replicated writes: API → raft → applied on all three FSMs", table)
}
