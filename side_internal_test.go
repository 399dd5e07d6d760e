package alloc

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestSideOnlyWithTheHeap: the region has a side (a 128th of it, for the
// best-fit heap's bitmaps) exactly when the allocator has the heap — not
// under Debug or PolicyMmap — and the heap's first run takes its bitmap
// there; a medium block of an allocator without the heap leaves nothing
// to commit.
func TestSideOnlyWithTheHeap(t *testing.T) {
	for _, policy := range []Policy{PolicyThreshold, PolicyBrk, PolicyMmap} {
		for _, debug := range []bool{false, true} {
			t.Run(fmt.Sprintf("%v/debug=%v", policy, debug), func(t *testing.T) {
				a, err := New(Config{Policy: policy, Debug: debug, Reserve: 1 << 30})
				require.NoError(t, err)
				defer a.Close()
				side := a.region.Side()
				require.Equal(t, a.fit != nil, side != nil, "a side exactly when the heap is there")
				require.Equal(t, policy != PolicyMmap && !debug, side != nil)
				b, err := a.Malloc(3000)
				require.NoError(t, err)
				defer func() { require.NoError(t, a.Free(b)) }()
				if side == nil {
					return
				}
				assert.NotZero(t, side.Committed(), "the heap's first run's bitmap in the side")
				assert.NotZero(t, a.Stats().MetadataBytes)
			})
		}
	}
}
