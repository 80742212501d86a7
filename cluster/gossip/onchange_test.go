package gossip

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"
)

// OnChange fires when a member joins, when another member's view changes
// and when a member leaves; not for the node's own Publish.
func TestOnChange(t *testing.T) {
	markDone(t)
	var na, nb atomic.Int64
	ca := fastConfig(t, "a")
	ca.OnChange = func() { na.Add(1) }
	a := start(t, ca)
	cb := fastConfig(t, "b", a.Addr())
	cb.OnChange = func() { nb.Add(1) }
	b := start(t, cb)
	eventually(t, 5*time.Second, "b joins a", func() error {
		if na.Load() == 0 {
			return errString("a saw no change")
		}
		return nil
	})
	before, own := na.Load(), nb.Load()
	if err := b.Publish([]Observation{{Target: "t1", Up: false, Err: "timeout"}}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "a is told of b's change", func() error {
		if na.Load() == before || a.Views()["b"]["t1"].Err != "timeout" {
			return errString("not yet")
		}
		return nil
	})
	if got := nb.Load(); got != own {
		// b's own Publish is not a change b is told of (membership
		// events may still arrive, so allow only those).
		t.Logf("b saw %d changes during its own publish", got-own)
	}
	before = na.Load()
	if err := b.Leave(time.Second); err != nil {
		t.Fatal(err)
	}
	b.Shutdown()
	eventually(t, 5*time.Second, "a is told b left", func() error {
		if na.Load() == before || alive(a) != "a" {
			return errString("not yet")
		}
		return nil
	})
}

type errString string

func (e errString) Error() string { return string(e) }

// quiet is a Config without memberlist's gossip rounds, probes or
// push/pull (an hour each): only this package's batches carry observations.
func quiet(t *testing.T, name string, join ...string) Config {
	c := fastConfig(t, name, join...)
	c.GossipInterval, c.PushPullInterval, c.ProbeInterval = time.Hour, time.Hour, time.Hour
	return c
}

// An up/down change reaches the other members at once, without a gossip
// round; a refresh within RefreshInterval.
func TestChangesAreSentDirectly(t *testing.T) {
	markDone(t)
	a := start(t, quiet(t, "a"))
	cb := quiet(t, "b", a.Addr())
	cb.RefreshInterval = time.Hour // a refresh waits for an up/down change
	b := start(t, cb)
	eventually(t, 5*time.Second, "two members", func() error {
		if alive(a) != "a,b" || alive(b) != "a,b" {
			return errString("not yet")
		}
		return nil
	})
	if err := b.Publish([]Observation{{Target: "t1", Err: "refused"}}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 2*time.Second, "a has b's observation", func() error {
		if a.Views()["b"]["t1"].Err != "refused" {
			return errString("not yet")
		}
		return nil
	})
	eventually(t, 2*time.Second, "b's batch acknowledged", func() error {
		if st := b.Stats(); st.BatchesAcked != 1 || st.InFlight != 0 || st.StateChanges != 1 {
			return fmt.Errorf("stats %+v", st)
		}
		return nil
	})
	// A refresh waits for the next pass: RefreshInterval (an hour here) or
	// the next up/down change, which carries it along.
	if err := b.Publish([]Observation{{Target: "t1", Err: "timeout"}}); err != nil {
		t.Fatal(err)
	}
	if st := b.Stats(); st.PendingChanges != 0 || st.Pending != 1 {
		t.Fatalf("after a refresh: %+v", st)
	}
	if err := b.Publish([]Observation{{Target: "t2", Up: true}}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 2*time.Second, "the change and the refresh", func() error {
		v := a.Views()["b"]
		if v["t1"].Err != "timeout" || !v["t2"].Up {
			return fmt.Errorf("a sees %+v", v)
		}
		return nil
	})
}
