package nft

import (
	"fmt"
	"slices"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/raftlb/raftlb/dataplane"
)

// elemState is what a dispatch map holds for a service's key.
type elemState int

const (
	elemNone    elemState = iota // no entry
	elemOurs                     // goto the service's own chain
	elemForeign                  // something else (drift)
)

// svcState is what the backend knows of one service's objects in the
// kernel. It is not a copy of the desired state: which services exist with
// which destinations is the reconciler's cache alone (Apply is given it).
// These are what the kernel holds besides, that nothing else records and
// that addressing the objects needs:
//
//   - ok: the objects were written by the last transaction that touched
//     the service, or verified by the last Dump, so they are exactly what
//     Apply generates for the service the cache holds (with absent: there
//     are none), and pin chains that stay the same need not be rewritten
//     (which is what keeps remembered clients). Cleared when a
//     transaction fails, so that the retry writes every object.
//   - elem: the dispatch map's entry for the key; a foreign one must be
//     deleted before ours is added (the kernel does not overwrite an
//     element that has other data).
//   - pins: the per_ chains the kernel holds, so that stale ones can be
//     deleted (their names are not in the cache: one per destination
//     ever programmed, including deleted ones).
//   - epochs: the random numbers in the keys of a persistent service's
//     remembered clients, per destination (kernel data; the cache has no
//     place for them): rewriting a service with the same epochs keeps
//     its clients where they were.
type svcState struct {
	ok     bool
	absent bool
	elem   elemState
	pins   []string
	epochs map[string]uint32
}

// txn buffers one nftables transaction (sent by Conn.Flush as one batch,
// which the kernel commits or aborts as a whole). Every write is idempotent
// against what may already exist, so a service is rewritten correctly
// whatever drift left behind: chains and sets are added (a no-op when they
// exist) before they are flushed or deleted.
type txn struct {
	c    *nftables.Conn
	t    *nftables.Table
	ids  uint32 // set IDs used in this batch
	msgs int    // netlink messages queued (tests and benchmarks)
}

func (x *txn) nextID() uint32 { x.ids++; return x.ids }

// base (re)writes the table, the base chains, their dispatch rules and the
// dispatch maps (whose entries are left alone).
func (x *txn) base() error {
	x.c.AddTable(x.t)
	x.msgs++
	for _, name := range baseMaps {
		def := dispatchMapDef(x.t, name)
		def.ID = x.nextID()
		if err := x.c.AddSet(def, nil); err != nil {
			return fmt.Errorf("dispatch map %s: %w", name, err)
		}
		x.msgs++
	}
	for _, ch := range baseChainDefs(x.t) {
		x.c.AddChain(ch)
		x.c.FlushChain(ch)
		x.msgs += 2
		for _, ex := range baseRules() {
			x.c.AddRule(&nftables.Rule{Table: x.t, Chain: ch, Exprs: ex})
			x.msgs++
		}
	}
	return nil
}

// writeService makes the kernel hold p, whatever it held for the service
// before (st; was is the cached service those objects were written for,
// when st.ok). Flushing a chain first unbinds everything its old rules
// referenced, so sets can then change and stale objects go. The pin chains
// of destinations that stay are left alone when nothing they depend on
// changed, so a weight change rewrites the service chain and the dst_ set
// only, and remembered clients are kept.
func (x *txn) writeService(p *servicePlan, st svcState, was dataplane.VirtualService) error {
	chain := x.flushedChain(p.chain)
	keep := pinsUnchanged(p, st, was) // pin chains left as they are
	rewrite := map[string]*nftables.Chain{}
	for _, pin := range p.pins {
		if !keep[pin.name] {
			rewrite[pin.name] = x.flushedChain(pin.name)
		}
	}
	var stale []string
	for _, name := range st.pins {
		if !slices.ContainsFunc(p.pins, func(pp pinPlan) bool { return pp.name == name }) {
			stale = append(stale, name)
			x.flushedChain(name)
		}
	}
	if err := x.destSet(p); err != nil {
		return err
	}
	if err := x.pinSet(p, st, was); err != nil {
		return err
	}
	for _, pin := range p.pins {
		if c := rewrite[pin.name]; c != nil {
			if err := x.rules(p, c, pin.rules); err != nil {
				return err
			}
		}
	}
	if err := x.rules(p, chain, p.rules); err != nil {
		return err
	}
	x.deleteChains(stale)
	if p.pinSet == "" && (!st.ok || (!st.absent && was.Timeout > 0)) {
		if err := x.deleteSet(pinSetDef(x.t, pinSetOf(p.vs.Service), p.fam)); err != nil {
			return err
		}
	}
	return x.dispatch(p.vs.Service, p.vmap, p.vmapKey, st.elem)
}

// pinSet creates the pin set of a persistent service, emptying it when the
// netmask changed: remembered clients survive every other change.
func (x *txn) pinSet(p *servicePlan, st svcState, was dataplane.VirtualService) error {
	if p.pinSet == "" {
		return nil
	}
	def := pinSetDef(x.t, p.pinSet, p.fam)
	def.ID = x.nextID()
	if err := x.c.AddSet(def, nil); err != nil {
		return fmt.Errorf("set %s: %w", p.pinSet, err)
	}
	x.msgs++
	if st.ok && !st.absent && was.Netmask != p.vs.Netmask {
		x.c.FlushSet(def)
		x.msgs++
	}
	return nil
}

// pinsUnchanged returns the pin chains of p that the kernel already holds
// as planned: st is trusted, the chain existed for the same epoch, and the
// parameters its rules depend on (timeout, netmask, keeping the port) are
// the same.
func pinsUnchanged(p *servicePlan, st svcState, was dataplane.VirtualService) map[string]bool {
	out := map[string]bool{}
	if !st.ok || st.absent || was.Timeout != p.vs.Timeout || was.Netmask != p.vs.Netmask {
		return out
	}
	if keep, err := keepsPort(was); err != nil || keep != p.keep {
		return out
	}
	for _, pin := range p.pins {
		if slices.Contains(st.pins, pin.name) && st.epochs[pin.dest] == p.epochs[pin.dest] {
			out[pin.name] = true
		}
	}
	return out
}

// flushedChain adds (if need be) and flushes a regular chain.
func (x *txn) flushedChain(name string) *nftables.Chain {
	c := &nftables.Chain{Table: x.t, Name: name}
	x.c.AddChain(c)
	x.c.FlushChain(c)
	x.msgs += 2
	return c
}

// destSet rewrites the service's dst_ set.
func (x *txn) destSet(p *servicePlan) error {
	def := destSetDef(x.t, p.destSet, p.fam)
	def.ID = x.nextID()
	if err := x.c.AddSet(def, nil); err != nil {
		return fmt.Errorf("set %s: %w", p.destSet, err)
	}
	x.c.FlushSet(def)
	x.msgs += 2
	if len(p.destElems) == 0 {
		return nil
	}
	x.msgs++
	if err := x.c.SetAddElements(def, p.destElems); err != nil {
		return fmt.Errorf("set %s: %w", p.destSet, err)
	}
	return nil
}

// deleteChains deletes flushed chains.
func (x *txn) deleteChains(names []string) {
	for _, name := range names {
		x.c.DelChain(&nftables.Chain{Table: x.t, Name: name})
		x.msgs++
	}
}

// deleteSet deletes a set that may not exist (it is added first) and that
// nothing references any more.
func (x *txn) deleteSet(def *nftables.Set) error {
	def.ID = x.nextID()
	if err := x.c.AddSet(def, nil); err != nil {
		return err
	}
	x.c.DelSet(def)
	x.msgs += 2
	return nil
}

func (x *txn) rules(p *servicePlan, chain *nftables.Chain, rs []rulePlan) error {
	for _, r := range rs {
		if err := x.rule(p, chain, r); err != nil {
			return err
		}
	}
	return nil
}

// rule adds one rule, with its anonymous schedule map.
func (x *txn) rule(p *servicePlan, chain *nftables.Chain, r rulePlan) error {
	exprs := r.exprs
	if r.sched != nil {
		l := *r.exprs[r.schedAt].(*expr.Lookup)
		m := schedMapDef(x.t, p.fam, x.nextID(), l.DestRegister == 0)
		if err := x.c.AddSet(m, r.sched); err != nil {
			return fmt.Errorf("schedule map in %s: %w", chain.Name, err)
		}
		x.msgs += 2
		l.SetName, l.SetID = m.Name, m.ID
		exprs = append([]expr.Any(nil), r.exprs...)
		exprs[r.schedAt] = &l
	}
	x.c.AddRule(&nftables.Rule{Table: x.t, Chain: chain, Exprs: exprs, UserData: commentData(r.comment)})
	x.msgs++
	return nil
}

// dispatch points the service's dispatch entry at its chain.
func (x *txn) dispatch(s dataplane.Service, vmap string, key []byte, was elemState) error {
	m := &nftables.Set{Table: x.t, Name: vmap, IsMap: true}
	if was == elemForeign {
		if err := x.c.SetDeleteElements(m, []nftables.SetElement{{Key: key}}); err != nil {
			return err
		}
		x.msgs++
	}
	x.msgs++
	return x.c.SetAddElements(m, []nftables.SetElement{{Key: key, VerdictData: &expr.Verdict{Kind: expr.VerdictGoto, Chain: chainOf(s)}}})
}

// deleteService removes everything of service s, whichever parts exist
// (st.pins: the pin chains known to exist).
func (x *txn) deleteService(s dataplane.Service, st svcState) error {
	f := familyFor(s)
	chain := x.flushedChain(chainOf(s))
	for _, name := range st.pins {
		x.flushedChain(name)
	}
	vmap, key := dispatchEntry(s)
	m := &nftables.Set{Table: x.t, Name: vmap, IsMap: true}
	if st.elem != elemForeign {
		// Add our entry so that deleting it cannot fail.
		if err := x.c.SetAddElements(m, []nftables.SetElement{{Key: key, VerdictData: &expr.Verdict{Kind: expr.VerdictGoto, Chain: chain.Name}}}); err != nil {
			return err
		}
		x.msgs++
	}
	if err := x.c.SetDeleteElements(m, []nftables.SetElement{{Key: key}}); err != nil {
		return err
	}
	x.c.DelChain(chain)
	x.msgs += 2
	x.deleteChains(st.pins)
	if err := x.deleteSet(pinSetDef(x.t, pinSetOf(s), f)); err != nil {
		return err
	}
	return x.deleteSet(destSetDef(x.t, destsOf(s), f))
}
