package alloc_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/brkmap/alloc"
)

// TestBlockSize holds BlockSize to what UsableSize reports for the block
// Malloc really returns, for every policy, across the class sizes, the
// page-run sizes and the mapped sizes.
func TestBlockSize(t *testing.T) {
	sizes := []int{0, 1, 15, 16, 17, 100, 1023, 1024, 1025, 4000, 4096, 4097, 30000, 32768, 32769,
		40000, 65536, 100000, 128<<10 - 1, 128 << 10, 128<<10 + 1, 300000, 1 << 20}
	for n := 1; n <= 2048; n += 7 {
		sizes = append(sizes, n)
	}
	for _, cfg := range []alloc.Config{
		{},
		{Policy: alloc.PolicyBrk},
		{Policy: alloc.PolicyMmap},
		{MmapThreshold: 4096},
		{Debug: true},
	} {
		a, err := alloc.New(cfg)
		require.NoError(t, err)
		for _, n := range sizes {
			b, err := a.Malloc(n)
			require.NoError(t, err)
			want := a.UsableSize(b)
			assert.Equal(t, want, a.BlockSize(n), "config %+v, %d bytes", cfg, n)
			assert.GreaterOrEqual(t, a.BlockSize(n), n)
			require.NoError(t, a.Free(b))
		}
		assert.Zero(t, a.BlockSize(-1))
		require.NoError(t, a.Close())
	}
}
