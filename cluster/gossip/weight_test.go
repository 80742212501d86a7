package gossip

import (
	"fmt"
	"testing"
	"time"
)

// viewOf returns g's current observation of target by origin.
func viewOf(g *Gossip, origin, target string) (Observation, bool) {
	o, ok := g.Views()[origin][target]
	return o, ok
}

// weightIs reports how g's view of origin's target differs from up with
// weight want (nil: the configured weight) and its unknown-weight mark.
func weightIs(g *Gossip, origin, target string, want *int, unknown bool) error {
	o, ok := viewOf(g, origin, target)
	switch {
	case !ok:
		return fmt.Errorf("%s has no view of %s/%s", g.Name(), origin, target)
	case o.WeightUnknown != unknown:
		return fmt.Errorf("%s: %s/%s WeightUnknown %v, want %v", g.Name(), origin, target, o.WeightUnknown, unknown)
	case (o.Weight == nil) != (want == nil) || (want != nil && *o.Weight != *want):
		return fmt.Errorf("%s: %s/%s weight %v, want %v", g.Name(), origin, target, fmtWeight(o.Weight), fmtWeight(want))
	}
	return nil
}

func fmtWeight(w *int) string {
	if w == nil {
		return "nil"
	}
	return fmt.Sprint(*w)
}

// TestWeightsRollingUpgrade: a and b read wire version 3, c is of the
// release before (it advertises delegate protocol 0). a's weights reach b,
// a weight change alone is sent at once as an up/down change is; c is sent
// version-2 batches it decodes (no bad message) and keeps up/down; b sees
// c's views with an unknown weight, and the members' Weights say who reads
// them.
func TestWeightsRollingUpgrade(t *testing.T) {
	gs := cluster3With(t, func(c *Config) { c.olderRelease = true })
	a, b, c := gs[0], gs[1], gs[2]
	for _, g := range gs {
		for _, m := range g.Members() {
			if want := m.Name != "c"; m.Weights != want {
				t.Errorf("%s: member %s Weights %v, want %v", g.Name(), m.Name, m.Weights, want)
			}
		}
	}

	const tg = "tcp/10.0.1.1:80#h1"
	if err := a.Publish([]Observation{{Target: tg, Up: true, Weight: weight(10)}}); err != nil {
		t.Fatal(err)
	}
	if err := c.Publish([]Observation{{Target: tg, Up: true}}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "a's weight 10 on b, unknown on c; c's view unknown on a and b", func() error {
		for _, err := range []error{weightIs(b, "a", tg, weight(10), false), weightIs(c, "a", tg, nil, true),
			weightIs(a, "c", tg, nil, true), weightIs(b, "c", tg, nil, true)} {
			if err != nil {
				return err
			}
		}
		return nil
	})

	// A change of the weight alone counts as a change (sent at once,
	// before refreshes).
	before := a.Stats().StateChanges
	if err := a.Publish([]Observation{{Target: tg, Up: true, Weight: weight(5)}}); err != nil {
		t.Fatal(err)
	}
	if got := a.Stats().StateChanges; got != before+1 {
		t.Errorf("a weight change: StateChanges %d, want %d", got, before+1)
	}
	eventually(t, 5*time.Second, "weight 5 on b", func() error { return weightIs(b, "a", tg, weight(5), false) })
	if err := a.Publish([]Observation{{Target: tg, Up: true}}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "the configured weight again on b", func() error { return weightIs(b, "a", tg, nil, false) })
	// c followed every change of a's view (as version 2) and dropped nothing.
	eventually(t, 5*time.Second, "c up to date with a's view", func() error {
		ao, _ := viewOf(a, "a", tg)
		co, ok := viewOf(c, "a", tg)
		if !ok || co.Seq != ao.Seq {
			return fmt.Errorf("c has %+v, a %+v", co, ao)
		}
		return nil
	})
	for _, g := range gs {
		if st := g.Stats(); st.BadMessages != 0 {
			t.Errorf("%s: %d bad messages", g.Name(), st.BadMessages)
		}
	}
	if err := a.Publish([]Observation{{Target: tg, Up: true, Weight: weight(70000)}}); err == nil {
		t.Error("a weight over 65535 was published")
	}
}

// A view learnt without its weight (a full state) is completed by the
// origin's version-3 batch of the same Seq; a record without a weight
// never replaces one with it.
func TestUnknownWeightCompletedBySameSeq(t *testing.T) {
	const tg = "t"
	v := &view{epoch: 1, obs: map[string]Observation{}}
	partial := Observation{Target: tg, Up: true, Seq: 3, WeightUnknown: true}
	full := Observation{Target: tg, Up: true, Seq: 3, Weight: weight(7)}
	if n := applyLocked(v, []Observation{partial}); n != 1 {
		t.Fatalf("first: %d applied", n)
	}
	if n := applyLocked(v, []Observation{full}); n != 1 || v.obs[tg].WeightUnknown || *v.obs[tg].Weight != 7 {
		t.Fatalf("the batch of the same seq: %d applied, %+v", n, v.obs[tg])
	}
	if n := applyLocked(v, []Observation{partial, full}); n != 0 || *v.obs[tg].Weight != 7 {
		t.Fatalf("the same again: %d applied, %+v", n, v.obs[tg])
	}
	newer := Observation{Target: tg, Up: false, Seq: 4, WeightUnknown: true}
	if n := applyLocked(v, []Observation{newer}); n != 1 || !v.obs[tg].WeightUnknown {
		t.Fatalf("a newer seq without a weight: %d applied, %+v", n, v.obs[tg])
	}
}
