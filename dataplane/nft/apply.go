package nft

import (
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"

	"github.com/raftlb/raftlb/dataplane"
)

var (
	errNoService   = errors.New("no such service (the batch did not create it)")
	errPlaceholder = errors.New("service was changed behind raftlb's back; update it to rewrite it")
)

// group is the changes of one service in a batch, folded into the state
// the service ends in.
type group struct {
	key     string
	id      dataplane.Service // the service's identity
	before  svcState          // what is known of the service's kernel objects
	was     dataplane.VirtualService
	exists  bool // the service exists after the changes
	vs      dataplane.VirtualService
	changes []dataplane.Change // those that passed validation
	epochs  map[string]uint32  // persistent: by destination key (0 or missing: draw one)
	pins    []string           // pin chains written
}

// Apply makes the changes in one nftables transaction: every service the
// batch touches is rewritten whole (its chain, sets and dispatch entry),
// no other object is touched. A touched service's other destinations come
// from programmed, the reconciler's cache; the backend keeps no copy of
// it. Changes that are invalid or not expressible fail on their own
// before anything is sent. If the transaction fails, each touched service
// is retried in a transaction of its own, writing all of its objects
// whatever the kernel was last known to hold (so that a service changed
// behind raftlb's back is written back whole), and one bad service cannot
// block the others; the changes of services that still fail are
// returned, each with the kernel's error.
//
// Every change is idempotent (see dataplane.Backend): adding a service or
// destination that exists replaces it, updating one that does not
// creates it, deleting one that does not succeeds. Rewriting services
// whole makes a stale cache converge at the next change to the service:
// the kernel then holds exactly the cache's service with the changes.
func (b *Backend) Apply(programmed dataplane.Table, changes []dataplane.Change) []dataplane.ChangeError {
	groups, errs := b.fold(programmed, changes)
	if len(groups) == 0 {
		return errs
	}
	if err := b.commit(groups); err == nil {
		return errs
	}
	for _, g := range groups {
		g.before.ok, g.before.absent = false, false // trust nothing of what was known of it
		if err := b.commit([]*group{g}); err != nil {
			for _, c := range g.changes {
				errs = append(errs, dataplane.ChangeError{Change: c, Err: fmt.Errorf("nftables transaction for %s: %w", g.key, err)})
			}
		}
	}
	return errs
}

// fold validates the changes in order against the state each service is
// in at that point, and returns the touched services (sorted by key) and
// the refused changes.
func (b *Backend) fold(programmed dataplane.Table, changes []dataplane.Change) ([]*group, []dataplane.ChangeError) {
	byKey := map[string]*group{}
	var errs []dataplane.ChangeError
	for _, c := range changes {
		k := c.Service.Key()
		g := byKey[k]
		if g == nil {
			g = b.newGroup(programmed, k, identity(c.Service))
			byKey[k] = g
		}
		switch write, err := g.apply(c); {
		case err != nil:
			errs = append(errs, dataplane.ChangeError{Change: c, Err: err})
		case write:
			g.changes = append(g.changes, c)
		}
	}
	var out []*group
	for _, k := range slices.Sorted(maps.Keys(byKey)) {
		g := byKey[k]
		if len(g.changes) == 0 {
			continue
		}
		if g.exists && g.vs.Scheduler == "" { // only destination changes to a placeholder
			for _, c := range g.changes {
				errs = append(errs, dataplane.ChangeError{Change: c, Err: errPlaceholder})
			}
			continue
		}
		out = append(out, g)
	}
	return out, errs
}

// newGroup starts a group from the reconciler's cache of the service and
// from what is known of its kernel objects: what was dumped or written,
// nothing if a dump did not see it, or (before the first dump) unknown.
// The objects are trusted to be exactly the cached service only when both
// say so.
func (b *Backend) newGroup(programmed dataplane.Table, key string, id dataplane.Service) *group {
	g := &group{key: key, id: id}
	switch st, ok := b.state[key]; {
	case ok:
		g.before = *st
	case b.dumped:
		g.before = svcState{ok: true, absent: true}
	}
	cached, ok := programmed[key]
	if ok {
		g.exists, g.was = true, cached
		g.vs = dataplane.VirtualService{Service: cached.Service, Dests: maps.Clone(cached.Dests)}
	}
	if g.before.ok && !g.before.absent && !ok {
		g.before.ok = false // objects of a service the cache does not know
	}
	g.epochs = maps.Clone(g.before.epochs)
	return g
}

// apply folds one change into the group, or says why it is refused;
// write is false for a change that leaves nothing to write (deleting a
// destination of a service that does not exist).
func (g *group) apply(c dataplane.Change) (write bool, err error) {
	switch c.Op {
	case dataplane.AddService, dataplane.UpdateService:
		if err := validateService(c.Service); err != nil {
			return false, err
		}
		if !g.exists {
			g.vs.Dests = map[string]dataplane.Destination{}
		}
		if g.vs.Timeout == 0 { // becoming persistent: everyone starts afresh
			g.epochs = nil
		}
		g.vs.Service, g.exists = c.Service, true
		return true, nil
	case dataplane.DeleteService:
		g.vs, g.exists, g.epochs = dataplane.VirtualService{}, false, nil
		return true, nil
	}
	k := c.Dest.Key()
	if c.Op == dataplane.DeleteDest {
		delete(g.vs.Dests, k)
		delete(g.epochs, k)
		return g.exists, nil
	}
	if !g.exists {
		return false, errNoService
	}
	if err := validateDest(g.vs.Service, c.Dest); err != nil {
		return false, err
	}
	next := dataplane.VirtualService{Service: g.vs.Service, Dests: maps.Clone(g.vs.Dests)}
	next.Dests[k] = c.Dest
	if _, err := keepsPort(next); err != nil {
		return false, err
	}
	if _, had := g.vs.Dests[k]; c.Op == dataplane.AddDest || !had {
		delete(g.epochs, k) // a new destination gets a new epoch
	}
	g.vs.Dests[k] = c.Dest
	return true, nil
}

// drawEpochs gives every destination of a persistent service an epoch,
// keeping those it has, and returns them.
func (g *group) drawEpochs() map[string]uint32 {
	if g.vs.Timeout == 0 {
		g.epochs = nil
		return nil
	}
	if g.epochs == nil {
		g.epochs = map[string]uint32{}
	}
	for k := range g.epochs {
		if _, ok := g.vs.Dests[k]; !ok {
			delete(g.epochs, k)
		}
	}
	for k := range g.vs.Dests {
		for g.epochs[k] == 0 {
			g.epochs[k] = rand.Uint32()
		}
	}
	return g.epochs
}

// commit writes the groups in one transaction and, if the kernel accepts
// it, records them as programmed.
func (b *Backend) commit(groups []*group) error {
	if err := b.ensureConn(); err != nil {
		return err
	}
	x := &txn{c: b.conn, t: b.t}
	err := b.build(x, groups)
	if err == nil {
		b.deadline()
		err = b.conn.Flush()
	}
	b.lastMsgs = x.msgs
	if err != nil {
		b.baseOK = false // the retry rewrites the base too
		_ = b.reconnect()
		return err
	}
	b.baseOK = true
	for _, g := range groups {
		if g.exists {
			b.state[g.key] = &svcState{ok: true, elem: elemOurs, pins: g.pins, epochs: g.epochs}
		} else {
			delete(b.state, g.key)
		}
	}
	return nil
}

func (b *Backend) build(x *txn, groups []*group) error {
	if !b.baseOK {
		if err := x.base(); err != nil {
			return err
		}
	}
	for _, g := range groups {
		if !g.exists {
			if g.before.absent {
				continue // added and deleted within the batch
			}
			if err := x.deleteService(g.id, g.before); err != nil {
				return err
			}
			continue
		}
		p, err := planService(g.vs, g.drawEpochs())
		if err != nil {
			return err
		}
		if err := x.writeService(p, g.before, g.was); err != nil {
			return err
		}
		g.pins = g.pins[:0]
		for _, pin := range p.pins {
			g.pins = append(g.pins, pin.name)
		}
	}
	return nil
}
