//go:build !race

package slab

// Block-state accessors of the normal build: plain loads and stores. A
// block's state is touched only by whoever owns the block at the moment
// (its user, or the cache holding it), so they catch any double free that
// is not itself a data race in the caller.

func loadState(st *uint16) uint16 { return *st }

func storeState(st *uint16, v uint16) { *st = v }

// casState sets *st to v if it holds old.
func casState(st *uint16, old, v uint16) bool {
	if *st != old {
		return false
	}
	*st = v
	return true
}
