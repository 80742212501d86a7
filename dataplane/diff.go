package dataplane

import (
	"slices"
	"sort"
)

// Diff returns the changes that turn table from into table to, in the order
// the Op constants give (destination deletions first, destination additions
// last), each group sorted by key so the result is deterministic. Work is
// proportional to the size of the tables only where they differ per service:
// an unchanged service costs one comparison per destination.
func Diff(from, to Table) []Change {
	var out []Change
	for _, k := range sortedKeys(from) {
		f := from[k]
		t, keep := to[k]
		if !keep {
			// Deleting the service takes its destinations with it.
			out = append(out, Change{Op: DeleteService, Service: f.Service})
			continue
		}
		for _, dk := range sortedKeys(f.Dests) {
			if _, ok := t.Dests[dk]; !ok {
				out = append(out, Change{Op: DeleteDest, Service: t.Service, Dest: f.Dests[dk]})
			}
		}
	}
	for _, k := range sortedKeys(to) {
		t := to[k]
		f, had := from[k]
		switch {
		case !had:
			out = append(out, Change{Op: AddService, Service: t.Service})
		case !f.Service.Equal(t.Service):
			out = append(out, Change{Op: UpdateService, Service: t.Service})
		}
		for _, dk := range sortedKeys(t.Dests) {
			d := t.Dests[dk]
			old, ok := f.Dests[dk]
			switch {
			case !had || !ok:
				out = append(out, Change{Op: AddDest, Service: t.Service, Dest: d})
			case old != d:
				out = append(out, Change{Op: UpdateDest, Service: t.Service, Dest: d})
			}
		}
	}
	slices.SortStableFunc(out, func(a, b Change) int { return int(a.Op) - int(b.Op) })
	return out
}

// Apply records a successful change in t (the reconciler's cache of what
// the kernel holds).
func (t Table) Apply(c Change) {
	k := c.Service.Key()
	switch c.Op {
	case AddService, UpdateService:
		vs, ok := t[k]
		if !ok {
			vs.Dests = map[string]Destination{}
		}
		vs.Service = c.Service
		t[k] = vs
	case DeleteService:
		delete(t, k)
	case AddDest, UpdateDest:
		if vs, ok := t[k]; ok {
			vs.Dests[c.Dest.Key()] = c.Dest
		}
	case DeleteDest:
		if vs, ok := t[k]; ok {
			delete(vs.Dests, c.Dest.Key())
		}
	}
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}
