package zcbench

import (
	"bytes"
	"os"
	"testing"

	"github.com/brkmap/alloc/bench/internal/child"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestMain serves the sending child's job, as bench's main does.
func TestMain(m *testing.M) {
	child.ServeIfChild(map[string]child.Handler{ChildKind: ServeChild})
	os.Exit(m.Run())
}

// Every method delivers the file intact (the receiver's checksum), a size
// that is not a multiple of a page or of a block; the table prints a row
// per method with read+write's ratio 1.
func TestRunAllMethods(t *testing.T) {
	const size = 8<<20 + 12345
	var progress bytes.Buffer
	name, sum, fs, err := Prepare(t.TempDir(), size, &progress)
	require.NoError(t, err)
	if fs == "tmpfs" {
		t.Skip("the test folder is on tmpfs")
	}
	results, err := Run(Config{File: name, Size: size, Block: 1 << 20}, Methods, 1, sum, &progress)
	require.NoError(t, err)
	require.Len(t, results, len(Methods))
	for _, r := range results {
		assert.True(t, r.OK, "%s: %s", r.Method, r.Error)
		assert.Equal(t, int64(size), r.Bytes)
		assert.Positive(t, r.MBps, r.Method)
	}
	meds := Medians(results, Methods)
	var out bytes.Buffer
	require.NoError(t, PrintTable(&out, size, fs, 1, meds))
	for _, m := range Methods {
		assert.Contains(t, out.String(), m)
	}
	base, err := Ratio(meds, meds[0])
	require.NoError(t, err)
	assert.InDelta(t, 1, base, 1e-9)
	byMethod := map[string]Result{}
	for _, r := range meds {
		byMethod[r.Method] = r
	}
	assert.Zero(t, byMethod["sendfile"].UserBytes, "sendfile copies nothing through user space")
	assert.Zero(t, byMethod["mmap+vmsplice"].UserBytes)
	assert.Positive(t, byMethod["read+msg_zerocopy"].Completions)
}

// A folder on tmpfs is refused: the measure is about a file on disk.
func TestPrepareRefusesTmpfs(t *testing.T) {
	if _, tmpfs := fsType("/dev/shm"); !tmpfs {
		t.Skip("no tmpfs at /dev/shm")
	}
	_, _, _, err := Prepare("/dev/shm", 4096, &bytes.Buffer{})
	require.ErrorContains(t, err, "tmpfs")
}
