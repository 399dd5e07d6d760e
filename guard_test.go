package alloc_test

import (
	"encoding/json"
	"testing"

	"github.com/brkmap/alloc"
	"github.com/brkmap/alloc/stats"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Every method of a zero Allocator answers ErrNotInitialized (or its zero
// value) instead of dereferencing nil, and it is not mistaken for a closed one.
func TestZeroAllocator(t *testing.T) {
	var a alloc.Allocator
	for name, call := range map[string]func() error{
		"Malloc":       func() error { _, err := a.Malloc(10); return err },
		"Malloc(0)":    func() error { _, err := a.Malloc(0); return err },
		"Malloc large": func() error { _, err := a.Malloc(1 << 20); return err },
		"Calloc":       func() error { _, err := a.Calloc(10); return err },
		"AlignedAlloc": func() error { _, err := a.AlignedAlloc(4096, 10); return err },
		"Realloc":      func() error { _, err := a.Realloc(make([]byte, 8), 16); return err },
		"Realloc(nil)": func() error { _, err := a.Realloc(nil, 16); return err },
		"Free":         func() error { return a.Free(make([]byte, 8)) },
		"Close":        a.Close,
		"NewObject":    func() error { _, err := alloc.NewObject[int64](&a); return err },
		"MakeSlice":    func() error { _, err := alloc.MakeSlice[int32](&a, 4); return err },
		"NewBuffer":    func() error { _, err := a.NewBuffer(64); return err },
	} {
		err := call()
		assert.ErrorIs(t, err, alloc.ErrNotInitialized, name)
		assert.NotErrorIs(t, err, alloc.ErrClosed, name)
	}
	assert.NoError(t, a.Free(nil), "Free(nil) is a no-op everywhere")
	assert.Zero(t, a.UsableSize(make([]byte, 8)))
	assert.Zero(t, a.Trim())
	assert.Equal(t, stats.Snapshot{}, a.Stats())
	assert.Equal(t, stats.Snapshot{}, a.Counters())
	assert.Empty(t, a.HeapProfile().Records)
	assert.Equal(t, stats.RegionMap{}, a.RegionMap())
}

// The shared Default allocator cannot be closed by one of its users.
func TestDefaultRefusesClose(t *testing.T) {
	a := alloc.Default()
	require.ErrorIs(t, a.Close(), alloc.ErrDefaultClose)
	b, err := a.Malloc(100)
	require.NoError(t, err, "still open for everyone else")
	require.NoError(t, a.Free(b))
}

func TestInvalidConfig(t *testing.T) {
	for name, cfg := range map[string]alloc.Config{
		"policy":          {Policy: alloc.Policy(7)},
		"negative policy": {Policy: -1},
		"huge pages":      {HugePages: alloc.HugePages(3)},
		"negative huge":   {HugePages: -1},
		"threshold":       {MmapThreshold: -1},
		"reserve":         {Reserve: -4096},
		"limit":           {Limit: -1},
	} {
		a, err := alloc.New(cfg)
		assert.Nil(t, a, name)
		assert.ErrorIs(t, err, alloc.ErrInvalidConfig, name)
	}
	// negative sizes are still ErrInvalidSize too
	_, err := alloc.New(alloc.Config{Limit: -1})
	assert.ErrorIs(t, err, alloc.ErrInvalidSize)
	// the knobs whose negative values mean something stay valid
	a, err := alloc.New(alloc.Config{TrimThreshold: -1, TopPad: -1})
	require.NoError(t, err)
	require.NoError(t, a.Close())
}

// Counters is Stats without the measuring: the same counters, no mincore.
func TestCountersAreStatsWithoutMeasuring(t *testing.T) {
	a := newAlloc(t, alloc.Config{})
	var blocks [][]byte
	for _, n := range []int{16, 100, 3000, 40 << 10, 1 << 20} {
		b, err := a.Malloc(n)
		require.NoError(t, err)
		clear(b)
		blocks = append(blocks, b)
	}
	before := a.Counters()
	c := a.Counters()
	assert.Equal(t, before.Mincore, c.Mincore, "Counters makes no mincore call")
	assert.False(t, c.ResidentMeasured)
	assert.Zero(t, c.Resident)
	assert.Zero(t, c.ArenaResident)
	assert.Zero(t, c.MmapResident)

	s := a.Stats()
	assert.True(t, s.ResidentMeasured)
	assert.Positive(t, s.Resident, "every block was written")
	assert.Greater(t, s.Mincore, c.Mincore, "Stats measures")
	// everything else agrees (MinorFaults is the process's and moves on its own)
	c.Mincore, c.MinorFaults, c.ResidentMeasured = s.Mincore, s.MinorFaults, true
	c.Resident, c.ArenaResident, c.MmapResident, c.HugeResident = s.Resident, s.ArenaResident, s.MmapResident, s.HugeResident
	assert.Equal(t, s, c)
	assert.Equal(t, uint64(5), c.LiveBlocks)
	for _, b := range blocks {
		require.NoError(t, a.Free(b))
	}
}

// A Snapshot in JSON has snake_case names and lists only the classes in use.
func TestSnapshotJSON(t *testing.T) {
	a := newAlloc(t, alloc.Config{ColdBlocks: -1}) // the block in its class
	b, err := a.Malloc(100)
	require.NoError(t, err)
	defer func() { require.NoError(t, a.Free(b)) }()
	s := a.Stats()
	require.Len(t, s.Classes, 72)

	raw, err := json.Marshal(s)
	require.NoError(t, err)
	var m map[string]any
	require.NoError(t, json.Unmarshal(raw, &m))
	assert.EqualValues(t, 1, m["live_blocks"])
	assert.EqualValues(t, 100, m["live_bytes"])
	assert.Contains(t, m, "resident_bytes")
	assert.Contains(t, m, "mmap_calls")
	require.Len(t, m["classes"], 1, "only the class holding the block")

	var back stats.Snapshot
	require.NoError(t, json.Unmarshal(raw, &back))
	require.Len(t, back.Classes, 1)
	assert.Equal(t, uint64(a.UsableSize(b)), back.Classes[0].Size)
	assert.Equal(t, uint64(1), back.Classes[0].LiveBlocks)
	back.Classes = s.Classes
	assert.Equal(t, s, back, "every other field survives the round trip")
}
