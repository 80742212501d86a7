package nft

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/google/nftables"
	"github.com/raftlb/raftlb/dataplane"
)

// manyServices returns n rr services with two destinations each.
func manyServices(n int) dataplane.Table {
	t := dataplane.Table{}
	for i := range n {
		vs := vsOf(svc(fmt.Sprintf("tcp/10.9.%d.%d:80", i/250, i%250+1), "rr"), dest("10.8.0.1:80", 1), dest("10.8.0.2:80", 1))
		t[vs.Key()] = vs
	}
	return t
}

func TestOneChangeTouchesOneService(t *testing.T) {
	_, ns, b := nsBackend(t)
	c := side(t, ns)
	want := sampleTable()
	maps.Copy(want, manyServices(20))
	program(t, b, dataplane.Table{}, want)

	target := svc("tcp/10.0.0.1:0", "rr") // persistent: chain and pins
	target.Timeout = 300
	before := ruleHandles(t, c)
	mustApply(t, b, want, []dataplane.Change{{Op: dataplane.AddDest, Service: target, Dest: dest("10.1.0.3:0", 1)}})
	after := ruleHandles(t, c)
	for chain, hs := range before {
		if !strings.Contains(chain, suffix(target)) && !slices.Equal(hs, after[chain]) {
			t.Errorf("chain %s was rewritten: handles %v, then %v", chain, hs, after[chain])
		}
	}
	if slices.Equal(before[chainOf(target)], after[chainOf(target)]) {
		t.Errorf("the changed service's chain kept its rules")
	}
	if _, ok := after[pinName(target, dest("10.1.0.3:0", 1))]; !ok {
		t.Error("the new destination has no pin chain")
	}
	want[target.Key()].Dests["10.1.0.3:0"] = dest("10.1.0.3:0", 1)

	// The transaction's size does not depend on the other services.
	mustApply(t, b, want, []dataplane.Change{{Op: dataplane.UpdateDest, Service: target, Dest: dest("10.1.0.3:0", 2)}})
	small := b.lastMsgs
	want[target.Key()].Dests["10.1.0.3:0"] = dest("10.1.0.3:0", 2)
	maps.Copy(want, manyServices(200))
	program(t, b, mustDump(t, b), want)
	mustApply(t, b, want, []dataplane.Change{{Op: dataplane.UpdateDest, Service: target, Dest: dest("10.1.0.3:0", 3)}})
	if b.lastMsgs != small {
		t.Errorf("one weight change: %d netlink messages with 27 services, %d with 227", small, b.lastMsgs)
	}
	t.Logf("one weight change in a persistent service with 3 destinations: %d netlink messages", small)
}

func TestBadServiceDoesNotBlockTheBatch(t *testing.T) {
	_, ns, b := nsBackend(t)
	good := vsOf(svc("tcp/10.0.0.1:80", "rr"), dest("10.1.0.1:80", 1))
	bad := vsOf(svc("tcp/10.0.0.2:80", "rr"), dest("10.1.0.1:80", 1))
	program(t, b, dataplane.Table{}, tableOf(vsOf(svc("tcp/10.0.0.3:80", "rr"))))
	// Someone else owns a set with the name the bad service needs, of
	// another type: the kernel refuses the bad service's objects.
	c := side(t, ns)
	if err := c.AddSet(&nftables.Set{Table: raftlbTable, Name: destsOf(bad.Service), KeyType: nftables.TypeIPAddr}, nil); err != nil {
		t.Fatal(err)
	}
	mustFlush(t, c)

	errs := b.Apply(dataplane.Table{}, dataplane.Diff(dataplane.Table{}, tableOf(good, bad)))
	if len(errs) != 2 {
		t.Fatalf("errors %v, want the bad service's two changes", errs)
	}
	for _, e := range errs {
		if e.Change.Service.Key() != bad.Key() || !strings.Contains(e.Error(), bad.Key()) {
			t.Errorf("error %v is not about %s", e, bad.Key())
		}
	}
	got := mustDump(t, b)
	if d := tableDiff(dataplane.Table{good.Key(): got[good.Key()]}, tableOf(good)); d != "" {
		t.Fatalf("the good service was not programmed: %s", d)
	}
}

func TestApplyRefusesWhatItCannotExpress(t *testing.T) {
	_, _, b := nsBackend(t)
	lc := svc("tcp/10.0.0.1:80", "lc")
	rr := svc("tcp/10.0.0.2:80", "rr")
	dr := dest("10.1.0.2:80", 1)
	dr.Forward = "dr"
	errs := b.Apply(dataplane.Table{}, []dataplane.Change{
		{Op: dataplane.AddService, Service: lc},
		{Op: dataplane.AddService, Service: rr},
		{Op: dataplane.AddDest, Service: lc, Dest: dest("10.1.0.1:80", 1)},
		{Op: dataplane.AddDest, Service: rr, Dest: dest("10.1.0.1:80", 1)},
		{Op: dataplane.AddDest, Service: rr, Dest: dr},
	})
	var got []string
	for _, e := range errs {
		got = append(got, e.Change.String())
		if e.Change.Op == dataplane.AddService && (!errors.Is(e.Err, ErrNotExpressible) || !strings.Contains(e.Error(), `"lc"`)) {
			t.Errorf("%v: want a not-expressible error naming lc", e)
		}
	}
	want := []string{"add-service tcp/10.0.0.1:80", "add-dest tcp/10.0.0.1:80 10.1.0.1:80", "add-dest tcp/10.0.0.2:80 10.1.0.2:80"}
	if !slices.Equal(got, want) {
		t.Fatalf("failed changes %v, want %v", got, want)
	}
	if d := tableDiff(mustDump(t, b), tableOf(vsOf(rr, dest("10.1.0.1:80", 1)))); d != "" {
		t.Fatal(d)
	}
}

// TestApplyIsIdempotent: adding what exists, updating what does not and
// deleting what does not all succeed and leave exactly what the cache and
// the changes say; only a destination of a service that neither the cache
// nor the batch has is refused.
func TestApplyIsIdempotent(t *testing.T) {
	_, _, b := nsBackend(t)
	s := svc("tcp/10.0.0.1:80", "rr")
	d := dest("10.1.0.1:80", 1)
	if errs := b.Apply(dataplane.Table{}, []dataplane.Change{{Op: dataplane.AddDest, Service: s, Dest: d}}); len(errs) != 1 || !errors.Is(errs[0].Err, errNoService) {
		t.Fatalf("a destination of no service: %v, want %v", errs, errNoService)
	}
	empty := dataplane.Table{}
	for _, step := range []struct {
		name    string
		from    dataplane.Table
		changes []dataplane.Change
		want    dataplane.Table
	}{
		{"update of an absent service creates it", empty,
			[]dataplane.Change{{Op: dataplane.UpdateService, Service: s}, {Op: dataplane.UpdateDest, Service: s, Dest: d}}, tableOf(vsOf(s, d))},
		{"add of an existing service and destination replaces them", tableOf(vsOf(s, d)),
			[]dataplane.Change{{Op: dataplane.AddService, Service: s}, {Op: dataplane.AddDest, Service: s, Dest: dest("10.1.0.1:80", 4)}},
			tableOf(vsOf(s, dest("10.1.0.1:80", 4)))},
		{"delete of an absent destination", tableOf(vsOf(s, dest("10.1.0.1:80", 4))),
			[]dataplane.Change{{Op: dataplane.DeleteDest, Service: s, Dest: dest("10.1.0.9:80", 1)}}, tableOf(vsOf(s, dest("10.1.0.1:80", 4)))},
		{"delete of a destination of an absent service", tableOf(vsOf(s, dest("10.1.0.1:80", 4))),
			[]dataplane.Change{{Op: dataplane.DeleteDest, Service: svc("udp/10.0.0.9:53", "rr"), Dest: d}}, tableOf(vsOf(s, dest("10.1.0.1:80", 4)))},
		{"delete of an absent service", tableOf(vsOf(s, dest("10.1.0.1:80", 4))),
			[]dataplane.Change{{Op: dataplane.DeleteService, Service: svc("udp/10.0.0.1:53", "rr")}}, tableOf(vsOf(s, dest("10.1.0.1:80", 4)))},
		{"added and deleted in one batch", tableOf(vsOf(s, dest("10.1.0.1:80", 4))),
			[]dataplane.Change{{Op: dataplane.AddService, Service: svc("udp/10.0.0.1:53", "wrr")}, {Op: dataplane.DeleteService, Service: svc("udp/10.0.0.1:53", "wrr")}},
			tableOf(vsOf(s, dest("10.1.0.1:80", 4)))},
	} {
		if errs := b.Apply(step.from, step.changes); len(errs) != 0 {
			t.Fatalf("%s: %v", step.name, errs)
		}
		if d := tableDiff(mustDump(t, b), step.want); d != "" {
			t.Fatalf("%s: %s", step.name, d)
		}
	}
}
