//go:build race

package alloc

// raceEnabled: the internal tests run in a race build (fewer rounds: it is
// about ten times slower).
const raceEnabled = true
