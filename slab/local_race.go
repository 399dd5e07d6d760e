//go:build race

package slab

import "sync"

// The race build's Local protocol. localLock: a mutex held by the owner's
// calls around the bins and by Stats while it reads them, so the detector
// sees the reads synchronized (a Local's owner is not pinned: the mutex
// parks, unlike a P cache's). ownerCheck: a field every call of the owner
// writes outside the mutex, so two goroutines using one Local without
// synchronizing — the misuse the type forbids — are reported as a race on
// it.

type localLock struct{ mu sync.Mutex }

func (l *localLock) lock()   { l.mu.Lock() }
func (l *localLock) unlock() { l.mu.Unlock() }

type ownerCheck struct{ calls uint64 }

func (o *ownerCheck) touch() { o.calls++ }
