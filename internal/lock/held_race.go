//go:build race

package lock

import "sync"

// Mutex is a sync.Mutex that remembers, in race builds, that it is held.
type Mutex struct {
	mu   sync.Mutex
	held bool // written only while mu is held
}

// Lock locks m.
func (m *Mutex) Lock() {
	m.mu.Lock()
	m.held = true
}

// Unlock unlocks m.
func (m *Mutex) Unlock() {
	m.held = false
	m.mu.Unlock()
}

// AssertHeld panics unless m is held. A caller that does not hold m also
// reads held while another goroutine may write it, which the race detector
// reports as well.
func (m *Mutex) AssertHeld() {
	if !m.held {
		panic("lock: mutex not held")
	}
}
