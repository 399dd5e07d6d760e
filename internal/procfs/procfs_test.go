package procfs

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseTHPMode(t *testing.T) {
	for in, want := range map[string]THPMode{
		"always [madvise] never\n": THPMadvise,
		"[always] madvise never":   THPAlways,
		"always madvise [never]":   THPNever,
		"":                         THPNever,
		"always madvise never":     THPNever,
		"[bogus]":                  THPNever,
	} {
		assert.Equal(t, want, ParseTHPMode(in), "%q", in)
	}
	assert.True(t, THPAlways.Enabled())
	assert.True(t, THPMadvise.Enabled())
	assert.False(t, THPNever.Enabled())
}

func TestReadTHP(t *testing.T) {
	dir := t.TempDir()
	oldE, oldS := THPEnabledPath, THPSizePath
	t.Cleanup(func() { THPEnabledPath, THPSizePath = oldE, oldS })
	THPEnabledPath = filepath.Join(dir, "enabled")
	THPSizePath = filepath.Join(dir, "hpage_pmd_size")

	mode, size := ReadTHP()
	assert.Equal(t, THPNever, mode, "no file: no THP")
	assert.EqualValues(t, DefaultHugePageSize, size)

	require.NoError(t, os.WriteFile(THPEnabledPath, []byte("[always] madvise never\n"), 0o644))
	require.NoError(t, os.WriteFile(THPSizePath, []byte("536870912\n"), 0o644))
	mode, size = ReadTHP()
	assert.Equal(t, THPAlways, mode)
	assert.EqualValues(t, 512<<20, size, "arm64 with 64 KiB pages")
}

const smapsSample = `7f0000000000-7f0000400000 rw-p 00000000 00:00 0 
Size:               4096 kB
AnonHugePages:      2048 kB
VmFlags: rd wr mr mw me ac sd hg 
7f0000400000-7f0000600000 rw-p 00000000 00:00 0                          [anon:foreign]
Size:               2048 kB
AnonHugePages:      2048 kB
VmFlags: rd wr mr mw me ac sd 
7f0000800000-7f0000c00000 rw-p 00000000 00:00 0 
Size:               4096 kB
AnonHugePages:      4096 kB
THPeligible:    1
VmFlags: rd wr mr mw me ac sd hg 
`

func TestParseSmaps(t *testing.T) {
	var got []SmapsEntry
	ParseSmaps([]byte(smapsSample), func(e SmapsEntry) { got = append(got, e) })
	require.Len(t, got, 3)
	assert.Equal(t, Range{0x7f0000000000, 0x7f0000400000}, got[0].Range)
	assert.EqualValues(t, 2<<20, got[0].AnonHugePages)
	assert.True(t, got[0].HasFlag("hg"))
	assert.False(t, got[1].HasFlag("hg"))
	assert.EqualValues(t, 4<<20, got[2].AnonHugePages)
}

func TestHugeResident(t *testing.T) {
	path := filepath.Join(t.TempDir(), "smaps")
	require.NoError(t, os.WriteFile(path, []byte(smapsSample), 0o644))
	old := SmapsPath
	SmapsPath = path
	t.Cleanup(func() { SmapsPath = old })

	var buf []byte
	// Ours: the first mapping whole, and 1 MiB of the third (merged with
	// a neighbour): counted up to the overlap. The foreign one is not.
	n, err := HugeResident([]Range{
		{0x7f0000000000, 0x7f0000400000},
		{0x7f0000b00000, 0x7f0000c00000},
	}, &buf)
	require.NoError(t, err)
	assert.EqualValues(t, 2<<20+1<<20, n)

	n, err = HugeResident(nil, &buf)
	require.NoError(t, err)
	assert.Zero(t, n)
}

// The real file parses, and this process has mappings in it.
func TestReadSmapsSelf(t *testing.T) {
	var buf []byte
	count := 0
	require.NoError(t, ReadSmaps(&buf, func(e SmapsEntry) {
		count++
		assert.Less(t, e.Start, e.End)
	}))
	assert.Positive(t, count)
}
