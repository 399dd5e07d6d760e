package shmbench

import (
	"errors"
	"os"
	"testing"

	"github.com/brkmap/alloc/bench/internal/child"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestMain serves the worker's job, as bench's main does.
func TestMain(m *testing.M) {
	child.ServeIfChild(map[string]child.Handler{ChildKind: ServeChild})
	os.Exit(m.Run())
}

// Both ways hand every payload over intact, and the figures say what the
// lesson says: the socket way moves every byte through the kernel twice,
// the shm way 8 bytes of Ref (and the one-byte answers); the block is at
// the same offset but (as a rule) another address in the child, which
// sees it live in the pool's Stats; everything is freed at the end, and
// the pool's file keeps the pages it was given.
func TestRun(t *testing.T) {
	cfg := Config{Sizes: []int{4 << 10, 1 << 20}, Bytes: 8 << 20, Min: 4, Max: 64}
	res, err := Run(cfg)
	if errors.Is(err, ErrUnsupported) {
		t.Skip(err)
	}
	require.NoError(t, err)
	require.True(t, res.OK, res.Error)
	require.Len(t, res.Rows, 4)
	assert.Equal(t, cfg.Sizes, res.Sizes())
	for _, n := range cfg.Sizes {
		sock, sh := res.Row(WaySocket, n), res.Row(WayShm, n)
		require.NotNil(t, sock)
		require.NotNil(t, sh)
		assert.Equal(t, cfg.count(n), sock.Payloads)
		assert.Equal(t, float64(n), sock.SocketBytes, "%d: the socket way writes the payload", n)
		assert.Equal(t, float64(2*n+2), sock.CopiedBytes, "%d: written and read, and the answer", n)
		assert.Equal(t, 8.0, sh.SocketBytes, "%d: the shm way writes a Ref", n)
		assert.Equal(t, 18.0, sh.CopiedBytes, "%d", n)
		for _, r := range []*Row{sock, sh} {
			assert.True(t, r.OK, r.Error)
			assert.Positive(t, r.MedianSeconds, "%s %d", r.Way, n)
			assert.GreaterOrEqual(t, r.ParentCPU, 0.0)
			assert.GreaterOrEqual(t, r.ChildCPU, 0.0)
			assert.Positive(t, r.ParentWork, "%s %d: writing the payload takes time", r.Way, n)
			assert.Positive(t, r.ChildWork, "%s %d: reading it too", r.Way, n)
			assert.LessOrEqual(t, r.ParentWork, r.ParentCPU+1e-6, "%s %d: the work is part of the CPU time", r.Way, n)
			assert.LessOrEqual(t, r.ChildWork, r.ChildCPU+1e-6, "%s %d", r.Way, n)
		}
		if n >= 1<<20 {
			assert.Greater(t, sock.Handover(), sh.Handover(),
				"%d: copying the payload twice costs more CPU than passing a Ref", n)
		}
		assert.Nil(t, sock.Warmup)
		b := sh.Warmup
		require.NotNil(t, b)
		assert.True(t, b.HeldByChild)
		assert.Equal(t, b.Offset, b.ParentAddr-b.ParentBase)
		assert.Equal(t, b.Offset, b.ChildAddr-b.ChildBase)
		assert.NotZero(t, b.ChildAddr)
		assert.Equal(t, uint64(1), b.ChildStats.LiveBlocks, "%d: the child sees the parent's one block live", n)
		assert.GreaterOrEqual(t, b.ChildStats.LiveBytes, uint64(n))
		assert.Less(t, b.ChildStats.FreeBytes, res.StatsEmpty.FreeBytes)
	}
	assert.Zero(t, res.StatsEmpty.LiveBlocks)
	assert.Zero(t, res.StatsAfter.LiveBlocks, "the child freed every payload")
	assert.Equal(t, res.StatsEmpty.FreeBytes, res.StatsAfter.FreeBytes, "every page is back in the free runs")
	assert.Zero(t, res.StatsAfter.Recoveries)
	assert.GreaterOrEqual(t, res.FileBytesAfter, res.FileBytesEmpty+1<<20,
		"the file keeps the pages the 1 MiB payloads were written in")
	assert.Positive(t, res.Seconds)
}

// A size the pattern cannot fill, or none, is refused before any child.
func TestRunRefusesBadSizes(t *testing.T) {
	for _, sizes := range [][]int{nil, {0}, {12}, {-8}} {
		_, err := Run(Config{Sizes: sizes, Bytes: 1 << 20, Min: 1, Max: 2})
		assert.Error(t, err, "%v", sizes)
	}
}

// count stays within Min and Max.
func TestCount(t *testing.T) {
	c := DefaultConfig()
	assert.Equal(t, 1000, c.count(4<<10))
	assert.Equal(t, 1000, c.count(64<<10))
	assert.Equal(t, 64, c.count(1<<20))
	assert.Equal(t, 16, c.count(8<<20))
}

// A payload changed in one word fails the check; the pattern differs
// from one payload to the next.
func TestCheck(t *testing.T) {
	b := make([]byte, 4096)
	fill(b, 7)
	assert.True(t, check(b, 7))
	assert.False(t, check(b, 8))
	b[4000] ^= 1
	assert.False(t, check(b, 7))
}
