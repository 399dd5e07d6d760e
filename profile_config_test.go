package alloc_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/brkmap/alloc"
)

// Config.ProfileRate overrides the package default either way: 1 records
// every allocation with the default off, negative records nothing with
// the default at every allocation.
func TestConfigProfileRate(t *testing.T) {
	t.Run("on, default off", func(t *testing.T) {
		a := withProfileRate(t, 0, alloc.Config{ProfileRate: 1})
		bs := allocateForProfile(a, 10, 4096)
		v, found := site(parseProfile(t, a), ".allocateForProfile")
		require.True(t, found, "Config.ProfileRate 1 records every allocation")
		assert.Equal(t, [4]int64{10, 10 * 4096, 10, 10 * 4096}, v)
		assert.EqualValues(t, 1, a.HeapProfile().Rate)
		for _, b := range bs {
			require.NoError(t, a.Free(b))
		}
	})
	t.Run("off, default on", func(t *testing.T) {
		a := withProfileRate(t, 1, alloc.Config{ProfileRate: -1})
		for _, b := range allocateForProfile(a, 10, 4096) {
			require.NoError(t, a.Free(b))
		}
		h := a.HeapProfile()
		assert.Empty(t, h.Records, "negative Config.ProfileRate turns profiling off")
		assert.Zero(t, h.Rate)
	})
}
