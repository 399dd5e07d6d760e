// Package lock is a mutex whose holder can be asserted: helpers that need
// a lock held are named …Locked and begin with AssertHeld, as the Go
// runtime's mheap.go does with assertLockHeld. The assertion is compiled
// only into race builds (held_race.go); in every other build Mutex is a
// sync.Mutex and AssertHeld is empty.
package lock
