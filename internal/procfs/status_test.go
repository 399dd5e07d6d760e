package procfs

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

func TestReadProcMemory(t *testing.T) {
	before, err := ReadProcMemory()
	require.NoError(t, err)
	require.Positive(t, before.RSS)
	assert.GreaterOrEqual(t, before.PeakRSS, before.RSS)

	// Map and touch 32 MiB, check that VmRSS and VmHWM saw it; unmap it
	// and check that ResetPeakRSS forgets it.
	b, err := unix.Mmap(-1, 0, 32<<20, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	require.NoError(t, err)
	for i := 0; i < len(b); i += 4096 {
		b[i] = 1
	}
	during, err := ReadProcMemory()
	require.NoError(t, err)
	assert.GreaterOrEqual(t, during.RSS, before.RSS+30<<20)
	assert.GreaterOrEqual(t, during.PeakRSS, during.RSS)
	require.NoError(t, unix.Munmap(b))
	require.NoError(t, ResetPeakRSS())
	after, err := ReadProcMemory()
	require.NoError(t, err)
	assert.Less(t, after.PeakRSS, during.PeakRSS-16<<20)
}

// The process has mappings, and the kernel a cap on them above that.
func TestMapCount(t *testing.T) {
	n := MapCount()
	require.Positive(t, n)
	b, err := unix.Mmap(-1, 0, 3*4096, unix.PROT_READ, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	require.NoError(t, err)
	// A PROT_NONE hole in the middle splits the mapping in three.
	require.NoError(t, unix.Mprotect(b[4096:8192], unix.PROT_NONE))
	assert.GreaterOrEqual(t, MapCount(), n+2, "a split mapping is counted once a piece")
	require.NoError(t, unix.Munmap(b))
	if limit := MaxMapCount(); limit != -1 {
		assert.Greater(t, limit, n)
	}
}
