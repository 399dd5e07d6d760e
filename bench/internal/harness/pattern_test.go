package harness

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestFillCheck(t *testing.T) {
	for _, n := range []int{0, 1, 7, 8, 63, 64, 65, 200, 4096, 100003} {
		b := make([]byte, n)
		Fill(b, Tag(3), 0)
		assert.True(t, Check(b, Tag(3)), n)
		if n > 0 {
			assert.False(t, Check(b, Tag(4)), "another id's pattern: %d", n)
			b[n-1] ^= 1
			assert.False(t, Check(b, Tag(3)), "last byte flipped: %d", n)
			b[n-1] ^= 1
		}
		// A grown tail continues the pattern as if filled from the start.
		c := make([]byte, n+77)
		copy(c, b)
		Fill(c, Tag(3), n)
		assert.True(t, Check(c, Tag(3)), n)
	}
}
