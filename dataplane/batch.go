package dataplane

import "iter"

// Batch is one call of Backend.Apply seen from a backend that makes one
// kernel operation per change (IPVS): what it needs when the kernel
// contradicts the reconciler's cache about a service, so that it can make
// the service what the cache and the changes say without reading the
// whole table. Both answers cost one pass over the batch and are asked
// only on a contradiction.
type Batch struct {
	programmed Table
	changes    []Change
}

// NewBatch describes Apply(programmed, changes).
func NewBatch(programmed Table, changes []Change) Batch {
	return Batch{programmed: programmed, changes: changes}
}

// Cached reports whether the cache holds service key before the batch.
func (b Batch) Cached(key string) bool {
	_, ok := b.programmed[key]
	return ok
}

// Kept returns the cached destinations of service key that no change of
// the batch names: what a service recreated in the middle of the batch
// must be given back (the batch's own changes then make the rest). A
// batch that deletes or adds the whole service keeps none.
func (b Batch) Kept(key string) []Destination {
	vs, ok := b.programmed[key]
	if !ok {
		return nil
	}
	named := map[string]bool{}
	for c := range b.of(key) {
		switch c.Op {
		case AddService, DeleteService:
			return nil
		case AddDest, UpdateDest, DeleteDest:
			named[c.Dest.Key()] = true
		}
	}
	var out []Destination
	for _, dk := range sortedKeys(vs.Dests) {
		if !named[dk] {
			out = append(out, vs.Dests[dk])
		}
	}
	return out
}

// Given returns the keys of the destinations the batch leaves in service
// key (added or updated and not deleted after): all a service the cache
// did not have may hold once the batch is applied.
func (b Batch) Given(key string) map[string]bool {
	out := map[string]bool{}
	for c := range b.of(key) {
		switch c.Op {
		case AddDest, UpdateDest:
			out[c.Dest.Key()] = true
		case DeleteDest:
			delete(out, c.Dest.Key())
		case DeleteService:
			clear(out)
		}
	}
	return out
}

// of yields the batch's changes to service key, in order.
func (b Batch) of(key string) iter.Seq[Change] {
	return func(yield func(Change) bool) {
		for _, c := range b.changes {
			if c.Service.Key() == key && !yield(c) {
				return
			}
		}
	}
}
