package agent

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/raftlb/raftlb/cluster"
)

// TestConfirmerRunsWithoutTheLoop: confirmations go on while nobody takes
// them (the lease loop busy), take returns the newest committed one, a
// failed barrier is signalled but never counts, and close makes run return.
func TestConfirmerRunsWithoutTheLoop(t *testing.T) {
	lt := cluster.LeaseTiming{Duration: 40 * time.Millisecond, Renew: 5 * time.Millisecond}
	var calls atomic.Int32
	var fail atomic.Bool
	barrier := func(time.Duration) error {
		calls.Add(1)
		if fail.Load() {
			return errors.New("not the leader")
		}
		return nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := newConfirmer()
	var wg sync.WaitGroup
	wg.Go(func() { c.run(ctx, lt, barrier) })
	defer func() { cancel(); wg.Wait() }()

	busy := time.Now()
	for calls.Load() < 5 { // the loop is "busy": nothing is taken meanwhile
		time.Sleep(time.Millisecond)
	}
	got := c.take()
	if got.Before(busy) {
		t.Fatalf("newest confirmation %v is older than the busy period (started %v)", got, busy)
	}
	if again := c.take(); !again.IsZero() && !again.After(got) {
		t.Fatalf("take returned %v twice", again)
	}

	fail.Store(true)
	n := calls.Load()
	for calls.Load() < n+3 {
		time.Sleep(time.Millisecond)
	}
	_ = c.take() // a success may have landed before the switch
	n = calls.Load()
	for calls.Load() < n+3 {
		time.Sleep(time.Millisecond)
	}
	if got := c.take(); !got.IsZero() {
		t.Fatalf("failed barriers produced a confirmation at %v", got)
	}
	select {
	case <-c.signal:
	default:
		t.Fatal("failed barriers were not signalled (the loop looks at leadership on them)")
	}
	c.close()
	wg.Wait() // run returns: no barrier after close (the test times out otherwise)
}
