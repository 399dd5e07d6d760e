package alloc

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/brkmap/alloc/internal/alloctest"
	"github.com/brkmap/alloc/internal/sys"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// The kernel refusing memory must come back as ErrOutOfMemory: never a
// panic, never a damaged block, never a counter that drifts. These tests
// make one chosen system call fail with ENOMEM through the OS value's
// failure hook, in the middle of a fixed script of operations, for every
// call the script makes, and hold the allocator against a model of its
// live blocks.

// oomStep is one operation of the script.
type oomStep struct {
	op    string // malloc, calloc, aligned, realloc, free, trim
	n     int
	align int
	pick  int // which live block (realloc, free), modulo their number
}

// oomScript makes a script that reaches every layer: slabs, runs of the
// region, mappings, in-place and moving Realloc, aligned blocks, Trim.
func oomScript(seed uint64) []oomStep {
	rng := rand.New(rand.NewPCG(seed, 11))
	sizes := []int{0, 24, 100, 1000, 3000, 20 << 10, 40 << 10, 100 << 10, 200 << 10, 400 << 10}
	var s []oomStep
	for range 70 {
		n := sizes[rng.IntN(len(sizes))] + rng.IntN(64)
		switch r := rng.IntN(20); {
		case r < 7:
			s = append(s, oomStep{op: "malloc", n: n})
		case r < 8:
			s = append(s, oomStep{op: "calloc", n: n})
		case r < 10:
			s = append(s, oomStep{op: "aligned", n: n, align: 16 << rng.IntN(17)})
		case r < 14:
			s = append(s, oomStep{op: "realloc", n: n, pick: rng.IntN(1 << 20)})
		case r < 19:
			s = append(s, oomStep{op: "free", pick: rng.IntN(1 << 20)})
		default:
			s = append(s, oomStep{op: "trim"})
		}
	}
	return s
}

// oomRun drives the shared operation-stream model (internal/alloctest)
// with ErrOutOfMemory allowed as the answer once the failure has fired.
type oomRun struct {
	t     *testing.T
	a     *Allocator
	m     *alloctest.Model
	fired bool // the injected failure has happened
	errs  int  // operations that returned ErrOutOfMemory
}

func newOOMRun(t *testing.T, a *Allocator) *oomRun {
	m := alloctest.NewModel(a, ErrInvalidFree, ErrDoubleFree)
	m.SetRefusal(ErrOutOfMemory)
	return &oomRun{t: t, a: a, m: m}
}

func (r *oomRun) check(what string) {
	r.t.Helper()
	require.NoError(r.t, r.m.Check(), what)
}

var oomOps = map[string]alloctest.OpKind{
	"malloc": alloctest.OpMalloc, "calloc": alloctest.OpCalloc, "aligned": alloctest.OpAligned,
	"realloc": alloctest.OpRealloc, "free": alloctest.OpFree, "trim": alloctest.OpTrim,
}

// step applies one operation of the script. A refusal is legal only once
// the injected failure has fired, and the model has checked that it
// changed nothing.
func (r *oomRun) step(i int, st oomStep) {
	r.t.Helper()
	err := r.m.Apply(alloctest.Op{Kind: oomOps[st.op], Size: st.n, Align: st.align, Block: st.pick})
	if errors.Is(err, alloctest.ErrRefused) {
		require.True(r.t, r.fired, "step %d failed with no failure injected: %v", i, err)
		r.errs++
		return
	}
	require.NoError(r.t, err, "step %d", i)
}

func TestKernelRefusesEveryCall(t *testing.T) {
	script := oomScript(1)
	ops := []sys.Op{sys.OpMmap, sys.OpMprotect, sys.OpMremap, sys.OpMunmap, sys.OpMadvise}
	for _, policy := range []Policy{PolicyThreshold, PolicyBrk, PolicyMmap} {
		// a clean run first: how many calls of each op the script makes
		clean := func() *Allocator {
			// PurgeImmediately: the purge's calls are made inside the script's
			// own calls (refused too), and no timer calls from elsewhere
			a, err := New(Config{Policy: policy, TopPad: 16 << 10, PurgeDelay: PurgeImmediately})
			require.NoError(t, err)
			return a
		}
		a := clean()
		base := [5]uint64{}
		for i, op := range ops {
			base[i] = a.os.Calls(op)
		}
		r := newOOMRun(t, a)
		for i, st := range script {
			r.step(i, st)
		}
		r.check("clean run")
		var total [5]uint64
		for i, op := range ops {
			total[i] = a.os.Calls(op) - base[i]
		}
		require.NoError(t, a.Close())

		for i, op := range ops {
			calls := min(total[i], 30)
			t.Run(fmt.Sprintf("%s/%s", policy, op), func(t *testing.T) {
				if calls == 0 {
					t.Skipf("the script makes no %s call under %s", op, policy)
				}
				refusals := 0
				for k := uint64(1); k <= calls; k++ {
					a := clean()
					r := newOOMRun(t, a)
					from := a.os.Calls(op)
					a.os.Fail = func(o sys.Op, n uint64) error {
						if o == op && n == from+k {
							r.fired = true
							return unix.ENOMEM
						}
						return nil
					}
					for i, st := range script {
						wasFired := r.fired
						r.step(i, st)
						if r.fired && !wasFired { // the step that met the refusal
							r.check(fmt.Sprintf("call %d refused, at step %d", k, i))
						}
					}
					if !r.fired {
						// aligned mappings cost zero, one or two munmaps, depending
						// on where the kernel put them: the count varies from run
						// to run, but most of the calls must have been tried
						require.Greater(t, 2*k, calls, "call %d of %s never came", k, op)
						a.os.Fail = nil // the refusal must not land on Close instead
						require.NoError(t, a.Close())
						break
					}
					refusals += r.errs
					r.check(fmt.Sprintf("call %d refused, end of the script", k))

					// usable afterwards: everything can be freed, then allocated again
					a.os.Fail = nil
					require.NoError(t, r.m.FreeAll(), "call %d refused: everything freed afterwards", k)
					for _, n := range []int{100, 50 << 10, 1 << 20} {
						b, err := a.Malloc(n)
						require.NoError(t, err, "call %d refused: Malloc(%d) afterwards", k, n)
						alloctest.Fill(b, 1)
						require.NoError(t, a.Free(b))
					}
					s := a.Stats()
					assert.Zero(t, s.LiveBlocks)
					assert.Zero(t, s.MmapCount)
					require.NoError(t, a.Close())
				}
				t.Logf("%d %s calls refused one at a time: %d operations returned ErrOutOfMemory", calls, op, refusals)
			})
		}
	}
}

// TestKernelRefusesNamedCases pins the cases one by one: which call, what
// the caller sees.
func TestKernelRefusesNamedCases(t *testing.T) {
	failNext := func(a *Allocator, op sys.Op, all, madvise bool) *bool {
		fired := new(bool)
		from := a.os.Calls(op)
		a.os.Fail = func(o sys.Op, n uint64) error {
			if o == op && (n == from+1 || all) {
				*fired = true
				return unix.ENOMEM
			}
			if madvise && o == sys.OpMadvise {
				return unix.ENOMEM
			}
			return nil
		}
		return fired
	}
	tests := []struct {
		name   string
		policy Policy
		op     sys.Op
		all    bool // refuse every call of op, not only the next
		do     func(a *Allocator, victim []byte) error
		// refuse every madvise too: a munmap refused with ENOMEM (the map
		// count) is otherwise no error, the pages released with madvise
		madvise bool
	}{
		{"small block needs the break to move", PolicyBrk, sys.OpMprotect, false, func(a *Allocator, _ []byte) error {
			_, err := a.Malloc(200 << 10) // past the pad
			return err
		}, false},
		{"large block", PolicyThreshold, sys.OpMmap, false, func(a *Allocator, _ []byte) error {
			_, err := a.Malloc(1 << 20)
			return err
		}, false},
		{"every block a mapping", PolicyMmap, sys.OpMmap, false, func(a *Allocator, _ []byte) error {
			_, err := a.Calloc(10)
			return err
		}, false},
		{"aligned mapping, cutting the head or tail", PolicyThreshold, sys.OpMunmap, false, func(a *Allocator, _ []byte) error {
			_, err := a.AlignedAlloc(4<<20, 1<<20)
			return err
		}, false},
		{"growing a mapping", PolicyThreshold, sys.OpMremap, false, func(a *Allocator, v []byte) error {
			_, err := a.Realloc(v, 4<<20)
			return err
		}, false},
		{"freeing a mapping (map count), madvise refused too", PolicyThreshold, sys.OpMunmap, false, func(a *Allocator, v []byte) error {
			return a.Free(v)
		}, true},
		{"growing a run at the top", PolicyBrk, sys.OpMprotect, true, func(a *Allocator, v []byte) error {
			_, err := a.Realloc(v, 4<<20) // in place at the top or moved: the break must move
			return err
		}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := New(Config{Policy: tt.policy, PurgeDelay: PurgeNever}) // no purge calls from a timer
			require.NoError(t, err)
			t.Cleanup(func() { _ = a.Close() })
			r := newOOMRun(t, a)
			for _, n := range []int{64, 5000, 60 << 10, 300 << 10} {
				require.NoError(t, r.m.Apply(alloctest.Op{Kind: alloctest.OpMalloc, Size: n}))
			}
			victim := r.m.Blocks()[3].B // 300 KiB: a mapping under PolicyThreshold
			r.check("before")
			before := a.Stats()

			fired := failNext(a, tt.op, tt.all, tt.madvise)
			err = tt.do(a, victim)
			require.True(t, *fired, "the %s call was not made", tt.op)
			assert.ErrorIs(t, err, ErrOutOfMemory)
			assert.ErrorIs(t, err, unix.ENOMEM, "the kernel's error is kept")
			a.os.Fail = nil
			r.check("after the refusal")
			after := a.Stats()
			assert.Equal(t, before.ArenaBytes, after.ArenaBytes)
			assert.Equal(t, before.MmapBytes, after.MmapBytes)
			assert.Equal(t, before.MmapCount, after.MmapCount)

			// the same thing works once the kernel agrees
			require.NoError(t, tt.do(a, victim))
		})
	}
}
