package cache_test

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The assertions of the old bench/offheapcache tests that the tests above
// do not already make, moved here when the cache package replaced it.

// Under a budget the cache evicts instead of refusing: it never holds more
// than the budget, every entry set is either cached or was evicted, the
// budget is used rather than wasted, and what is still cached is what was
// last set.
func TestEvictsWithinBudget(t *testing.T) {
	const budget = 2 << 20
	c := newCache(t, budget)
	last := map[string][]byte{}
	for i := range 40000 {
		k := fmt.Appendf(nil, "key-%d", i)
		v := bytes.Repeat([]byte{byte(i)}, 32+i*7919%1000)
		c.Set(k, v)
		last[string(k)] = v
		require.LessOrEqual(t, c.Stats().Bytes, budget)
	}
	st := c.Stats()
	assert.Positive(t, st.Evictions)
	assert.Zero(t, st.Dropped)
	assert.Equal(t, 40000, st.Entries+int(st.Evictions), "every entry is either cached or was evicted")
	assert.Greater(t, st.Bytes, budget/2, "the budget is used, not wasted")
	found := 0
	for k, v := range last {
		if got, ok := c.HasGet(nil, []byte(k)); ok {
			found++
			require.Equal(t, v, got)
		}
	}
	assert.Equal(t, st.Entries, found)
}

// A value larger than the whole budget is not cached, and what was cached
// before stays readable.
func TestValueLargerThanBudget(t *testing.T) {
	c := newCache(t, 1<<20)
	c.Set([]byte("a"), []byte("b"))
	c.Set([]byte("big"), make([]byte, 4<<20))
	assert.False(t, c.Has([]byte("big")))
	assert.LessOrEqual(t, c.Stats().Bytes, 1<<20)
	c.Set([]byte("a"), []byte("b"))
	assert.Equal(t, []byte("b"), c.Get(nil, []byte("a")))
}

// Close frees every block of every entry.
func TestCloseFreesEntries(t *testing.T) {
	c := newCache(t, 1<<20)
	for i := range 100 {
		c.Set(fmt.Appendf(nil, "%d", i), make([]byte, i))
	}
	a := c.Allocator()
	require.GreaterOrEqual(t, a.Stats().LiveBlocks, uint64(100))
	require.NoError(t, c.Close())
	assert.Zero(t, a.Stats().LiveBlocks)
	assert.Zero(t, c.Stats().Entries)
}

// Get with a reused buffer does not allocate on the Go heap.
func TestGetNoAlloc(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector's instrumentation allocates")
	}
	c := newCache(t, 1<<20)
	c.Set([]byte("k"), make([]byte, 500))
	buf := make([]byte, 0, 1024)
	allocs := testing.AllocsPerRun(100, func() {
		var ok bool
		buf, ok = c.HasGet(buf[:0], []byte("k"))
		if !ok {
			panic("miss")
		}
	})
	assert.Zero(t, allocs)
}
