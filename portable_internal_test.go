package alloc

import (
	"runtime"
	"testing"

	"github.com/brkmap/alloc/internal/sys"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Where there is no mremap (macOS, FreeBSD), Realloc of a mapped block
// maps, copies and unmaps. Taken on Linux too by switching mremap off.
func TestReallocWithoutMremap(t *testing.T) {
	old := sys.HasMremap
	sys.HasMremap = false
	t.Cleanup(func() { sys.HasMremap = old })

	for _, p := range []Policy{PolicyThreshold, PolicyMmap} {
		a, err := New(Config{Policy: p, MmapThreshold: DefaultMmapThreshold}) // pinned: every size here stays a mapping
		require.NoError(t, err)
		b, err := a.Malloc(200 << 10)
		require.NoError(t, err)
		for i := range b {
			b[i] = byte(i * 7)
		}
		before := a.Counters()
		assert.False(t, before.Platform.Mremap)
		for _, n := range []int{1 << 20, 8 << 20, 300 << 10} { // grow, grow, shrink
			kept := min(len(b), n)
			nb, err := a.Realloc(b, n)
			require.NoError(t, err)
			require.Len(t, nb, n)
			for i := range kept {
				require.Equal(t, byte(i*7), nb[i], "byte %d after Realloc to %d", i, n)
			}
			for i := kept; i < n; i++ {
				nb[i] = byte(i * 7)
			}
			b = nb
		}
		after := a.Counters()
		assert.Equal(t, before.Mremap, after.Mremap, "%v: no mremap", p)
		assert.Equal(t, before.Mmap+3, after.Mmap, "%v: one new mapping a move", p)
		assert.Equal(t, before.Munmap+3, after.Munmap, "%v: the old one unmapped", p)
		assert.Equal(t, uint64(1), after.MmapCount)
		assert.Equal(t, uint64(300<<10), after.LiveBytes)
		require.NoError(t, a.Free(b))
		require.NoError(t, a.Close())
	}
}

// Stats says what the system offers: on Linux, everything.
func TestPlatform(t *testing.T) {
	a, err := New(Config{HugePages: HugePagesLarge})
	require.NoError(t, err)
	defer a.Close()
	s := a.Stats()
	assert.Equal(t, runtime.GOOS, s.Platform.OS)
	assert.Equal(t, sys.HasMremap, s.Platform.Mremap)
	assert.Equal(t, sys.HasHugePages, s.Platform.HugePages)
	if runtime.GOOS == "linux" {
		assert.True(t, s.Platform.Mremap)
		assert.True(t, s.Platform.HugePages)
		assert.True(t, s.Platform.Smaps)
		return
	}
	// elsewhere: the fallbacks, said
	assert.False(t, s.Platform.Mremap)
	assert.False(t, s.Platform.HugePages)
	assert.False(t, s.HugePagesInEffect, "huge pages asked for, never in effect")
	assert.Zero(t, s.HugeResident)
	assert.True(t, s.ResidentMeasured, "resident from mincore alone")
}
