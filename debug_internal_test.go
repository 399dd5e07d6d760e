package alloc

import (
	"errors"
	"testing"

	"github.com/brkmap/alloc/internal/sys"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// The system calls only Debug mode makes (the guard page after a large
// block, the quarantine of a freed mapping), each refused once: the caller
// gets an error, nothing leaks, live blocks stay intact and live, and the
// allocator works afterwards. inject_internal_test.go covers every other
// call.
func TestDebugInjectedFailures(t *testing.T) {
	cases := []struct {
		name string
		op   sys.Op
		nth  uint64 // refuse the nth call of op made by act
		act  func(a *Allocator, big []byte) error
		// the large block must still be live (the refused call was its free),
		// and the caller gets an error
		stillLive, wantErr bool
	}{
		{"mmap of a large block", sys.OpMmap, 1, func(a *Allocator, _ []byte) error {
			_, err := a.Malloc(1 << 20)
			return err
		}, true, true},
		{"mprotect of the guard page", sys.OpMprotect, 1, func(a *Allocator, _ []byte) error {
			_, err := a.Malloc(1 << 20)
			return err
		}, true, true},
		// releasing a quarantined mapping's pages is thrift: refused, the
		// free still succeeds and the pages wait for the munmap
		{"madvise releasing a quarantined mapping", sys.OpMadvise, 1, func(a *Allocator, big []byte) error {
			return a.Free(big)
		}, false, false},
		{"mprotect of a quarantined mapping", sys.OpMprotect, 1, func(a *Allocator, big []byte) error {
			return a.Free(big)
		}, true, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a, err := New(Config{Debug: true, PurgeDelay: PurgeNever}) // no purge calls from a timer under the hook
			require.NoError(t, err)
			defer a.Close()
			small, err := a.Malloc(100)
			require.NoError(t, err)
			for i := range small {
				small[i] = byte(i)
			}
			big, err := a.Malloc(300 << 10)
			require.NoError(t, err)
			for i := range big {
				big[i] = byte(i * 7)
			}
			before := a.Stats()
			from := a.os.Calls(tc.op)
			fired := false
			a.os.Fail = func(op sys.Op, n uint64) error {
				if op == tc.op && n == from+tc.nth {
					fired = true
					return unix.ENOMEM
				}
				return nil
			}
			err = tc.act(a, big)
			a.os.Fail = nil
			require.True(t, fired, "the refused call was made")
			if !tc.wantErr {
				require.NoError(t, err)
				assert.ErrorIs(t, a.Free(big), ErrDoubleFree, "the block is in quarantine")
				require.NoError(t, a.Free(small))
				return
			}
			require.Error(t, err)
			assert.True(t, errors.Is(err, ErrOutOfMemory) || errors.Is(err, unix.ENOMEM), "%v", err)

			after := a.Stats()
			assert.Equal(t, before.LiveBlocks, after.LiveBlocks)
			assert.Equal(t, before.LiveBytes, after.LiveBytes)
			assert.Equal(t, before.MmapCount, after.MmapCount, "no mapping leaked or lost")
			assert.Equal(t, after.ArenaBytes+after.MmapBytes+after.QuarantineBytes, after.Committed)
			for i := range small {
				require.Equal(t, byte(i), small[i])
			}
			if tc.stillLive {
				assert.Equal(t, len(big), a.UsableSize(big), "the large block is still live")
				for i := range big {
					require.Equal(t, byte(i*7), big[i])
				}
			}
			// usable afterwards: everything can be freed, and allocated again
			require.NoError(t, a.Free(big))
			require.NoError(t, a.Free(small))
			b, err := a.Malloc(1 << 20)
			require.NoError(t, err)
			require.NoError(t, a.Free(b))
			s := a.Stats()
			assert.Zero(t, s.LiveBlocks)
			assert.Zero(t, s.MmapCount)
		})
	}
}
