package fit

import _ "unsafe" // for go:linkname

// procPin pins the calling goroutine to its P (no preemption, no
// migration) and returns the P's id; procUnpin undoes it: the runtime's
// own, as sync.Pool and package slab use them. Nothing between the two
// may block, allocate Go memory or take a lock that can be contended.
//
//go:linkname procPin runtime.procPin
func procPin() int

//go:linkname procUnpin runtime.procUnpin
func procUnpin()
