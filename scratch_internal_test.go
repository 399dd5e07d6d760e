package alloc

import (
	"errors"
	"testing"

	"github.com/brkmap/alloc/internal/alloctest"
	"github.com/brkmap/alloc/internal/sys"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// The system calls a Scratch makes, each refused once: a new chunk
// (the break moving up), the top trimmed by Free with the purge off, and
// Debug's quarantine (made PROT_NONE, its pages released, made readable
// again by Trim). The caller gets ErrOutOfMemory where memory could not be
// had, nothing where the refusal only means memory goes back later; live
// objects stay intact, the breakdown of Stats sums exactly to Committed,
// and the Scratch and the Allocator work afterwards.
func TestScratchInjectedFailures(t *testing.T) {
	cases := []struct {
		name    string
		cfg     Config
		op      sys.Op
		act     func(a *Allocator, s *Scratch) error
		wantErr bool
		own     bool // act injects its own failure (and fails if it was not made)
	}{
		{"mprotect moving the break up for a chunk", Config{PurgeDelay: PurgeNever}, sys.OpMprotect,
			func(a *Allocator, s *Scratch) error { _, err := s.Alloc(3 << 20); return err }, true, false},
		{"madvise of the top trimmed by Free", Config{PurgeDelay: PurgeNever}, sys.OpMadvise,
			func(a *Allocator, s *Scratch) error { return s.Free() }, false, false},
		{"mprotect(PROT_NONE) of the top trimmed by Free", Config{PurgeDelay: PurgeNever}, sys.OpMprotect,
			func(a *Allocator, s *Scratch) error { return s.Free() }, false, false},
		{"Debug: mprotect(PROT_NONE) of a freed run", Config{Debug: true, PurgeDelay: PurgeNever}, sys.OpMprotect,
			func(a *Allocator, s *Scratch) error { return s.Free() }, false, false},
		{"Debug: madvise releasing a quarantined run", Config{Debug: true, PurgeDelay: PurgeNever}, sys.OpMadvise,
			func(a *Allocator, s *Scratch) error { return s.Free() }, false, false},
		{"Debug: mprotect making a quarantined run usable again", Config{Debug: true, PurgeDelay: PurgeNever}, sys.OpMprotect,
			func(a *Allocator, s *Scratch) error {
				a.os.Fail = nil // Free's PROT_NONE goes through, Trim's first unprotect is refused
				if err := s.Free(); err != nil {
					return err
				}
				from := a.os.Calls(sys.OpMprotect)
				refused := false
				a.os.Fail = func(op sys.Op, n uint64) error {
					if op == sys.OpMprotect && n == from+1 {
						refused = true
						return unix.ENOMEM
					}
					return nil
				}
				a.Trim()
				a.os.Fail = nil
				if !refused {
					return errors.New("no mprotect from Trim")
				}
				// the other Scratch holds its first chunk
				if a.Counters().ScratchBytes <= scratchFirstChunk {
					return errors.New("the run refused its unprotect left the quarantine")
				}
				a.Trim() // now it goes
				if n := a.Counters().ScratchBytes; n != scratchFirstChunk {
					return errors.New("the quarantine kept runs after a second Trim")
				}
				return nil
			}, false, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a, err := New(tc.cfg)
			require.NoError(t, err)
			defer a.Close()
			keep := a.NewScratch() // another Scratch, live throughout
			old, err := keep.Alloc(1000)
			require.NoError(t, err)
			alloctest.Fill(old, 1)
			s := a.NewScratch()
			b, err := s.Alloc(200 << 10)
			require.NoError(t, err)
			alloctest.Fill(b, 2)
			_, err = s.Alloc(3 << 20) // a run of its own at the top
			require.NoError(t, err)
			from := a.os.Calls(tc.op)
			fired := false
			a.os.Fail = func(op sys.Op, n uint64) error {
				if op == tc.op && n == from+1 {
					fired = true
					return unix.ENOMEM
				}
				return nil
			}
			err = tc.act(a, s)
			a.os.Fail = nil
			require.True(t, fired || tc.own, "the refused call was made")
			if tc.wantErr {
				require.ErrorIs(t, err, ErrOutOfMemory)
				assert.Equal(t, -1, alloctest.Intact(b, 2), "a refused chunk changes nothing")
			} else {
				require.NoError(t, err)
			}
			assert.Equal(t, -1, alloctest.Intact(old, 1), "the other Scratch's object is intact")
			sn := a.Stats()
			var sum uint64
			for _, p := range sn.Breakdown() {
				sum += p.Bytes
			}
			assert.Equal(t, sn.Committed, sum, "the breakdown sums to Committed")
			assert.Equal(t, sn.ArenaBytes+sn.MmapBytes+sn.QuarantineBytes, sn.Committed)
			// both work afterwards
			s2 := a.NewScratch()
			p, err := s2.Alloc(5 << 20)
			require.NoError(t, err)
			p[len(p)-1] = 1
			require.NoError(t, s2.Free())
			require.NoError(t, keep.Free())
			if !s.freed {
				require.NoError(t, s.Free())
			}
		})
	}
}
