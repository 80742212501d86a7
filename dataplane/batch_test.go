package dataplane

import (
	"maps"
	"slices"
	"testing"
)

func TestBatchKeptAndGiven(t *testing.T) {
	cache := table(2, 3)
	s1, s2 := svc(1), svc(2)
	b := NewBatch(cache, []Change{
		{Op: DeleteDest, Service: s1, Dest: dst(1, 1)},
		{Op: UpdateService, Service: s1},
		{Op: AddDest, Service: s1, Dest: dst(7, 1)},
		{Op: UpdateDest, Service: s1, Dest: dst(2, 5)},
		{Op: AddDest, Service: s2, Dest: dst(8, 1)},
		{Op: DeleteDest, Service: s2, Dest: dst(8, 1)},
	})
	var kept []string
	for _, d := range b.Kept(s1.Key()) {
		kept = append(kept, d.Key())
	}
	if want := []string{dst(3, 1).Key()}; !slices.Equal(kept, want) {
		t.Errorf("Kept(s1) = %v, want %v (the cached destinations no change names)", kept, want)
	}
	if got := slices.Sorted(maps.Keys(b.Given(s1.Key()))); !slices.Equal(got, []string{dst(2, 1).Key(), dst(7, 1).Key()}) {
		t.Errorf("Given(s1) = %v", got)
	}
	if got := b.Given(s2.Key()); len(got) != 0 {
		t.Errorf("Given(s2) = %v: added then deleted", got)
	}
	if !b.Cached(s1.Key()) || b.Cached(svc(9).Key()) {
		t.Error("Cached")
	}
	if got := NewBatch(cache, []Change{{Op: DeleteService, Service: s1}}).Kept(s1.Key()); got != nil {
		t.Errorf("a batch that deletes the service keeps %v", got)
	}
}
