package shm

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/brkmap/alloc/internal/alloctest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The scripted operations a child runs, killed at each step in turn. The
// parent prepares a fresh pool the same way each time (crashSetup), so
// that step k always falls at the same point of the same operation; the
// script touches every path that changes more than one word: a slab
// carved, filled, refilled and released; large blocks split off a run and
// freed into neighbours on either side.

const (
	crashEnv = "BRKMAP_SHM_CRASH" // the step at which the child kills itself
	setupEnv = "BRKMAP_SHM_SETUP" // the Refs of crashSetup, for the child
	crashCls = 1000               // the class whose slabs the script fills
)

// crashRefs are the blocks crashSetup leaves for the script.
type crashRefs struct {
	l1, l3 Ref   // two large blocks around a free run
	full   []Ref // every block of one slab (full, off its partial list)
	extra  Ref   // the only block of a second slab of the same class
	keep   []Ref // blocks the script never touches: their contents are checked
}

func (c crashRefs) encode() string {
	all := append([]Ref{c.l1, c.l3, c.extra}, c.full...)
	s := make([]string, len(all))
	for i, r := range all {
		s[i] = strconv.FormatUint(uint64(r), 16)
	}
	return strings.Join(s, ",")
}

func decodeCrashRefs(s string) (c crashRefs, err error) {
	var all []Ref
	for f := range strings.SplitSeq(s, ",") {
		v, err := strconv.ParseUint(f, 16, 64)
		if err != nil {
			return c, err
		}
		all = append(all, Ref(v))
	}
	if len(all) < 4 {
		return c, fmt.Errorf("setup of %d refs", len(all))
	}
	return crashRefs{l1: all[0], l3: all[1], extra: all[2], full: all[3:]}, nil
}

func crashSetup(t testing.TB, p *Pool) crashRefs {
	var c crashRefs
	alloc := func(n int) Ref {
		r, b, err := p.Alloc(n)
		require.NoError(t, err)
		alloctest.Fill(b, uint32(r))
		return r
	}
	for i := range 4 {
		c.keep = append(c.keep, alloc(24+i*200)) // no block of crashCls's class
	}
	k := classes[classOf(crashCls)]
	for range k.nblocks {
		c.full = append(c.full, alloc(crashCls))
	}
	c.extra = alloc(crashCls)
	// Last, so that no slab above takes the hole left by l2.
	c.l1 = alloc(2 * PageSize)
	l2 := alloc(3 * PageSize)
	c.l3 = alloc(2 * PageSize)
	c.keep = append(c.keep, alloc(2*PageSize)) // l3's right neighbour stays
	require.NoError(t, p.Free(l2))
	return c
}

// crashScript is the scripted operation: one Alloc or Free after another,
// each a function so that the parent can tell which one a step fell in.
func crashScript(p *Pool, c crashRefs) []func() error {
	free := func(r Ref) func() error { return func() error { return p.Free(r) } }
	var fresh Ref
	alloc := func(n int, keep bool) func() error {
		return func() error {
			r, b, err := p.Alloc(n)
			if err == nil {
				alloctest.Fill(b, uint32(r))
				if keep {
					fresh = r
				}
			}
			return err
		}
	}
	return []func() error{
		free(c.l1),                            // coalesces with the free run on its right
		free(c.l3),                            // and on its left
		free(c.full[0]),                       // a full slab back on its partial list
		free(c.extra),                         // an empty slab released into the runs
		alloc(crashCls, false),                // fills the slab again: off the list
		alloc(40, true),                       // carves a slab of a new class
		func() error { return p.Free(fresh) }, // empties it (kept: the class's only one)
		alloc(5*PageSize, false),              // splits a run
		alloc(MaxSmall+1, false),              // a one-page block
	}
}

func init() {
	children["crash"] = func() error {
		p, err := childPool()
		if err != nil {
			return err
		}
		c, err := decodeCrashRefs(os.Getenv(setupEnv))
		if err != nil {
			return err
		}
		crashAt(p, crashEnv)
		for i, op := range crashScript(p, c) {
			if err := op(); err != nil {
				return fmt.Errorf("op %d: %w", i, err)
			}
		}
		return nil
	}
}

// TestCrashAtEveryStep kills a child with SIGKILL at every step of the
// script — inside the lock, between writing an undo-log entry and
// publishing it, between publishing it and the store, at the commit — and
// checks after each that the parent recovers the lock, the verifier passes,
// the pool is exactly as before the interrupted operation or after it
// (never in between), the parent's own blocks are intact, and the parent
// carries on allocating.
func TestCrashAtEveryStep(t *testing.T) {
	const size = 1 << 20
	// A dry run in this process counts the steps and records the pool's
	// state (Check's report) before each operation of the script.
	p := newTestPool(t, size)
	c := crashSetup(t, p)
	steps := 0
	p.hook = func() { steps++ }
	var bounds []int    // steps before op i
	var states []Report // the pool before op i (and after the last)
	for _, op := range crashScript(p, c) {
		p.hook = nil
		states = append(states, mustCheck(t, p))
		p.hook = func() { steps++ }
		bounds = append(bounds, steps)
		require.NoError(t, op())
	}
	p.hook = nil
	states = append(states, mustCheck(t, p))
	bounds = append(bounds, steps)
	t.Logf("the script is %d operations, %d steps", len(bounds)-1, steps)
	// The script takes the paths it says it takes.
	assert.Equal(t, states[0].FreeRuns, states[1].FreeRuns, "l1 coalesced with the run on its right")
	assert.Equal(t, states[1].FreeRuns, states[2].FreeRuns, "l3 coalesced with the run on its left")
	assert.Equal(t, states[0].FreePages+4, states[2].FreePages)
	assert.Equal(t, states[3].Slabs-1, states[4].Slabs, "the empty slab released")
	assert.Equal(t, states[5].Slabs+1, states[6].Slabs, "a slab carved")
	assert.Equal(t, states[6].Slabs, states[7].Slabs, "its class's only slab kept, empty")
	assert.Equal(t, states[7].FreeRuns, states[8].FreeRuns, "a run split")

	stride := 1
	if testing.Short() {
		stride = 7
	}
	recovered := 0
	for k := 1; k <= steps; k += stride {
		p := newTestPool(t, size)
		c := crashSetup(t, p)
		cmd := child(p, "crash", fmt.Sprintf("%s=%d", crashEnv, k), setupEnv+"="+c.encode())
		err := cmd.Run()
		require.True(t, killedBySIGKILL(err), "step %d: the child should have killed itself: %v", k, err)

		rep := mustCheck(t, p)
		if rep.Recovered {
			recovered++
		}
		op := 0
		for op+1 < len(bounds) && bounds[op+1] < k {
			op++
		}
		clear := func(r Report) Report { r.Recovered = false; return r }
		got := clear(rep)
		if got != clear(states[op]) && got != clear(states[op+1]) {
			t.Fatalf("step %d (op %d): the pool is neither as before the op nor after:\n got %+v\nbefore %+v\n after %+v",
				k, op, got, states[op], states[op+1])
		}
		for _, r := range c.keep {
			b, err := p.Bytes(r)
			require.NoError(t, err)
			require.Equal(t, -1, alloctest.Intact(b[:24], uint32(r)), "step %d: block %v", k, r)
		}
		// Carry on: allocate and free as the child would have.
		var refs []Ref
		for i := range 50 {
			r, b, err := p.Alloc(16 + i*97)
			require.NoError(t, err, "step %d", k)
			alloctest.Fill(b, uint32(i))
			refs = append(refs, r)
		}
		for _, r := range refs {
			require.NoError(t, p.Free(r))
		}
		mustCheck(t, p)
		require.NoError(t, p.Close())
	}
	assert.Positive(t, recovered, "some crashes left an operation to roll back")
	t.Logf("%d crashes, %d of them rolled back an operation", (steps+stride-1)/stride, recovered)
}

// TestCrashDuringRecovery: a child dies in the middle of an operation,
// and the next child, rolling that operation back, is killed in turn at
// each step of the rollback. The parent finishes the rollback, and the
// pool is exactly as before the first child's interrupted operation:
// recovery is idempotent.
func TestCrashDuringRecovery(t *testing.T) {
	const size = 1 << 20
	// The fourth operation of the script frees the only block of a slab,
	// which releases the slab into the runs: the longest log.
	const op = 3
	p := newTestPool(t, size)
	c := crashSetup(t, p)
	steps := 0
	p.hook = func() { steps++ }
	script := crashScript(p, c)
	for _, f := range script[:op] {
		require.NoError(t, f())
	}
	p.hook = nil
	before := mustCheck(t, p)
	start := steps
	p.hook = func() { steps++ }
	require.NoError(t, script[op]())
	p.hook = nil
	// Die two thirds of the way through it: many entries logged, not yet
	// committed.
	k := start + (steps-start)*2/3

	rolledBack := 0
	for m, entries := 2, uint64(1); uint64(m) <= entries+1; m++ {
		p := newTestPool(t, size)
		c := crashSetup(t, p)
		env := setupEnv + "=" + c.encode()
		err := child(p, "crash", fmt.Sprintf("%s=%d", crashEnv, k), env).Run()
		require.True(t, killedBySIGKILL(err), "the first child: %v", err)
		// The second child's step 1 is taking the lock over; then one
		// step a word restored, entries of them (it dies before its own
		// first operation).
		entries = p.h.Log.N
		require.Positive(t, entries, "the first child died with changes logged")
		err = child(p, "crash", fmt.Sprintf("%s=%d", crashEnv, m), env).Run()
		require.True(t, killedBySIGKILL(err), "the second child, m=%d: %v", m, err)
		rep := mustCheck(t, p)
		assert.True(t, rep.Recovered, "m=%d: the parent finished the rollback", m)
		rep.Recovered, before.Recovered = false, false
		require.Equal(t, before, rep, "killed at step %d of the rollback", m)
		require.NoError(t, p.Close())
		rolledBack++
	}
	assert.Greater(t, rolledBack, 3)
	t.Logf("the second child killed at each of %d steps of rolling back the first's operation", rolledBack)
}
