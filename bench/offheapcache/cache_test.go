package offheapcache

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/brkmap/alloc"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"
)

// checkAccounting holds the cache's counters against the allocator's: one
// live block per entry holding exactly its key and value, so every value
// dropped has been freed.
func checkAccounting(t require.TestingT, c *Cache) {
	st := c.Stats()
	s := c.Allocator().Stats()
	require.Equal(t, uint64(st.Entries), s.LiveBlocks, "one live block per entry")
	require.Equal(t, st.Bytes, s.LiveBytes, "blocks hold keys and values, nothing else")
	require.Len(t, c.index, st.Entries)
}

// The cache against a plain map: without a budget it is a map.
func TestCacheModel(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		c, err := New(alloc.Config{})
		require.NoError(t, err)
		defer c.Close()
		model := map[string][]byte{}
		keys := rapid.SliceOfNDistinct(rapid.StringN(0, 40, 40), 1, 20, rapid.ID[string]).Draw(t, "keys")
		key := rapid.SampledFrom(keys)
		t.Repeat(map[string]func(*rapid.T){
			"set": func(t *rapid.T) {
				k := key.Draw(t, "k")
				v := rapid.SliceOfN(rapid.Byte(), 0, 2000).Draw(t, "v")
				require.NoError(t, c.Set([]byte(k), v))
				model[k] = v
			},
			"get": func(t *rapid.T) {
				k := key.Draw(t, "k")
				got, ok := c.Get([]byte(k), []byte("prefix:"))
				want, found := model[k]
				require.Equal(t, found, ok)
				require.Equal(t, append([]byte("prefix:"), want...), got, "Get appends the value to dst")
			},
			"delete": func(t *rapid.T) {
				k := key.Draw(t, "k")
				_, found := model[k]
				require.Equal(t, found, c.Delete([]byte(k)))
				delete(model, k)
			},
			"": func(t *rapid.T) {
				require.Equal(t, len(model), c.Len())
				checkAccounting(t, c)
			},
		})
	})
}

// Under a budget the cache evicts instead of failing, the allocator never
// commits past the limit, every evicted value is freed, and what is still
// cached is what was last set.
func TestCacheEvictsWithinLimit(t *testing.T) {
	const limit = 2 << 20
	c, err := New(alloc.Config{Limit: limit})
	require.NoError(t, err)
	defer c.Close()
	last := map[string][]byte{}
	for i := range 40000 {
		k := fmt.Appendf(nil, "key-%d", i)
		v := bytes.Repeat([]byte{byte(i)}, 32+i*7919%1000)
		require.NoError(t, c.Set(k, v))
		last[string(k)] = v
		require.LessOrEqual(t, c.Allocator().Stats().Committed, uint64(limit))
	}
	st := c.Stats()
	assert.Positive(t, st.Evictions)
	assert.Equal(t, 40000, st.Entries+int(st.Evictions), "every entry is either cached or was evicted")
	assert.Greater(t, st.Bytes, uint64(limit/2), "the budget is used, not wasted")
	checkAccounting(t, c)
	found := 0
	for k, v := range last {
		if got, ok := c.Get([]byte(k), nil); ok {
			found++
			require.Equal(t, v, got)
		}
	}
	assert.Equal(t, st.Entries, found)
}

// Eviction takes the least recently used entry of the class first: an
// entry read recently survives, the oldest unread ones go.
func TestCacheEvictsLeastRecentlyUsed(t *testing.T) {
	c, err := New(alloc.Config{Limit: 1 << 20})
	require.NoError(t, err)
	defer c.Close()
	v := make([]byte, 200) // one size class throughout
	key := func(i int) []byte { return fmt.Appendf(nil, "%06d", i) }
	i := 0
	for ; c.Stats().Evictions == 0; i++ {
		require.NoError(t, c.Set(key(i), v))
		if i > 0 {
			_, ok := c.Get(key(0), nil) // keep key 0 hot
			require.True(t, ok)
		}
	}
	_, ok := c.Get(key(0), nil)
	assert.True(t, ok, "the hot entry survives")
	_, ok = c.Get(key(1), nil)
	assert.False(t, ok, "the oldest cold entry was evicted first")
	_, ok = c.Get(key(i-1), nil)
	assert.True(t, ok, "the newest entry is cached")
}

// A pair larger than the whole budget fails with ErrOutOfMemory.
func TestCacheTooBig(t *testing.T) {
	c, err := New(alloc.Config{Limit: 1 << 20})
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.Set([]byte("a"), []byte("b")))
	err = c.Set([]byte("big"), make([]byte, 4<<20))
	require.ErrorIs(t, err, alloc.ErrOutOfMemory)
	_, ok := c.Get([]byte("big"), nil)
	assert.False(t, ok)
	checkAccounting(t, c)
}

// Close frees every entry; a closed cache finds nothing and refuses Set.
func TestCacheClose(t *testing.T) {
	c, err := New(alloc.Config{})
	require.NoError(t, err)
	for i := range 100 {
		require.NoError(t, c.Set(fmt.Appendf(nil, "%d", i), make([]byte, i)))
	}
	a := c.Allocator()
	require.Equal(t, uint64(100), a.Stats().LiveBlocks)
	require.NoError(t, c.Close())
	require.NoError(t, c.Close(), "closing twice is not an error")
	_, ok := c.Get([]byte("1"), nil)
	assert.False(t, ok)
	assert.ErrorIs(t, c.Set([]byte("x"), nil), alloc.ErrClosed)
	assert.Zero(t, c.Len())
}

// Get with a reused buffer does not allocate on the Go heap.
func TestCacheGetNoAlloc(t *testing.T) {
	c, err := New(alloc.Config{})
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.Set([]byte("k"), make([]byte, 500)))
	buf := make([]byte, 0, 1024)
	allocs := testing.AllocsPerRun(100, func() {
		var ok bool
		buf, ok = c.Get([]byte("k"), buf[:0])
		if !ok {
			panic("miss")
		}
	})
	assert.Zero(t, allocs)
}
