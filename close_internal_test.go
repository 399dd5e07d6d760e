package alloc

import (
	"bufio"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// span is a range of addresses [lo, hi).
type span struct{ lo, hi uintptr }

// liveMappings returns the process's mappings, from /proc/self/maps.
func liveMappings(t *testing.T) []span {
	t.Helper()
	f, err := os.Open("/proc/self/maps")
	require.NoError(t, err)
	defer f.Close()
	var out []span
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		rng, _, _ := strings.Cut(sc.Text(), " ")
		lo, hi, ok := strings.Cut(rng, "-")
		require.True(t, ok, "a line of /proc/self/maps: %q", sc.Text())
		l, err1 := strconv.ParseUint(lo, 16, 64)
		h, err2 := strconv.ParseUint(hi, 16, 64)
		require.NoError(t, errors.Join(err1, err2))
		out = append(out, span{uintptr(l), uintptr(h)})
	}
	require.NoError(t, sc.Err())
	return out
}

// testName labels the allocator's mappings in /proc/self/maps during
// TestCloseUnderLoad.
const testName = "brkmap-close-test"

// namedMappings returns the lines of /proc/self/maps naming testName.
func namedMappings(t *testing.T) []string {
	b, err := os.ReadFile("/proc/self/maps")
	require.NoError(t, err)
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, "[anon:"+testName+"]") {
			out = append(out, l)
		}
	}
	return out
}

// unchanged returns the mappings of after that are in before too, with the
// same bounds.
func unchanged(before, after []span) []span {
	was := map[span]bool{}
	for _, m := range before {
		was[m] = true
	}
	var out []span
	for _, m := range after {
		if was[m] {
			out = append(out, m)
		}
	}
	return out
}

// stillMapped returns the spans of want that some of maps overlaps.
func stillMapped(maps []span, want []span) []span {
	sort.Slice(maps, func(i, j int) bool { return maps[i].lo < maps[j].lo })
	var out []span
	for _, w := range want {
		i := sort.Search(len(maps), func(i int) bool { return maps[i].hi > w.lo })
		if i < len(maps) && maps[i].lo < w.hi {
			out = append(out, w)
		}
	}
	return out
}

// closeStressConfigs are the configurations TestCloseUnderLoad closes
// under load: every policy, Debug, and the heap profile recording every
// block.
var closeStressConfigs = []struct {
	name string
	cfg  Config
}{
	{"threshold", Config{}},
	{"brk", Config{Policy: PolicyBrk}},
	{"mmap", Config{Policy: PolicyMmap}},
	{"dynamic", Config{DynamicThreshold: true}},
	{"debug", Config{Debug: true}},
	{"profile-all", Config{ProfileRate: 1}},
}

// TestCloseUnderLoad is issue 11's proof: goroutines call every method
// while another closes the allocator, many times over. Every call returns
// success or ErrClosed (a Free or Realloc of a block may also find it was
// the one the closing unmapped: ErrClosed too), nothing faults, nothing
// hangs (a round that does not finish in time fails the test), every call
// made after Close returned gets ErrClosed (or, for Trim and Stats,
// nothing), and once Close has returned no mapping of the allocator is
// left in /proc/self/maps.
func TestCloseUnderLoad(t *testing.T) {
	rounds := 12
	if raceEnabled {
		rounds = 3
	}
	if testing.Short() {
		rounds = 2
	}
	sizes := []int{0, 16, 48, 100, 1000, 4000, 20000, 40000, 100000, 200000, 1 << 20}
	for _, c := range closeStressConfigs {
		t.Run(c.name, func(t *testing.T) {
			for round := range rounds {
				closeUnderLoadRound(t, c.cfg, sizes, uint64(round))
				if t.Failed() {
					return
				}
			}
		})
	}
}

func closeUnderLoadRound(t *testing.T, cfg Config, sizes []int, seed uint64) {
	a, err := New(cfg)
	require.NoError(t, err)
	region := span{a.region.Base(), a.region.Base() + uintptr(orDefault(cfg.Reserve, DefaultReserve))}
	named := nameMapping(region.lo, region.hi-region.lo)

	workers := 2 * runtime.GOMAXPROCS(0)
	var (
		wg        sync.WaitGroup
		closed    atomic.Bool // Close has returned
		mu        sync.Mutex
		mappings  []span   // blocks live when Close returned that were mappings of their own
		maps      []span   // the process's mappings once Close returned
		namedLeft []string // the lines of /proc/self/maps naming testName once Close returned
		bad       []string
	)
	fail := func(format string, args ...any) {
		mu.Lock()
		if len(bad) < 10 {
			bad = append(bad, fmt.Sprintf(format, args...))
		}
		mu.Unlock()
	}
	// check: a result made before Close returned is success or ErrClosed;
	// after, ErrClosed.
	check := func(op string, after bool, err error) {
		switch {
		case after && !errors.Is(err, ErrClosed):
			fail("%s after Close returned: %v, want ErrClosed", op, err)
		case err != nil && !errors.Is(err, ErrClosed):
			fail("%s: %v, want success or ErrClosed", op, err)
		}
	}
	// note records the blocks a worker still holds once Close returned:
	// mappings of their own (any other address may have been unmapped and
	// reused by the process since)
	note := func(blocks [][]byte) {
		mu.Lock()
		defer mu.Unlock()
		for _, b := range blocks {
			if p := addrOf(b); !a.region.Contains(p) {
				mappings = append(mappings, span{p, p + max(uintptr(len(b)), 1)})
			}
		}
	}
	// name labels a new block's own mapping in /proc/self/maps, inside the
	// gate so that Close cannot have unmapped it (and someone else mapped
	// the address) meanwhile
	name := func(b []byte) {
		if p := addrOf(b); named && !a.region.Contains(p) && a.enter() {
			nameMapping(p&^(a.page-1), max(uintptr(len(b)), 1))
			a.leave(nil)
		}
	}
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, uint64(w)))
			var mine [][]byte
			for i := 0; ; i++ {
				after := closed.Load()
				n := sizes[rng.IntN(len(sizes))]
				switch op := rng.IntN(16); {
				case op < 5:
					b, err := a.Malloc(n)
					check("Malloc", after, err)
					if err == nil {
						name(b)
						mine = append(mine, b)
					}
				case op < 7:
					b, err := a.Calloc(n)
					check("Calloc", after, err)
					if err == nil {
						name(b)
						mine = append(mine, b)
					}
				case op < 9 && len(mine) > 0:
					k := rng.IntN(len(mine))
					b, err := a.Realloc(mine[k], n)
					check("Realloc", after, err)
					if err == nil {
						name(b)
						mine[k] = b
					}
				case op < 13 && len(mine) > 0:
					k := rng.IntN(len(mine))
					err := a.Free(mine[k])
					check("Free", after, err)
					if err == nil { // else: Close took it, and must have unmapped it
						mine[k] = mine[len(mine)-1]
						mine = mine[:len(mine)-1]
					}
				case op == 13:
					if got := a.Trim(); after && got != 0 {
						fail("Trim after Close returned %d", got)
					}
				case op == 14:
					if s := a.Stats(); after && s.LiveBlocks != 0 {
						fail("Stats after Close returned: %d live blocks", s.LiveBlocks)
					}
				default:
					_ = a.HeapProfile()
					a.UsableSize(nil)
				}
				if after && i > 0 && rng.IntN(8) == 0 {
					note(mine)
					return // some calls made after Close returned: enough
				}
			}
		}()
	}
	time.Sleep(time.Duration(rand.IntN(3000)) * time.Microsecond)
	if named {
		require.NotEmpty(t, namedMappings(t), "the region is named: the check after Close means something")
	}
	before := liveMappings(t)
	done := make(chan error, 1)
	go func() { done <- a.Close() }()
	timeout := time.NewTimer(10 * time.Second)
	defer timeout.Stop()
	select {
	case err := <-done:
		assert.NoError(t, err, "Close")
		maps = liveMappings(t) // at once: later, other mappings may take the addresses
		namedLeft = namedMappings(t)
	case <-timeout.C:
		t.Fatal("Close did not return in 10 s")
	}
	closed.Store(true)
	finished := make(chan struct{})
	go func() { wg.Wait(); close(finished) }()
	select {
	case <-finished:
	case <-timeout.C:
		t.Fatal("calls did not return in 10 s after Close")
	}
	for _, b := range bad {
		t.Error(b)
	}
	if named {
		// exact: only the allocator's mappings carry the name (another
		// mapping may have taken their addresses since Close)
		assert.Empty(t, namedLeft, "mappings of the allocator left after Close")
		return
	}
	// Without names, by address: a mapping made by someone else (a new
	// thread's stack) may take a freed address at once, so only a mapping
	// that was there before Close began, unchanged, counts as left over.
	left := stillMapped(unchanged(before, maps), append([]span{region}, mappings...))
	assert.Empty(t, left, "mappings of the allocator left after Close (the region is %#x-%#x)", region.lo, region.hi)
}

// TestErrorIdentities: every error says which sentinel it is, and a chain
// names each layer once (issue 11, item 9: a Malloc racing Close got
// "arena: region is closed", which matched no sentinel, and chains read
// "alloc: … largealloc: … alloc: out of memory").
func TestErrorIdentities(t *testing.T) {
	a, err := New(Config{Limit: 64 << 10})
	require.NoError(t, err)
	prefix := regexp.MustCompile(`(^|[^a-z])alloc: `)
	for _, n := range []int{100 << 10, 4 << 20} { // a run of the region, a mapping
		_, err := a.Malloc(n)
		require.ErrorIs(t, err, ErrOutOfMemory)
		assert.Len(t, prefix.FindAllString(err.Error(), -1), 1, "%q: alloc: once", err)
		assert.Equal(t, 1, strings.Count(err.Error(), "out of memory"), "%q", err)
	}
	require.NoError(t, a.Close())
	// the layers below a closed allocator: a call that got past the gate
	// before Close would see these
	_, _, err = a.region.Alloc(1, 0, 0, 0)
	assert.ErrorIs(t, err, ErrClosed, "the region's")
	_, err = a.large.Alloc(1<<20, 0, 0)
	assert.ErrorIs(t, err, ErrClosed, "the mappings'")
	_, _, _, err = a.slabs.Refill(3, 40)
	assert.ErrorIs(t, err, ErrClosed, "the slabs'")
	_, err = a.Malloc(1)
	assert.ErrorIs(t, err, ErrClosed)
	assert.Equal(t, "allocator is closed", err.Error())
}

// TestZeroCapacityReslice: b[len(b):] has capacity 0 and, by Go's rule,
// the start of b; Free and Realloc refuse it instead of taking the whole
// block (issue 11, item 11). A block of 0 bytes is freed as before.
func TestZeroCapacityReslice(t *testing.T) {
	for _, c := range closeStressConfigs {
		t.Run(c.name, func(t *testing.T) {
			a, err := New(c.cfg)
			require.NoError(t, err)
			defer a.Close()
			for _, n := range []int{1, 64, 40000, 300000} {
				b, err := a.Malloc(n)
				require.NoError(t, err)
				tail := b[len(b):]
				require.Equal(t, addrOf(b), addrOf(tail), "Go keeps the start in a zero-capacity reslice")
				assert.ErrorIs(t, a.Free(tail), ErrInvalidFree, "n=%d", n)
				_, err = a.Realloc(tail, 10)
				assert.ErrorIs(t, err, ErrInvalidFree, "n=%d", n)
				assert.GreaterOrEqual(t, a.UsableSize(b), n, "still live")
				require.NoError(t, a.Free(b))
			}
			e, err := a.Malloc(0)
			require.NoError(t, err)
			require.NoError(t, a.Free(e), "a block of 0 bytes")
			assert.Zero(t, a.Stats().LiveBlocks)
		})
	}
}

// TestDebugQuarantineYieldsToLimit: Debug keeps freed mappings in a
// quarantine; they must not count against Config.Limit once nothing is
// live (issue 11, item 10): an allocation the limit would refuse flushes
// the quarantine first, and Trim empties it.
func TestDebugQuarantineYieldsToLimit(t *testing.T) {
	a, err := New(Config{Debug: true, Limit: 4 << 20, MmapThreshold: DefaultMmapThreshold}) // pinned: the blocks stay mappings
	require.NoError(t, err)
	defer a.Close()
	for range 3 {
		b, err := a.Malloc(1 << 20)
		require.NoError(t, err)
		require.NoError(t, a.Free(b))
	}
	require.NotZero(t, a.Stats().QuarantineBytes)
	b, err := a.Malloc(3 << 20)
	require.NoError(t, err, "the quarantine gives way to the limit")
	require.NoError(t, a.Free(b))
	a.Trim()
	s := a.Stats()
	assert.Zero(t, s.QuarantineBytes, "Trim empties the quarantine")
	assert.Zero(t, s.MmapBytes)
	assert.Less(t, s.Committed, uint64(1<<20), "nothing live: (almost) nothing committed")
}

// TestRefillAtLimitDrainsOtherCaches: at Config.Limit, a refill first
// takes back the free blocks other Ps' caches hold (issue 11, item 14: a
// second fill to the limit got 65,519 blocks of 65,536, the rest stranded
// in other caches).
func TestRefillAtLimitDrainsOtherCaches(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(4))
	a, err := New(Config{Limit: 2 << 20, TopPad: -1, ColdBlocks: -1}) // every block from a slab: the P caches' test
	require.NoError(t, err)
	defer a.Close()
	fillUp := func() [][]byte {
		var bs [][]byte
		for {
			b, err := a.Malloc(64)
			if err != nil {
				require.ErrorIs(t, err, ErrOutOfMemory)
				return bs
			}
			bs = append(bs, b)
		}
	}
	first := fillUp()
	// free them from goroutines on every P: the blocks land in their caches
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < len(first); i += 8 {
				assert.NoError(t, a.Free(first[i]))
				if i%64 == 0 {
					runtime.Gosched()
				}
			}
		}()
	}
	wg.Wait()
	second := fillUp()
	assert.Equal(t, len(first), len(second), "the second fill to the limit gets as many blocks")
	for _, b := range second {
		require.NoError(t, a.Free(b))
	}
}

// TestLargeAlignmentCommitsNoPadding: a small block with an alignment far
// past the threshold commits its block, not its padding (issue 11, item
// 12: AlignedAlloc(1<<30, 16) committed about 1 GiB of the region, and
// with Limit 64 MiB AlignedAlloc(128<<20, 16) failed).
func TestLargeAlignmentCommitsNoPadding(t *testing.T) {
	for _, debug := range []bool{false, true} {
		a, err := New(Config{Limit: 64 << 20, Debug: debug})
		require.NoError(t, err)
		for _, align := range []int{2 << 20, 128 << 20, 1 << 30} {
			b, err := a.AlignedAlloc(align, 16)
			require.NoError(t, err, "align %d, debug %v", align, debug)
			assert.Zero(t, addrOf(b)%uintptr(align))
			assert.Less(t, a.Stats().Committed, uint64(1<<20), "align %d: the padding is not committed", align)
			b[15] = 1
			require.NoError(t, a.Free(b))
		}
		require.NoError(t, a.Close())
	}
}
