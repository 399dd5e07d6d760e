package alloc_test

import (
	"cmp"
	"context"
	"errors"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/brkmap/alloc"
	"github.com/brkmap/alloc/internal/procfs"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// mapCountChild is set in the environment of the child process that runs
// TestMapCountLimit's real work.
const mapCountChild = "BRKMAP_ALLOC_MAPCOUNT_CHILD"

// TestMapCountLimit runs into the kernel's real limit on mappings
// (vm.max_map_count) under PolicyMmap. Adjacent anonymous mappings merge
// into one, so allocating alone never reaches it; freeing every other
// block splits them, one mapping more per free, until munmap itself
// fails with ENOMEM. That refusal must be ErrOutOfMemory, and once the
// blocks are freed the allocator must work again.
//
// At the limit the Go runtime cannot map memory either and may die, so
// the work runs in a child process (this test binary again) and the
// parent reports how it ended.
func TestMapCountLimit(t *testing.T) {
	if os.Getenv(mapCountChild) == "1" {
		mapCountWork(t)
		return
	}
	if testing.Short() {
		t.Skip("maps and unmaps some 100 000 blocks")
	}
	limit := maxMapCount(t)
	if limit > 1<<18 {
		t.Skipf("vm.max_map_count is %d: too many mappings to reach in a test", limit)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestMapCountLimit$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), mapCountChild+"=1")
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("the child did not finish in time:\n%s", tail(out))
	}
	require.NoError(t, err, "the child failed or died at the map count limit:\n%s", tail(out))
	assert.Contains(t, string(out), "--- PASS: TestMapCountLimit")
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, "oom_test.go") {
			t.Log(strings.TrimSpace(line))
		}
	}
}

func tail(out []byte) string {
	const n = 4000
	if len(out) > n {
		return "…" + string(out[len(out)-n:])
	}
	return string(out)
}

func maxMapCount(t *testing.T) int {
	n := procfs.MaxMapCount()
	if n < 0 {
		t.Skipf("no vm.max_map_count (%s)", procfs.MaxMapCountPath)
	}
	return n
}

func mapCountWork(t *testing.T) {
	limit := maxMapCount(t)
	a, err := alloc.New(alloc.Config{Policy: alloc.PolicyMmap})
	require.NoError(t, err)
	defer a.Close()

	// Enough blocks that freeing every other one passes the limit.
	n := 2*limit + 4096
	blocks := make([][]byte, 0, n) // made before the limit is near
	for len(blocks) < n {
		b, err := a.Malloc(4096)
		if err != nil {
			// merging should keep mmap clear of the limit, but if it is
			// reached here, that too must be ErrOutOfMemory
			require.ErrorIs(t, err, alloc.ErrOutOfMemory)
			t.Logf("mmap refused after %d blocks: %v", len(blocks), err)
			break
		}
		b[0] = 1 // touch one byte: the mapping is real
		blocks = append(blocks, b)
	}
	slices.SortFunc(blocks, func(x, y []byte) int { return cmp.Compare(addr(x), addr(y)) })
	before := a.Stats()
	require.Equal(t, uint64(len(blocks)), before.MmapCount)

	// Free every other block, in address order: each free splits a
	// mapping, until the kernel refuses.
	freed := make([]bool, len(blocks))
	var refusal error
	refusedAt := -1
	for i := 0; i < len(blocks); i += 2 {
		if err := a.Free(blocks[i]); err != nil {
			refusal, refusedAt = err, i
			break
		}
		freed[i] = true
	}
	// At the limit a new mapping that cannot merge is refused too. Try
	// one, then at once make room (freeing odd blocks below the refusal
	// removes whole mappings) before anything else: the Go runtime, and
	// under -race the race detector, need mappings of their own.
	var mapErr error
	var mapped []byte
	if refusal != nil {
		mapped, mapErr = a.AlignedAlloc(1<<20, 4096)
		for i := 1; i < refusedAt && i < 4000; i += 2 {
			if a.Free(blocks[i]) == nil {
				freed[i] = true
			}
		}
	}
	require.Error(t, refusal, "the kernel never refused: %d frees with vm.max_map_count %d", len(blocks)/2, limit)
	t.Logf("munmap refused after %d frees (vm.max_map_count %d): %v", refusedAt/2, limit, refusal)
	assert.ErrorIs(t, refusal, alloc.ErrOutOfMemory)
	assert.False(t, errors.Is(refusal, alloc.ErrInvalidFree) || errors.Is(refusal, alloc.ErrDoubleFree))
	if mapErr != nil {
		t.Logf("a new mapping at the limit: %v", mapErr)
		assert.ErrorIs(t, mapErr, alloc.ErrOutOfMemory)
	} else {
		require.NoError(t, a.Free(mapped))
	}

	// The refused block is still live and intact, and the counters exact.
	victim := blocks[refusedAt]
	assert.Equal(t, byte(1), victim[0])
	assert.Equal(t, 4096, a.UsableSize(victim))
	live := 0
	for _, f := range freed {
		if !f {
			live++
		}
	}
	s := a.Stats()
	assert.Equal(t, uint64(live), s.LiveBlocks)
	assert.Equal(t, uint64(4096*live), s.LiveBytes)
	assert.Equal(t, s.LiveBlocks, s.MmapCount)

	// Free everything else. Freeing the odd blocks first removes whole
	// mappings (their neighbours are gone), which makes room for splits.
	for i := 1; i < len(blocks); i += 2 {
		if !freed[i] {
			require.NoError(t, a.Free(blocks[i]), "block %d", i)
			freed[i] = true
		}
	}
	for i := range blocks {
		if !freed[i] {
			require.NoError(t, a.Free(blocks[i]), "block %d", i)
		}
	}
	s = a.Stats()
	assert.Zero(t, s.LiveBlocks)
	assert.Zero(t, s.MmapCount)
	assert.Zero(t, s.MmapBytes)

	// The allocator works again.
	for _, m := range []int{16, 4096, 1 << 20} {
		b, err := a.Malloc(m)
		require.NoError(t, err)
		b[m-1] = 1
		require.NoError(t, a.Free(b))
	}
}
