package alloc_test

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/brkmap/alloc"
	"github.com/brkmap/alloc/internal/alloctest"
	"github.com/brkmap/alloc/stats"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// What Trim gives back (issue 10: its result counts every byte it gave
// back). A byte is given back when it was committed and is no longer (the
// break moved down past it, a mapping was unmapped: released before or
// not, as the region counts its top), or when it stays committed but
// was not known released and now is (madvise): each once. Known released
// is the allocator's bookkeeping, ReleasedBytes and FitReleasedBytes. So,
// with C the committed bytes and R the known released ones, before (b)
// and after (a) the call, and nothing else running:
//
//	C_b-C_a + R_a-R_b <= Trim() <= C_b-C_a + R_a
//
// (the bytes released before and cut now are the difference), and a
// free-all, which leaves nothing committed, gives back exactly C_b. Every
// resident byte that leaves RAM is one of them: Trim() >= the drop of
// the measured Resident.

// trimMix is a mix of request sizes.
type trimMix struct {
	name   string
	lo, hi int // sizes drawn in [lo, hi]
}

var trimMixes = []trimMix{
	{"medium", 1025, 32 << 10}, // the best-fit heap (and slabs for some classes' exact sizes)
	{"small", 16, 1024},        // the slabs
	{"mixed", 16, 32 << 10},
}

// trimConfigs are the purge's settings: never (glibc's), at once (in the
// call that frees: no fast bins), the default delay, and a delay that does
// not run out during the test (the purge's bookkeeping on, its timers
// never firing).
var trimConfigs = []struct {
	name string
	cfg  alloc.Config
}{
	{"never", alloc.Config{PurgeDelay: alloc.PurgeNever}},
	{"immediately", alloc.Config{PurgeDelay: alloc.PurgeImmediately}},
	{"default", alloc.Config{}},
	{"hour", alloc.Config{PurgeDelay: time.Hour}},
}

// settle waits until the purge's timers have done their work: the
// counters stay the same for many delays in a row. Without it, a timer
// firing between the snapshot and Trim gives back bytes Trim does not.
func settle(t *testing.T, a *alloc.Allocator) {
	t.Helper()
	same := 0
	prev := a.Counters()
	for deadline := time.Now().Add(10 * time.Second); same < 20; {
		require.True(t, time.Now().Before(deadline), "the purge never settles")
		time.Sleep(10 * time.Millisecond)
		s := a.Counters()
		if s.Committed == prev.Committed && s.ReleasedBytes == prev.ReleasedBytes &&
			s.FitReleasedBytes == prev.FitReleasedBytes && s.PurgedBytes == prev.PurgedBytes &&
			s.DirtyBytes == prev.DirtyBytes {
			same++
		} else {
			same = 0
		}
		prev = s
	}
}

// checkTrimCount calls Trim and checks its result against the bounds
// above. It returns the snapshots before and after, and the result.
func checkTrimCount(t *testing.T, a *alloc.Allocator, when string) (before, after stats.Snapshot, got int) {
	t.Helper()
	before = a.Stats()
	got = a.Trim()
	after = a.Stats()
	requireBreakdown(t, after, when+": trimmed")
	cut := int64(before.Committed) - int64(after.Committed)
	relA := int64(after.ReleasedBytes + after.FitReleasedBytes)
	relB := int64(before.ReleasedBytes + before.FitReleasedBytes)
	t.Logf("%s: Trim %d; committed %d -> %d, known released %d -> %d, resident %d -> %d",
		when, got, before.Committed, after.Committed, relB, relA, before.Resident, after.Resident)
	assert.GreaterOrEqual(t, int64(got), cut, "%s: every byte no longer committed is counted", when)
	assert.GreaterOrEqual(t, int64(got), cut+relA-relB, "%s: every byte released is counted", when)
	assert.LessOrEqual(t, int64(got), cut+relA, "%s: no byte is counted twice", when)
	assert.GreaterOrEqual(t, int64(got), int64(before.Resident)-int64(after.Resident),
		"%s: every byte that left RAM is counted", when)
	return before, after, got
}

// TestTrimCountsEverything: after blocks of every mix are freed (all of
// them, all with some held in the best-fit heap's fast bins, or all but
// every 64th and the last), under every purge setting, Trim's result is
// the bytes it gave back: exactly the committed bytes when nothing stays
// live. A second Trim finds nothing.
func TestTrimCountsEverything(t *testing.T) {
	total := 16 << 20
	if testing.Short() || raceBuild {
		total = 4 << 20
	}
	for _, c := range trimConfigs {
		for _, mix := range trimMixes {
			for _, how := range []string{"free-all", "fast-bins", "pinned"} {
				t.Run(c.name+"/"+mix.name+"/"+how, func(t *testing.T) {
					a := newAlloc(t, c.cfg)
					rng := rand.New(rand.NewPCG(uint64(len(mix.name)), uint64(len(how))))
					var bs [][]byte
					for n := 0; n < total; {
						size := mix.lo + rng.IntN(mix.hi-mix.lo+1)
						b, err := a.Malloc(size)
						require.NoError(t, err)
						alloctest.Fill(b, uint32(len(bs)))
						bs = append(bs, b)
						n += size
					}
					var last [][]byte // freed last: the fast bins keep them
					if how == "fast-bins" {
						for i := 0; i < 8; i++ {
							b, err := a.Malloc(3000) // one size: one fast bin
							require.NoError(t, err)
							alloctest.Fill(b, 7)
							last = append(last, b)
							spacer, err := a.Malloc(3000 + 16*(i+1))
							require.NoError(t, err)
							alloctest.Fill(spacer, uint32(len(bs)))
							bs = append(bs, spacer)
						}
					}
					kept := map[int][]byte{}
					for i, b := range bs {
						if how == "pinned" && (i%64 == 0 || i == len(bs)-1) {
							kept[i] = b
							continue
						}
						require.Equal(t, -1, alloctest.Intact(b, uint32(i)))
						require.NoError(t, a.Free(b))
					}
					for _, b := range last {
						require.NoError(t, a.Free(b))
					}
					if c.cfg.PurgeDelay == 0 {
						settle(t, a)
					}
					before, after, got := checkTrimCount(t, a, "first")
					assert.Positive(t, got)
					if how != "pinned" {
						assert.Zero(t, after.Committed, "nothing live: the whole region goes")
						assert.Equal(t, int(before.Committed), got, "free-all: Trim gives back every committed byte")
					}
					_, _, again := checkTrimCount(t, a, "second")
					assert.Zero(t, again, "nothing left to give back")
					for i, b := range kept {
						require.Equal(t, -1, alloctest.Intact(b, uint32(i)), "a live block is intact")
						require.NoError(t, a.Free(b))
					}
					if how == "pinned" {
						_, after, got := checkTrimCount(t, a, "all freed")
						assert.Zero(t, after.Committed, "nothing live: the whole region goes")
						assert.Positive(t, got)
					}
				})
			}
		}
	}
}

// TestTrimCountsQuarantinesAndRuns: the same with large blocks and a
// request arena beside small and medium ones, under Debug (freed mappings
// and Scratch runs kept PROT_NONE until Trim: the mappings committed
// until Trim unmaps them, the runs the region's once Trim hands them
// back) and under PolicyBrk (large blocks as runs of the region).
func TestTrimCountsQuarantinesAndRuns(t *testing.T) {
	for _, c := range []struct {
		name string
		cfg  alloc.Config
	}{
		{"debug-never", alloc.Config{Debug: true, PurgeDelay: alloc.PurgeNever}},
		{"debug-default", alloc.Config{Debug: true}},
		{"brk-never", alloc.Config{Policy: alloc.PolicyBrk, PurgeDelay: alloc.PurgeNever}},
		{"brk-default", alloc.Config{Policy: alloc.PolicyBrk}},
		{"threshold-never", alloc.Config{PurgeDelay: alloc.PurgeNever}},
	} {
		t.Run(c.name, func(t *testing.T) {
			a := newAlloc(t, c.cfg)
			rng := rand.New(rand.NewPCG(5, 6))
			var bs [][]byte
			for i := range 3000 {
				size := 16 + rng.IntN(32<<10)
				if i%100 == 0 {
					size = 200<<10 + rng.IntN(1<<20) // large: a mapping, or a run under PolicyBrk
				}
				b, err := a.Malloc(size)
				require.NoError(t, err)
				alloctest.Fill(b, uint32(i))
				bs = append(bs, b)
			}
			sc := a.NewScratch()
			for i := range 200 {
				b, err := sc.Alloc(100 + 97*i)
				require.NoError(t, err)
				clear(b)
			}
			for i, b := range bs {
				require.Equal(t, -1, alloctest.Intact(b, uint32(i)))
				require.NoError(t, a.Free(b))
			}
			require.NoError(t, sc.Free())
			if c.cfg.PurgeDelay == 0 {
				settle(t, a)
			}
			before, after, got := checkTrimCount(t, a, "first")
			assert.Zero(t, after.Committed, "nothing live: everything goes")
			assert.Equal(t, int(before.Committed), got, "free-all: Trim gives back every committed byte")
			if c.cfg.Debug {
				assert.Zero(t, after.QuarantineBytes)
			}
			_, _, again := checkTrimCount(t, a, "second")
			assert.Zero(t, again, "nothing left to give back")
		})
	}
}
