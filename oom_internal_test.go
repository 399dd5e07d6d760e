package alloc

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"

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

type oomBlock struct {
	b    []byte
	seed byte
}

func oomFill(b []byte, seed byte) {
	for i := range b {
		b[i] = seed ^ byte(i) ^ byte(i>>10)
	}
}

func oomIntact(b []byte, seed byte) int {
	for i := range b {
		if b[i] != seed^byte(i)^byte(i>>10) {
			return i
		}
	}
	return -1
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

type oomRun struct {
	t     *testing.T
	a     *Allocator
	live  []oomBlock
	seed  byte
	fired bool // the injected failure has happened
	errs  int  // operations that returned ErrOutOfMemory
}

func (r *oomRun) check(what string) {
	t := r.t
	t.Helper()
	var liveBytes uint64
	for i, l := range r.live {
		require.Equal(t, -1, oomIntact(l.b, l.seed), "%s: live block %d (%d bytes) damaged", what, i, len(l.b))
		require.GreaterOrEqual(t, r.a.UsableSize(l.b), len(l.b), "%s: live block %d is not live", what, i)
		liveBytes += uint64(len(l.b))
	}
	s := r.a.Stats()
	require.Equal(t, uint64(len(r.live)), s.LiveBlocks, "%s: LiveBlocks", what)
	require.Equal(t, liveBytes, s.LiveBytes, "%s: LiveBytes", what)
	require.Equal(t, s.ArenaBytes+s.MmapBytes+s.QuarantineBytes, s.Committed, "%s: the budget drifted from the memory held", what)
}

// refused checks that err, if any, is the injected failure seen as
// ErrOutOfMemory, and reports whether there was one.
func (r *oomRun) refused(err error, what string) bool {
	r.t.Helper()
	if err == nil {
		return false
	}
	require.True(r.t, r.fired, "%s failed with no failure injected: %v", what, err)
	require.ErrorIs(r.t, err, ErrOutOfMemory, "%s", what)
	r.errs++
	return true
}

func (r *oomRun) step(i int, st oomStep) {
	t, a := r.t, r.a
	t.Helper()
	what := fmt.Sprintf("step %d (%s %d)", i, st.op, st.n)
	r.seed++
	switch st.op {
	case "malloc", "calloc", "aligned":
		var b []byte
		var err error
		switch st.op {
		case "malloc":
			b, err = a.Malloc(st.n)
		case "calloc":
			b, err = a.Calloc(st.n)
		default:
			b, err = a.AlignedAlloc(st.align, st.n)
		}
		if r.refused(err, what) {
			require.Nil(t, b)
			return
		}
		require.Len(t, b, st.n)
		if st.op == "calloc" {
			require.Equal(t, -1, bytes.IndexFunc(b, func(r rune) bool { return r != 0 }), "%s: Calloc memory not zero", what)
		}
		if st.op == "aligned" {
			require.Zero(t, addrOf(b)%uintptr(st.align), what)
		}
		oomFill(b, r.seed)
		r.live = append(r.live, oomBlock{b, r.seed})
	case "realloc":
		if len(r.live) == 0 {
			return
		}
		k := st.pick % len(r.live)
		old := r.live[k]
		b, err := a.Realloc(old.b, st.n)
		if r.refused(err, what) {
			require.Equal(t, -1, oomIntact(old.b, old.seed), "%s: a refused Realloc damaged the block", what)
			return
		}
		keep := min(len(old.b), st.n)
		require.Equal(t, -1, oomIntact(b[:keep], old.seed), "%s: Realloc lost the contents", what)
		oomFill(b, r.seed)
		r.live[k] = oomBlock{b, r.seed}
	case "free":
		if len(r.live) == 0 {
			return
		}
		k := st.pick % len(r.live)
		if r.refused(a.Free(r.live[k].b), what) {
			return // still live: the model keeps it
		}
		r.live = append(r.live[:k], r.live[k+1:]...)
	case "trim":
		a.Trim()
	}
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
		r := &oomRun{t: t, a: a}
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
					r := &oomRun{t: t, a: a}
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
					for _, l := range r.live {
						require.NoError(t, a.Free(l.b))
					}
					r.live = nil
					r.check("all freed")
					for _, n := range []int{100, 50 << 10, 1 << 20} {
						b, err := a.Malloc(n)
						require.NoError(t, err, "call %d refused: Malloc(%d) afterwards", k, n)
						oomFill(b, 1)
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
	failNext := func(a *Allocator, op sys.Op, all bool) *bool {
		fired := new(bool)
		from := a.os.Calls(op)
		a.os.Fail = func(o sys.Op, n uint64) error {
			if o == op && (n == from+1 || all) {
				*fired = true
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
	}{
		{"small block needs the break to move", PolicyBrk, sys.OpMprotect, false, func(a *Allocator, _ []byte) error {
			_, err := a.Malloc(200 << 10) // past the pad
			return err
		}},
		{"large block", PolicyThreshold, sys.OpMmap, false, func(a *Allocator, _ []byte) error {
			_, err := a.Malloc(1 << 20)
			return err
		}},
		{"every block a mapping", PolicyMmap, sys.OpMmap, false, func(a *Allocator, _ []byte) error {
			_, err := a.Calloc(10)
			return err
		}},
		{"aligned mapping, cutting the head or tail", PolicyThreshold, sys.OpMunmap, false, func(a *Allocator, _ []byte) error {
			_, err := a.AlignedAlloc(4<<20, 1<<20)
			return err
		}},
		{"growing a mapping", PolicyThreshold, sys.OpMremap, false, func(a *Allocator, v []byte) error {
			_, err := a.Realloc(v, 4<<20)
			return err
		}},
		{"freeing a mapping (map count)", PolicyThreshold, sys.OpMunmap, false, func(a *Allocator, v []byte) error {
			return a.Free(v)
		}},
		{"growing a run at the top", PolicyBrk, sys.OpMprotect, true, func(a *Allocator, v []byte) error {
			_, err := a.Realloc(v, 4<<20) // in place at the top or moved: the break must move
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := New(Config{Policy: tt.policy, PurgeDelay: PurgeNever}) // no purge calls from a timer
			require.NoError(t, err)
			t.Cleanup(func() { _ = a.Close() })
			r := &oomRun{t: t, a: a}
			for i, n := range []int{64, 5000, 60 << 10, 300 << 10} {
				b, err := a.Malloc(n)
				require.NoError(t, err)
				oomFill(b, byte(i))
				r.live = append(r.live, oomBlock{b, byte(i)})
			}
			victim := r.live[3].b // 300 KiB: a mapping under PolicyThreshold
			r.check("before")
			before := a.Stats()

			fired := failNext(a, tt.op, tt.all)
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
