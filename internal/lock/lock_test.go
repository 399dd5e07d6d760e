package lock

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestAssertHeld(t *testing.T) {
	var m Mutex
	m.Lock()
	assert.NotPanics(t, m.AssertHeld, "held")
	m.Unlock()
	if raceEnabled {
		assert.Panics(t, m.AssertHeld, "not held: the race build checks")
	} else {
		assert.NotPanics(t, m.AssertHeld, "not held: only the race build checks")
	}
}
