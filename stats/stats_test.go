package stats_test

import (
	"bytes"
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/brkmap/alloc/stats"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestFragmentation(t *testing.T) {
	tests := []struct {
		resident, live uint64
		want           float64
	}{
		{0, 0, 0},
		{4096, 0, 0}, // nothing live: 0, not +Inf
		{100, 100, 1},
		{300, 100, 3},
		{50, 100, 0.5},
	}
	for _, tt := range tests {
		s := stats.Snapshot{Resident: tt.resident, LiveBytes: tt.live}
		assert.Equal(t, tt.want, s.Fragmentation(), "resident %d, live %d", tt.resident, tt.live)
	}
}

func TestInternalWaste(t *testing.T) {
	tests := []struct {
		name    string
		classes []stats.Class
		want    uint64
	}{
		{"none", nil, 0},
		{"exact fits", []stats.Class{{Size: 16, LiveBlocks: 10, LiveBytes: 160}}, 0},
		{"one class", []stats.Class{{Size: 64, LiveBlocks: 3, LiveBytes: 100}}, 92},
		{"summed", []stats.Class{
			{Size: 16, LiveBlocks: 2, LiveBytes: 17},
			{Size: 1024, LiveBlocks: 1, LiveBytes: 1000},
			{Size: 48, LiveBlocks: 0, LiveBytes: 0, Slabs: 1, SlabBytes: 16384},
		}, 15 + 24},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, stats.Snapshot{Classes: tt.classes}.InternalWaste())
		})
	}
}

func TestSubAndSyscalls(t *testing.T) {
	prev := stats.Snapshot{Mmap: 3, Munmap: 1, Madvise: 2, Mprotect: 5, Mremap: 1, Mincore: 4, MinorFaults: 100,
		Resident: 999, LiveBytes: 7}
	now := stats.Snapshot{Mmap: 10, Munmap: 6, Madvise: 2, Mprotect: 9, Mremap: 3, Mincore: 8, MinorFaults: 150,
		Resident: 4096, LiveBytes: 64, LiveBlocks: 2, ArenaBytes: 1 << 20, Classes: []stats.Class{{Size: 16}}}
	nowBefore, prevBefore := now, prev
	nowBefore.Classes = slices.Clone(now.Classes)
	d := now.Sub(prev)
	assert.Equal(t, uint64(7), d.Mmap)
	assert.Equal(t, uint64(5), d.Munmap)
	assert.Equal(t, uint64(0), d.Madvise)
	assert.Equal(t, uint64(4), d.Mprotect)
	assert.Equal(t, uint64(2), d.Mremap)
	assert.Equal(t, uint64(4), d.Mincore)
	assert.Equal(t, uint64(50), d.MinorFaults)
	// gauges come from now
	assert.Equal(t, uint64(4096), d.Resident)
	assert.Equal(t, uint64(64), d.LiveBytes)
	assert.Equal(t, uint64(2), d.LiveBlocks)
	assert.Equal(t, uint64(1<<20), d.ArenaBytes)
	assert.Equal(t, now.Classes, d.Classes)
	// neither operand is changed, Classes' contents included
	assert.Equal(t, nowBefore, now)
	assert.Equal(t, prevBefore, prev)

	assert.Equal(t, uint64(7+5+0+4+2), d.Syscalls(), "mincore is left out")
	assert.Equal(t, uint64(10+6+2+9+3), now.Syscalls())
}

func TestWriteTo(t *testing.T) {
	s := stats.Snapshot{
		LiveBlocks: 11, LiveBytes: 12345, ArenaBytes: 1 << 20, SlabBytes: 65536, MidBytes: 40960, ScratchBytes: 24576,
		FreeBytes: 8192, DirtyBytes: 4096, TopFreeBytes: 131072, MmapBytes: 3 << 20, MmapCount: 3,
		Resident: 777216, ArenaResident: 700000, MmapResident: 77216,
		Mmap: 17, Munmap: 14, Madvise: 5, Mprotect: 9, Mremap: 2,
		MmapThreshold: 131072, TrimThreshold: 262144,
	}
	var buf bytes.Buffer
	n, err := s.WriteTo(&buf)
	require.NoError(t, err)
	assert.Equal(t, int64(buf.Len()), n, "WriteTo returns the bytes it wrote")
	out := buf.String()
	rows := map[string]uint64{
		"live blocks": 11, "live bytes": 12345, "arena bytes": 1 << 20, "slabs": 65536, "mid-size": 40960,
		"scratch arenas": 24576, "free": 8192, "free, not released": 4096, "free at top": 131072, "mmap bytes": 3 << 20,
		"mmap count": 3, "resident": 777216, "arena": 700000, "mappings": 77216,
		"mmap calls": 17, "munmap calls": 14, "madvise calls": 5, "mprotect calls": 9, "mremap calls": 2,
		"mmap threshold": 131072, "trim threshold": 262144,
	}
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	assert.Len(t, lines, len(rows))
	found := map[string]bool{}
	for _, line := range lines {
		fields := strings.Fields(line)
		require.GreaterOrEqual(t, len(fields), 2, "line %q", line)
		name := strings.Join(fields[:len(fields)-1], " ")
		v, err := strconv.ParseUint(fields[len(fields)-1], 10, 64)
		require.NoError(t, err, "line %q", line)
		want, ok := rows[name]
		if assert.True(t, ok, "unexpected row %q", name) {
			assert.Equal(t, want, v, "row %q", name)
			found[name] = true
		}
	}
	assert.Len(t, found, len(rows), "every row is printed once")
}

type failWriter struct{ err error }

func (w failWriter) Write([]byte) (int, error) { return 0, w.err }

func TestWriteToError(t *testing.T) {
	boom := errors.New("disk full")
	_, err := stats.Snapshot{LiveBlocks: 1}.WriteTo(failWriter{boom})
	assert.ErrorIs(t, err, boom)
}
