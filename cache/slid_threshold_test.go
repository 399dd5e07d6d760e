package cache_test

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/brkmap/alloc"
	"github.com/brkmap/alloc/cache"
	"github.com/stretchr/testify/require"
)

// TestRewriteAfterThresholdSlid: an allocator whose mmap threshold was set
// below the slabs' largest class (1000 bytes) and slid up since (the
// index's old tables, mappings, freed): a Set rewrites an entry in place
// only if its new size fits the block (Allocator.BlockSize), so the
// entries beside it keep their values. (BlockSize said whole pages for
// every size between 1000 bytes and 32 KiB there, so an 1100-byte entry
// was rewritten with 1900 bytes over its neighbour.)
func TestRewriteAfterThresholdSlid(t *testing.T) {
	c, err := cache.New(64<<20, cache.WithShards(1),
		cache.WithAllocatorConfig(alloc.Config{MmapThreshold: 1000, DynamicThreshold: true}))
	require.NoError(t, err)
	defer func() { require.NoError(t, c.Close()) }()
	for i := range 20000 {
		c.Set(fmt.Append(nil, "k", i), []byte("v"))
	}
	val := func(i, n int) []byte { return bytes.Repeat([]byte{byte(i)}, n) }
	size := func(i int, rewritten bool) int {
		if rewritten && i%2 == 0 {
			return 1900
		}
		return 1090
	}
	for i := range 64 {
		c.Set(fmt.Append(nil, "big", i), val(i, size(i, false)))
	}
	for i := 0; i < 64; i += 2 {
		c.Set(fmt.Append(nil, "big", i), val(i, size(i, true)))
	}
	for i := range 64 {
		got := c.Get(nil, fmt.Append(nil, "big", i))
		require.True(t, bytes.Equal(val(i, size(i, true)), got), "key %d: %d bytes, want %d", i, len(got), size(i, true))
	}
}
