//go:build race

package main

// raceEnabled reports whether the race detector is on: its shadow memory
// grows with every byte a run writes, so the process's RSS is no longer
// the heap's.
const raceEnabled = true
