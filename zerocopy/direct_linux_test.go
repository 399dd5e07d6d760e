package zerocopy_test

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/brkmap/alloc"
	"github.com/brkmap/alloc/zerocopy"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// tmpfs: before Linux 6.6 it refused O_DIRECT (EINVAL) and Direct falls
// back; since, it takes it. Either way the bytes are right.
func TestDirectTmpfs(t *testing.T) {
	var st unix.Statfs_t
	if unix.Statfs("/dev/shm", &st) != nil || st.Type != unix.TMPFS_MAGIC {
		t.Skip("no tmpfs at /dev/shm")
	}
	name := filepath.Join("/dev/shm", fmt.Sprintf("zerocopy-test-%d", os.Getpid()))
	data := random(2*4096, 12)
	require.NoError(t, os.WriteFile(name, data, 0o600))
	defer os.Remove(name)
	d, err := zerocopy.OpenDirect(name)
	require.NoError(t, err)
	defer d.Close()
	t.Logf("tmpfs takes O_DIRECT on this kernel: %v", d.Bypass())
	a, err := alloc.New(alloc.Config{})
	require.NoError(t, err)
	defer a.Close()
	b, err := a.AlignedAlloc(zerocopy.DirectAlign, len(data))
	require.NoError(t, err)
	defer a.Free(b)
	_, err = d.ReadAt(b, 0)
	require.NoError(t, err)
	requireSame(t, data, b)
}
