package main

// Flags that set fields of an object (a service spec, a real server) are
// bound through one table per object: each flag parses into a field of a
// scratch object, and apply copies the field of every flag that was given
// into the target (the current object for update, the defaults for add).
// What a flag does beyond copying one field (a forwarding shorthand, a
// value to parse further) stays code next to the table.

// fieldFlag binds a flag to the field copy copies from the scratch object.
type fieldFlag[T any] struct {
	flag string
	copy func(dst, src *T)
}

// applyFields copies, for every flag of table that was given, its field
// from scratch into dst.
func applyFields[T any](f *flagSet, table []fieldFlag[T], dst, scratch *T) {
	for _, ff := range table {
		if f.isSet(ff.flag) {
			ff.copy(dst, scratch)
		}
	}
}
