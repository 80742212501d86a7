package nft

import (
	"strings"
	"testing"

	"github.com/google/nftables"
	"github.com/raftlb/raftlb/dataplane"
)

// deleteBehindBack removes every object of service s from the kernel
// through a connection of its own, as an operator's nft delete would:
// its dispatch entry, its chain and pin chains, its sets.
func deleteBehindBack(t *testing.T, ns string, s dataplane.Service) {
	t.Helper()
	c := side(t, ns)
	vmap, key := dispatchEntry(s)
	if err := c.SetDeleteElements(&nftables.Set{Table: raftlbTable, Name: vmap, IsMap: true}, []nftables.SetElement{{Key: key}}); err != nil {
		t.Fatal(err)
	}
	chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyINet)
	if err != nil {
		t.Fatal(err)
	}
	var mine []*nftables.Chain
	for _, ch := range chains {
		if ch.Table.Name == tableName && strings.HasSuffix(ch.Name, suffix(s)) || strings.HasPrefix(ch.Name, pinSetOf(s)+"_") {
			mine = append(mine, ch)
			c.FlushChain(ch)
		}
	}
	for _, ch := range mine {
		c.DelChain(ch)
	}
	sets, err := c.GetSets(raftlbTable)
	if err != nil {
		t.Fatal(err)
	}
	for _, set := range sets {
		if set.Name == destsOf(s) || set.Name == pinSetOf(s) {
			c.DelSet(set)
		}
	}
	mustFlush(t, c)
	if got := mustDump(t, openBackend(t, ns)); got[s.Key()].Scheduler != "" || len(got[s.Key()].Dests) != 0 {
		t.Fatalf("%s still in the kernel: %+v", s.Key(), got[s.Key()])
	}
}

// TestStaleCacheDeletedBehindItsBack: a service the cache has was deleted
// with nft behind the backend's back (its own knowledge of the objects is
// stale too). The next change to the service writes all of it back, with
// every cached destination, in that Apply, not at the next resync; a
// persistent one too (its first transaction fails on the pin chains it
// believed were there, the retry writes every object).
func TestStaleCacheDeletedBehindItsBack(t *testing.T) {
	for _, key := range []string{"tcp/10.0.0.1:80", "tcp/10.0.0.1:0", "sctp/[2001:db8::1]:9"} {
		t.Run(key, func(t *testing.T) {
			_, ns, b := nsBackend(t)
			mustDump(t, b) // as the reconciler does at start
			want := sampleTable()
			program(t, b, dataplane.Table{}, want)
			deleteBehindBack(t, ns, want[key].Service)

			next := want.Clone()
			extra := dest("10.1.0.7:80", 2)
			if want[key].Port != 80 {
				extra.Port = want[key].Port
			}
			if want[key].Address.Is6() {
				extra.Address = addr("2001:db8:1::7")
			}
			next[key].Dests[extra.Key()] = extra
			program(t, b, want, next)
			for name, got := range map[string]dataplane.Table{"this backend": mustDump(t, b), "a fresh backend": mustDump(t, openBackend(t, ns))} {
				if d := tableDiff(got, next); d != "" {
					t.Fatalf("%s reads:\n%s\ndrift: %v", name, d, b.DriftReasons())
				}
			}
		})
	}
}

// TestStaleCacheMadeBehindItsBack: the kernel has a service the cache does
// not: programmed by an earlier run that the owned list forgot (seen by the
// last Dump), or written by someone else after it. When the state asks for
// it, the add takes it over and leaves only what the batch gives it, the
// pin chains of a persistent service's other destinations included when
// the Dump saw them. (Those of a persistent service someone else wrote
// after the Dump are not known, and nothing jumps to them any more; the
// next resync reads and deletes them.)
func TestStaleCacheMadeBehindItsBack(t *testing.T) {
	for _, tc := range []struct {
		name, key string
		afterDump bool
	}{
		{"persistent, seen by the dump", "tcp/10.0.0.1:0", false},
		{"seen by the dump", "udp/10.0.0.1:53", false},
		{"written after the dump", "udp/10.0.0.1:53", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, ns, b := nsBackend(t)
			key := tc.key
			want := sampleTable()
			theirs := want.Clone()[key]
			for dk, d := range theirs.Dests {
				d.Weight = 7
				theirs.Dests[dk] = d
				extra := d
				extra.Address = addr("10.1.0.55")
				theirs.Dests[extra.Key()] = extra
			}
			if !tc.afterDump {
				program(t, openBackend(t, ns), dataplane.Table{}, tableOf(theirs))
			}
			mustDump(t, b)
			if tc.afterDump {
				other := openBackend(t, ns)
				mustDump(t, other)
				program(t, other, dataplane.Table{}, tableOf(theirs))
			}
			cache := want.Clone()
			delete(cache, key)
			program(t, b, dataplane.Table{}, cache)
			program(t, b, cache, want)
			if d := tableDiff(mustDump(t, openBackend(t, ns)), want); d != "" {
				t.Fatalf("a fresh backend reads:\n%s", d)
			}
		})
	}
}

// TestReconcilerConvergesOnStaleCache: the reconciler over this backend;
// a service deleted with nft behind its back is back, whole, after the
// next incremental pass, with no error and no drift counted (no resync
// ran).
func TestReconcilerConvergesOnStaleCache(t *testing.T) {
	_, ns, b := nsBackend(t)
	r := dataplane.NewReconciler(b, dataplane.Options{Resync: -1})
	want := sampleTable()
	r.FullPass(dataplane.Desired{Table: want})
	key := "tcp/10.0.0.1:0"
	deleteBehindBack(t, ns, want[key].Service)
	next := want.Clone()
	d := dest("10.1.0.2:0", 5)
	next[key].Dests[d.Key()] = d
	r.Sync(dataplane.Desired{Table: next})
	if st := r.Status(); len(st.Errors) != 0 || st.DriftRepairs != 0 || st.KernelOps == 0 {
		t.Fatalf("status %+v", st)
	}
	if diff := tableDiff(mustDump(t, openBackend(t, ns)), next); diff != "" {
		t.Fatal(diff)
	}
}
