package slab

import _ "unsafe" // for go:linkname

// procPin pins the calling goroutine to its P (no preemption, no migration)
// and returns the P's id; procUnpin undoes it. They are the runtime's own,
// as sync.Pool uses them: a plain increment and decrement of the M's lock
// count, no atomic instruction (about 2.5 ns a pair here). Nothing between
// the two may block, allocate Go memory or take a lock that can be
// contended: the slow paths below always unpin first.
//
//go:linkname procPin runtime.procPin
func procPin() int

//go:linkname procUnpin runtime.procUnpin
func procUnpin()
