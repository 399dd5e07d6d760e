//go:build !race

package slab

// The normal build's Local protocol: nothing. Only the owner touches a
// Local's bins; Stats reads their counts without synchronization, as it
// reads a P cache's (see Pool.Stats).

type localLock struct{}

func (*localLock) lock()   {}
func (*localLock) unlock() {}

type ownerCheck struct{}

func (*ownerCheck) touch() {}
