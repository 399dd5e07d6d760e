package alloc

// Injected kernel failures. Every system call the allocator makes goes
// through its *sys.OS, whose Fail hook is asked first; these tests make
// one chosen call fail — identified by the system call and by the code
// path that makes it — and check that the allocator reports it and loses
// nothing:
//
//   - the operation returns ErrOutOfMemory with the kernel's error wrapped
//     in it, or (where nothing could be allocated: a refused munmap) an
//     error wrapping the kernel's error, or nothing at all where the
//     failure only means memory is given back later (a refused trim);
//   - no live block is damaged: every block was filled with its own
//     pattern and is checked;
//   - Stats is exact: LiveBlocks and LiveBytes match the model, MmapCount
//     and MmapBytes match the registry, Committed = ArenaBytes + MmapBytes
//     (the budget leaked nothing);
//   - no mapping leaked: the process's virtual size (VmSize) comes back to
//     where it was once everything is freed;
//   - the allocator is usable afterwards.
//
// The table injectCases has one row per injection point.
// TestInjectionTableCoversEveryCall runs a broad workload under every
// configuration, records every (system call, call path) the allocator
// makes, and fails if one of them has no row: a new system call added to
// the allocator without a failure test fails the test.

import (
	"bufio"
	"cmp"
	"errors"
	"fmt"
	"os"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"unsafe"

	"github.com/brkmap/alloc/arena"
	"github.com/brkmap/alloc/internal/alloctest"
	"github.com/brkmap/alloc/internal/sys"
	"github.com/brkmap/alloc/largealloc"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

var errInjected = errors.New("injected kernel failure")

// injectConfigs are the configurations every row runs under (the rows say
// which of them make the call at all): the shared test variants without
// Debug or huge pages, whose system calls the rows count. Every one keeps
// free pages until Trim (PurgeNever), so that what a row prepares is still
// there when it acts; "purge" releases them at once, for the purge's own
// rows.
var injectConfigs = func() (cs []struct {
	name string
	cfg  Config
}) {
	add := func(name string, cfg Config) {
		cs = append(cs, struct {
			name string
			cfg  Config
		}{name, cfg})
	}
	for _, v := range alloctest.Variants {
		if v.Plain() && v.Purge == "" && v.Name != "default" && v.ColdBlocks == 0 { // the cold variants make the same calls as threshold
			cfg := ConfigOf(v)
			cfg.PurgeDelay = PurgeNever
			add(v.Name, cfg)
		}
	}
	add("purge", Config{MmapThreshold: DefaultMmapThreshold, PurgeDelay: PurgeImmediately})
	return cs
}()

var (
	allConfigs    = []string{"threshold", "brk", "mmap", "dynamic", "low-threshold"}
	regionConfigs = []string{"threshold", "brk", "dynamic", "low-threshold"} // the region is used
	runConfigs    = []string{"threshold", "brk", "dynamic"}                  // mid-size runs exist
	mapConfigs    = []string{"threshold", "mmap", "dynamic", "low-threshold"}
	splitConfigs  = []string{"threshold", "dynamic", "low-threshold"} // both region and mappings
)

func configOf(name string) Config {
	for _, c := range injectConfigs {
		if c.name == name {
			return c.cfg
		}
	}
	panic("no config " + name)
}

// callPath names the code that made a system call — the function that
// called the sys.OS method and its caller, as in
// "arena.(*Region).growLocked<arena.(*Region).AllocRun" — and the line of the
// call.
func callPath() (string, int) {
	var pcs [32]uintptr
	n := runtime.Callers(2, pcs[:])
	frames := runtime.CallersFrames(pcs[:n])
	const mod = "github.com/brkmap/alloc"
	var names []string
	line := 0
	inSys := false
	for {
		f, more := frames.Next()
		switch {
		case strings.HasPrefix(f.Function, mod+"/internal/sys."):
			inSys = true
		case inSys:
			if len(names) == 0 {
				line = f.Line
			}
			name := strings.TrimPrefix(f.Function, mod+"/")
			if rest, ok := strings.CutPrefix(f.Function, mod+"."); ok {
				name = "alloc." + rest
			}
			names = append(names, name)
		}
		if !more || len(names) == 2 {
			break
		}
	}
	return strings.Join(names, "<"), line
}

// injector is an OS.Fail hook: while armed it fails the calls of one op
// made from one call path (a prefix of what callPath returns), after
// letting skip of them through, times of them (0: every one). It also
// records every call path it sees, if paths is not nil.
type injector struct {
	mu     sync.Mutex
	armed  bool
	op     sys.Op
	path   string
	line   int // if not 0, only calls from this line
	skip   int
	times  int
	seen   int
	failed int
	paths  map[string]bool // "op path" of every call made
}

func (in *injector) hook(op sys.Op, _ uint64) error {
	path, line := callPath()
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.paths != nil {
		in.paths[op.String()+" "+path] = true
	}
	if !in.armed || op != in.op || !strings.HasPrefix(path, in.path) || in.line != 0 && line != in.line {
		return nil
	}
	in.seen++
	if in.seen <= in.skip || in.times > 0 && in.failed >= in.times {
		return nil
	}
	in.failed++
	return fmt.Errorf("%v from %s: %w", op, path, errInjected)
}

func (in *injector) arm(op sys.Op, path string, line, skip, times int) {
	in.mu.Lock()
	in.armed, in.op, in.path, in.line, in.skip, in.times, in.seen, in.failed = true, op, path, line, skip, times, 0, 0
	in.mu.Unlock()
}

func (in *injector) disarm() {
	in.mu.Lock()
	in.armed = false
	in.mu.Unlock()
}

func (in *injector) fired() int {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.failed
}

// harness is one allocator under injection, with the shared model of its
// live blocks (internal/alloctest): every block patterned, checked before
// it is freed or moved and after any failure.
type harness struct {
	t   *testing.T
	cfg string
	a   *Allocator
	in  *injector
	m   *alloctest.Model
	vm0 uint64 // VmSize after New, before any block
}

func newHarness(t *testing.T, name string, cfg Config) *harness {
	t.Helper()
	a, err := New(cfg)
	require.NoError(t, err)
	h := &harness{t: t, cfg: name, a: a, in: &injector{}, m: alloctest.NewModel(a, ErrInvalidFree, ErrDoubleFree)}
	a.os.Fail = h.in.hook
	h.vm0 = vmSize(t)
	return h
}

// apply applies op to the model and returns the allocator's error, if
// any; a broken contract fails the test.
func (h *harness) apply(op alloctest.Op) error {
	h.t.Helper()
	before := h.m.Live()
	err := h.m.Apply(op)
	if err == nil {
		return nil
	}
	// The model's own findings name what broke; the allocator's errors are
	// returned for the row to judge. Either way the blocks must be intact.
	require.Equal(h.t, before, h.m.Live(), "a failed %v changed the live blocks: %v", op, err)
	require.NoError(h.t, h.m.Check(), "after a failed %v (%v)", op, err)
	return err
}

// allocate applies an allocation and returns the new block.
func (h *harness) allocate(op alloctest.Op) ([]byte, error) {
	h.t.Helper()
	if err := h.apply(op); err != nil {
		return nil, err
	}
	bs := h.m.Blocks()
	return bs[len(bs)-1].B, nil
}

func (h *harness) malloc(n int) ([]byte, error) {
	return h.allocate(alloctest.Op{Kind: alloctest.OpMalloc, Size: n})
}

func (h *harness) calloc(n int) ([]byte, error) {
	return h.allocate(alloctest.Op{Kind: alloctest.OpCalloc, Size: n})
}

func (h *harness) aligned(align, n int) ([]byte, error) {
	return h.allocate(alloctest.Op{Kind: alloctest.OpAligned, Align: align, Size: n})
}

func (h *harness) mustMalloc(n int) []byte {
	h.t.Helper()
	b, err := h.malloc(n)
	require.NoError(h.t, err)
	return b
}

// mediums allocates count blocks of 6000 bytes: medium under every
// region config (below low-threshold's 8 KiB), from the best-fit heap.
func (h *harness) mediums(count int) [][]byte {
	h.t.Helper()
	bs := make([][]byte, count)
	for i := range bs {
		bs[i] = h.mustMalloc(6000)
	}
	return bs
}

// index returns b's index among the model's live blocks.
func (h *harness) index(b []byte) int {
	h.t.Helper()
	i := h.m.Find(b)
	require.GreaterOrEqual(h.t, i, 0, "not a block of the model")
	return i
}

// free frees b; on error b must still be live and intact.
func (h *harness) free(b []byte) error {
	return h.apply(alloctest.Op{Kind: alloctest.OpFree, Block: h.index(b)})
}

// realloc resizes b; on error b must still be live and intact.
func (h *harness) realloc(b []byte, n int) ([]byte, error) {
	i := h.index(b)
	if err := h.apply(alloctest.Op{Kind: alloctest.OpRealloc, Block: i, Size: n}); err != nil {
		return nil, err
	}
	return h.m.Blocks()[i].B, nil
}

// liveBlocks returns the model's live blocks, a copy to range over while
// freeing.
func (h *harness) liveBlocks() [][]byte {
	var bs [][]byte
	for _, l := range h.m.Blocks() {
		bs = append(bs, l.B)
	}
	return bs
}

func (h *harness) freeAll(bs [][]byte) error {
	for _, b := range bs {
		if err := h.free(b); err != nil {
			return err
		}
	}
	return nil
}

// background fills the allocator with blocks of every kind its
// configuration makes: slabs, runs, mappings, aligned and zeroed ones.
func (h *harness) background() {
	for _, n := range []int{0, 24, 500, 3000, 20 << 10, 100 << 10, 300 << 10, 3 << 20} {
		h.mustMalloc(n)
	}
	_, err := h.aligned(64<<10, 1000)
	require.NoError(h.t, err)
	_, err = h.calloc(40 << 10)
	require.NoError(h.t, err)
}

// midBlock allocates a block that gets a page run of the region to itself
// under this configuration.
func (h *harness) midBlock() []byte {
	h.t.Helper()
	var b []byte
	var err error
	switch h.cfg {
	case "threshold", "dynamic", "brk", "purge":
		b, err = h.malloc(100 << 10)
	case "low-threshold": // mid sizes are mapped: an over-aligned small request gets a run
		b, err = h.aligned(8<<10, 6000)
	default:
		h.t.Fatalf("no runs under %s", h.cfg)
	}
	require.NoError(h.t, err)
	run := h.a.region.Lookup(addrOf(b))
	require.True(h.t, run != nil && run.Kind() == arena.KindMid, "a run of its own")
	return b
}

// topRuns allocates run blocks above every live block of the region,
// enough that freeing them all moves the break down, and returns them.
func (h *harness) topRuns() [][]byte {
	h.a.Trim()
	var top uintptr // the end of the highest live block of the region
	for _, b := range h.liveBlocks() {
		if p := addrOf(b); h.a.region.Contains(p) {
			top = max(top, p+uintptr(h.a.UsableSize(b)))
		}
	}
	var bs [][]byte
	pad := max(orDefault(configOf(h.cfg).TopPad, DefaultTopPad), 0)
	want := 2 * (uintptr(h.a.trim.Load()) + uintptr(pad))
	for sum := uintptr(0); sum < want; {
		b := h.midBlock() // those that fill holes below stay live
		if addrOf(b) > top {
			bs = append(bs, b)
			sum += uintptr(h.a.UsableSize(b))
		}
	}
	return bs
}

// heapRunBack makes the best-fit heap take a run of its own above a run
// of the region's (the heap's top cannot grow in place past it), frees
// its blocks and trims: the run, emptied, goes back to the region, and
// the pages of its bitmap's window in the region's side go back to the
// kernel (fit's dropBits).
func (h *harness) heapRunBack() error {
	h.t.Helper()
	mid, _, err := h.a.region.Alloc(1024, 0, arena.KindMid, 4<<20)
	require.NoError(h.t, err)
	defer func() { require.NoError(h.t, h.a.region.Free(mid)) }()
	var bs [][]byte
	for {
		require.Less(h.t, len(bs), 4096, "no run of the heap's above the region's")
		b, err := h.malloc(3000)
		if err != nil {
			return err
		}
		bs = append(bs, b)
		if run := h.a.region.Lookup(addrOf(b)); run.Kind() == arena.KindFit && run.Start() > mid.Start() {
			break
		}
	}
	if err := h.freeAll(bs); err != nil {
		return err
	}
	h.a.Trim()
	return nil
}

// check holds the allocator against the model (every block intact, none
// overlapping, the counters), and the mappings against the registry.
func (h *harness) check(what string) {
	h.t.Helper()
	require.NoError(h.t, h.m.Check(), what)
	var mapped, count uint64
	for _, b := range h.liveBlocks() {
		if m := h.a.large.Lookup(addrOf(b)); m != nil {
			count++
			mapped += uint64(m.Len)
		}
	}
	s := h.a.Stats()
	assert.Equal(h.t, count, s.MmapCount, "MmapCount %s", what)
	assert.Equal(h.t, mapped, s.MmapBytes, "MmapBytes %s", what)
	var registry int
	h.a.large.Each(func(largealloc.Mapping) { registry++ })
	assert.EqualValues(h.t, s.MmapCount, registry, "mappings in the registry %s", what)
}

// usable proves the allocator still works: every kind of block allocated,
// grown, checked and freed, then everything freed, and no mapping left.
func (h *harness) usable() {
	h.t.Helper()
	h.in.disarm()
	for _, n := range []int{0, 24, 3000, 40 << 10, 100 << 10, 300 << 10, 2 << 20} {
		b := h.mustMalloc(n)
		b2, err := h.realloc(b, n+n/2+1)
		require.NoError(h.t, err)
		require.NoError(h.t, h.free(b2))
	}
	b, err := h.aligned(1<<20, 5000)
	require.NoError(h.t, err)
	require.NoError(h.t, h.free(b))
	h.check("after the failure, allocating again")
	require.NoError(h.t, h.m.FreeAll())
	h.a.Trim()
	h.check("with everything freed")
	s := h.a.Stats()
	assert.Zero(h.t, s.LiveBlocks)
	assert.Zero(h.t, s.MmapCount)
	assert.Zero(h.t, s.MmapBytes)
	vm := vmSize(h.t)
	assert.InDelta(h.t, float64(h.vm0), float64(vm), vmSlack,
		"VmSize %d MiB with everything freed, %d MiB after New: a leaked mapping?", vm>>20, h.vm0>>20)
}

// vmSlack is how far the process's virtual size may move for reasons of
// its own (the Go runtime maps heap arenas of 64 MiB); every row whose
// failure could leave a mapping behind uses mappings larger than this.
const vmSlack = 128 << 20

// bigMapping is the size of mappings in rows whose failure could leak one:
// larger than vmSlack, so a leak shows in VmSize. These rows never write
// it: the failure comes first. largeBlock is a mapping the rows fill.
const (
	bigMapping = 256 << 20
	largeBlock = 24 << 20
)

// vmSize returns the process's virtual size from /proc/self/status.
func vmSize(t testing.TB) uint64 {
	t.Helper()
	f, err := os.Open("/proc/self/status")
	require.NoError(t, err)
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmSize:"); ok {
			kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			require.NoError(t, err)
			return kb << 10
		}
	}
	t.Fatal("no VmSize in /proc/self/status")
	return 0
}

// untilFired repeats op until the injector has failed a call or op
// returns an error, at most 4096 times, and returns op's last error.
func (h *harness) untilFired(op func() error) error {
	for range 4096 {
		if err := op(); err != nil || h.in.fired() > 0 {
			return err
		}
	}
	h.t.Fatal("the injection point was never reached")
	return nil
}

// alignedUntilFired asks for over-aligned mappings until the armed munmap
// (of the head or of the tail) is refused: an allocation that needed no
// such trim (the kernel's address happened to be aligned) is freed
// unwritten and tried again, at a different size so at another address.
func (h *harness) alignedUntilFired() error {
	for i := range 64 {
		b, err := h.a.AlignedAlloc(bigMapping, bigMapping+i*int(sys.PageSize))
		if err != nil || h.in.fired() > 0 {
			require.Nil(h.t, b)
			return err
		}
		require.NoError(h.t, h.a.Free(b))
	}
	h.t.Fatal("the injection point was never reached")
	return nil
}

// outcome is what the caller must get from the failed operation.
type outcome int

const (
	wantOOM    outcome = iota // ErrOutOfMemory, the kernel's error wrapped in it
	wantFailed                // an error wrapping the kernel's error (a refused munmap: the block stays live)
	wantOK                    // no error: memory is given back later instead (a refused trim), or the operation found another way
)

type injectCase struct {
	name    string
	op      sys.Op
	path    string   // the call path, as callPath names it (a prefix matches every caller)
	configs []string // the configurations that make this call on this path
	skip    int      // calls on the path let through first: skip 2 fails "the 3rd mprotect"
	times   int      // calls failed (0: every one while armed)
	line    func(h *harness) int
	prepare func(h *harness) any
	act     func(h *harness, state any) error
	want    outcome
	real    bool // the kernel's own refusal, not the hook's
	closes  bool // act closes the allocator
}

// The paths of every system call the allocator makes.
const (
	pathReserve    = "arena.New<alloc.New"
	pathGrow       = "arena.(*Region).growLocked<arena.(*Region).AllocRun"
	pathGrowResize = "arena.(*Region).growLocked<arena.(*Region).Resize"
	pathSide       = "arena.(*Side).commit<arena.(*Side).Words"
	// A run of the best-fit heap going back gives back its bitmap's pages.
	pathSideRelease = "arena.(*Side).Release<fit.(*Heap).dropBits"
	// The region gives pages back without its lock, in one place for
	// every caller (arena's purge.go: a job taken out under the lock):
	// the top trim of a Free, Trim's and the purge's share these two
	// paths, and their rows tell them apart by what they do.
	pathTopCut       = "arena.(*Region).cutTop<arena.(*Region).giveTopLocked"
	pathRunAdvise    = "arena.(*Region).adviseRun<arena.(*Region).unlockAndRelease"
	pathShrinkFree   = pathTopCut
	pathShrinkTrim   = pathTopCut
	pathTrimRuns     = pathRunAdvise
	pathPurgeRuns    = pathRunAdvise
	pathPurgeTop     = pathTopCut
	pathRegionRes    = "arena.(*Region).Resident<alloc.(*Allocator).Stats"
	pathRegionClose  = "arena.(*Region).Close<alloc.(*Allocator).close"
	pathMap          = "largealloc.(*Mappings).Alloc<alloc.(*Allocator).mappedBlock"
	pathUnmap        = "largealloc.(*Mappings).Free<alloc.(*Allocator).freeMapped"
	pathRemap        = "largealloc.(*Mappings).Resize<alloc.(*Allocator).realloc"
	pathMappingsRes  = "largealloc.(*Mappings).Resident<alloc.(*Allocator).Stats"
	pathMappingClose = "largealloc.(*Mappings).Close<alloc.(*Allocator).close"
)

// injectCases: one row per injection point — a system call on one path,
// under the configurations that make it there.
var injectCases = []injectCase{
	{
		name: "mmap of the reservation in New (the kernel's own refusal of 4 EiB)",
		op:   sys.OpMmap, path: pathReserve, configs: allConfigs, real: true, want: wantOOM,
		act: func(h *harness, _ any) error {
			cfg := configOf(h.cfg)
			cfg.Reserve = 1 << 62
			a, err := New(cfg)
			if err == nil {
				a.Close()
			}
			return err
		},
	},
	{
		name: "1st mprotect growing the break for a new slab",
		op:   sys.OpMprotect, path: pathGrow, configs: regionConfigs, times: 1, want: wantOOM,
		act: func(h *harness, _ any) error {
			return h.untilFired(func() error { _, err := h.malloc(2048); return err })
		},
	},
	{
		name: "3rd mprotect growing the break for a new slab",
		op:   sys.OpMprotect, path: pathGrow, configs: regionConfigs, skip: 2, times: 1, want: wantOOM,
		act: func(h *harness, _ any) error {
			return h.untilFired(func() error { _, err := h.malloc(2048); return err })
		},
	},
	{
		name: "mprotect growing the break for a zeroed small block (Calloc)",
		op:   sys.OpMprotect, path: pathGrow, configs: regionConfigs, times: 1, want: wantOOM,
		act: func(h *harness, _ any) error {
			return h.untilFired(func() error { _, err := h.calloc(2048); return err })
		},
	},
	{
		name: "mprotect growing the break for a new run of the best-fit heap (it asks again for only the pages the block needs)",
		op:   sys.OpMprotect, path: pathGrow, configs: regionConfigs, times: 1, want: wantOK,
		act: func(h *harness, _ any) error {
			return h.untilFired(func() error { _, err := h.calloc(3000); return err })
		},
	},
	{
		name: "mprotect of the region's side for the best-fit heap's bitmaps (the run's bitmap is a Go slice instead)",
		op:   sys.OpMprotect, path: pathSide, configs: regionConfigs, times: 1, want: wantOK,
		act: func(h *harness, _ any) error {
			// a run of the region's above the heap's, past the 128 MiB the
			// side's first commit covers: the heap's next run is above it
			mid, _, err := h.a.region.Alloc(130<<20/sys.PageSize, 0, arena.KindMid, 130<<20)
			require.NoError(h.t, err)
			defer func() { require.NoError(h.t, h.a.region.Free(mid)) }()
			return h.untilFired(func() error { _, err := h.calloc(3000); return err })
		},
	},
	{
		name: "madvise of the region's side giving back a run's bitmap as the run goes back (its words cleared by hand instead)",
		op:   sys.OpMadvise, path: pathSideRelease, configs: regionConfigs, times: 1, want: wantOK,
		act: func(h *harness, _ any) error {
			return h.untilFired(h.heapRunBack)
		},
	},
	{
		name: "mprotect growing the break for a mid-size run",
		op:   sys.OpMprotect, path: pathGrow, configs: runConfigs, times: 1, want: wantOOM,
		act: func(h *harness, _ any) error {
			return h.untilFired(func() error { _, err := h.malloc(100 << 10); return err })
		},
	},
	{
		name: "mprotect growing the break for an over-aligned run",
		op:   sys.OpMprotect, path: pathGrow, configs: regionConfigs, times: 1, want: wantOOM,
		act: func(h *harness, _ any) error {
			return h.untilFired(func() error { _, err := h.aligned(64<<10, 1000); return err })
		},
	},
	{
		name: "mprotect growing the break for a Realloc that moves a small block",
		op:   sys.OpMprotect, path: pathGrow, configs: regionConfigs, times: 1, want: wantOOM,
		act: func(h *harness, _ any) error {
			return h.untilFired(func() error {
				b := h.mustMalloc(100)
				_, err := h.realloc(b, 2048)
				return err
			})
		},
	},
	{
		name: "mprotect of a Realloc growing a run in place at the top (it moves instead)",
		op:   sys.OpMprotect, path: pathGrowResize, configs: runConfigs, times: 1, want: wantOK,
		prepare: func(h *harness) any {
			b := h.mustMalloc(40 << 10)
			h.a.Trim() // the break now ends at b: growing b must move it
			return b
		},
		act: func(h *harness, s any) error { _, err := h.realloc(s.([]byte), 120<<10); return err },
	},
	{
		name: "mprotect of a Realloc growing a run in place at the top past the threshold (it moves to a mapping instead)",
		op:   sys.OpMprotect, path: pathGrowResize, configs: []string{"low-threshold"}, times: 1, want: wantOK,
		prepare: func(h *harness) any {
			// the break must end at b, so that growing b must move it: a
			// block the harness holds may sit above the first one tried
			for range 8 {
				b := h.midBlock()
				h.a.Trim()
				run := h.a.region.Lookup(addrOf(b))
				if run.Start()+run.Pages()*h.a.page == h.a.region.Counters().Break {
					return b
				}
			}
			h.t.Fatal("no run at the top")
			return nil
		},
		act: func(h *harness, s any) error {
			b, err := h.realloc(s.([]byte), 20000)
			if err == nil {
				assert.False(h.t, h.a.region.Contains(addrOf(b)), "moved to a mapping")
			}
			return err
		},
	},
	{
		name: "every mprotect refused while a Realloc grows a run at the top",
		op:   sys.OpMprotect, path: "arena.(*Region).growLocked<", configs: runConfigs, want: wantOOM,
		prepare: func(h *harness) any {
			b := h.mustMalloc(40 << 10)
			h.a.Trim()
			return b
		},
		act: func(h *harness, s any) error { _, err := h.realloc(s.([]byte), 120<<10); return err },
	},
	{
		name: "madvise of the top trim when a Free leaves the top free",
		op:   sys.OpMadvise, path: pathShrinkFree, configs: regionConfigs, times: 1, want: wantOK,
		prepare: func(h *harness) any { return h.topRuns() },
		act:     func(h *harness, s any) error { return h.freeAll(s.([][]byte)) },
	},
	{
		name: "mprotect(PROT_NONE) of the top trim when a Free leaves the top free",
		op:   sys.OpMprotect, path: pathShrinkFree, configs: regionConfigs, times: 1, want: wantOK,
		prepare: func(h *harness) any { return h.topRuns() },
		act:     func(h *harness, s any) error { return h.freeAll(s.([][]byte)) },
	},
	{
		name: "madvise of Trim moving the break down",
		op:   sys.OpMadvise, path: pathShrinkTrim, configs: regionConfigs, times: 1, want: wantOK,
		prepare: func(h *harness) any {
			h.a.region.SetTrimThreshold(^uintptr(0)) // Free leaves the top to Trim
			require.NoError(h.t, h.freeAll(h.topRuns()))
			return nil
		},
		act: func(h *harness, _ any) error { h.a.Trim(); return nil },
	},
	{
		name: "mprotect(PROT_NONE) of Trim moving the break down",
		op:   sys.OpMprotect, path: pathShrinkTrim, configs: regionConfigs, times: 1, want: wantOK,
		prepare: func(h *harness) any {
			h.a.region.SetTrimThreshold(^uintptr(0))
			require.NoError(h.t, h.freeAll(h.topRuns()))
			return nil
		},
		act: func(h *harness, _ any) error { h.a.Trim(); return nil },
	},
	{
		name: "madvise of Trim releasing a free run below a live block",
		op:   sys.OpMadvise, path: pathTrimRuns, configs: regionConfigs, times: 1, want: wantOK,
		prepare: func(h *harness) any {
			h.a.region.SetTrimThreshold(^uintptr(0))
			b, above := h.midBlock(), h.midBlock()
			if addrOf(above) < addrOf(b) { // placed lowest first: the second may be below
				b = above
			}
			require.NoError(h.t, h.free(b)) // the other stays live above b
			return nil
		},
		act: func(h *harness, _ any) error {
			h.a.Trim()
			assert.NotZero(h.t, h.a.Stats().DirtyBytes, "the run whose madvise was refused stays unreleased")
			return nil
		},
	},
	{
		name: "madvise of Trim releasing the pages inside a free chunk of the best-fit heap",
		op:   sys.OpMadvise, path: "arena.(*Region).Release<fit.(*Heap).releaseChunk", configs: regionConfigs,
		times: 1, want: wantOK,
		prepare: func(h *harness) any {
			bs := h.mediums(5)
			for _, b := range bs[1:4] { // a free chunk of 18 KB between two live blocks
				require.NoError(h.t, h.free(b))
			}
			return nil
		},
		act: func(h *harness, _ any) error { h.a.Trim(); return nil },
	},
	{
		name: "madvise of the trim of the best-fit heap's top (the pages stay resident until a later trim)",
		op:   sys.OpMadvise, path: "arena.(*Region).Release<fit.(*Heap).trimTop", configs: regionConfigs,
		times: 1, want: wantOK,
		prepare: func(h *harness) any {
			bs := h.mediums(80)
			return bs
		},
		act: func(h *harness, s any) error {
			bs := s.([][]byte)
			slices.SortFunc(bs, func(x, y []byte) int { return cmp.Compare(addrOf(y), addrOf(x)) })
			for _, b := range bs { // from the top down: the top chunk grows past the trim threshold
				if err := h.free(b); err != nil {
					return err
				}
			}
			return nil
		},
	},
	{
		name: "madvise of the purge releasing a free run below a live block",
		op:   sys.OpMadvise, path: pathPurgeRuns, configs: []string{"purge"}, times: 1, want: wantOK,
		prepare: func(h *harness) any {
			b, above := h.midBlock(), h.midBlock()
			if addrOf(above) < addrOf(b) { // placed lowest first: the second may be below
				b = above
			}
			return b // the other stays live above b
		},
		act: func(h *harness, b any) error {
			err := h.free(b.([]byte))
			assert.NotZero(h.t, h.a.Stats().DirtyBytes, "the run whose madvise was refused stays unreleased")
			return err
		},
	},
	{
		name: "madvise of the purge moving the break down",
		op:   sys.OpMadvise, path: pathPurgeTop, configs: []string{"purge"}, times: 1, want: wantOK,
		prepare: func(h *harness) any {
			h.a.region.SetTrimThreshold(^uintptr(0)) // Free leaves the top to the purge
			return h.topRuns()
		},
		act: func(h *harness, s any) error { return h.freeAll(s.([][]byte)) },
	},
	{
		name: "mprotect(PROT_NONE) of the purge moving the break down",
		op:   sys.OpMprotect, path: pathPurgeTop, configs: []string{"purge"}, times: 1, want: wantOK,
		prepare: func(h *harness) any {
			h.a.region.SetTrimThreshold(^uintptr(0))
			return h.topRuns()
		},
		act: func(h *harness, s any) error { return h.freeAll(s.([][]byte)) },
	},
	{
		name: "mincore of Stats measuring the region",
		op:   sys.OpMincore, path: pathRegionRes, configs: regionConfigs, times: 1, want: wantOK,
		act: func(h *harness, _ any) error { h.check("while mincore is refused"); return nil },
	},
	{
		name: "mincore of Stats measuring the mappings",
		op:   sys.OpMincore, path: pathMappingsRes, configs: mapConfigs, times: 1, want: wantOK,
		act: func(h *harness, _ any) error { h.check("while mincore is refused"); return nil },
	},
	{
		name: "mmap of a large Malloc",
		op:   sys.OpMmap, path: pathMap, configs: mapConfigs, times: 1, want: wantOOM,
		act: func(h *harness, _ any) error { _, err := h.malloc(bigMapping); return err },
	},
	{
		name: "mmap of a large Calloc",
		op:   sys.OpMmap, path: pathMap, configs: mapConfigs, times: 1, want: wantOOM,
		act: func(h *harness, _ any) error { _, err := h.calloc(300 << 10); return err },
	},
	{
		name: "mmap of a small Malloc under PolicyMmap",
		op:   sys.OpMmap, path: pathMap, configs: []string{"mmap"}, times: 1, want: wantOOM,
		act: func(h *harness, _ any) error { _, err := h.malloc(100); return err },
	},
	{
		name: "mmap of an over-aligned mapping",
		op:   sys.OpMmap, path: pathMap, configs: mapConfigs, times: 1, want: wantOOM,
		act: func(h *harness, _ any) error { _, err := h.aligned(bigMapping, bigMapping); return err },
	},
	{
		name: "mmap of a Realloc moving a small block into a mapping",
		op:   sys.OpMmap, path: pathMap, configs: splitConfigs, times: 1, want: wantOOM,
		prepare: func(h *harness) any { return h.mustMalloc(1000) },
		act:     func(h *harness, s any) error { _, err := h.realloc(s.([]byte), 300<<10); return err },
	},
	{
		name: "munmap of the head of an over-aligned mapping",
		op:   sys.OpMunmap, path: pathMap, configs: mapConfigs, times: 1, want: wantOOM,
		line: func(h *harness) int { return alignedTrimLines(h.t)[0] },
		act:  func(h *harness, _ any) error { return h.alignedUntilFired() },
	},
	{
		name: "munmap of the tail of an over-aligned mapping",
		op:   sys.OpMunmap, path: pathMap, configs: mapConfigs, times: 1, want: wantOOM,
		line: func(h *harness) int { return alignedTrimLines(h.t)[1] },
		act:  func(h *harness, _ any) error { return h.alignedUntilFired() },
	},
	{
		name: "munmap of a large Free (the block stays live)",
		op:   sys.OpMunmap, path: pathUnmap, configs: mapConfigs, times: 1, want: wantFailed,
		prepare: func(h *harness) any { return h.mustMalloc(largeBlock) },
		act:     func(h *harness, s any) error { return h.free(s.([]byte)) },
	},
	{
		name: "munmap of a Realloc moving a mapping into the region (the block stays where it was)",
		op:   sys.OpMunmap, path: pathUnmap, configs: splitConfigs, times: 1, want: wantFailed,
		prepare: func(h *harness) any { return h.mustMalloc(largeBlock) },
		act:     func(h *harness, s any) error { _, err := h.realloc(s.([]byte), 1000); return err },
	},
	{
		name: "mremap of a Realloc growing a mapping",
		op:   sys.OpMremap, path: pathRemap, configs: mapConfigs, times: 1, want: wantOOM,
		prepare: func(h *harness) any { return h.mustMalloc(300 << 10) },
		act:     func(h *harness, s any) error { _, err := h.realloc(s.([]byte), bigMapping); return err },
	},
	{
		name: "mremap of a Realloc shrinking a mapping",
		op:   sys.OpMremap, path: pathRemap, configs: mapConfigs, times: 1, want: wantOOM,
		prepare: func(h *harness) any { return h.mustMalloc(largeBlock) },
		act:     func(h *harness, s any) error { _, err := h.realloc(s.([]byte), 300<<10); return err },
	},
	{
		name: "munmap of the region in Close",
		op:   sys.OpMunmap, path: pathRegionClose, configs: allConfigs, times: 1, want: wantFailed, closes: true,
		act: func(h *harness, _ any) error { return h.a.Close() },
	},
	{
		name: "munmap of a live mapping in Close",
		op:   sys.OpMunmap, path: pathMappingClose, configs: mapConfigs, times: 1, want: wantFailed, closes: true,
		prepare: func(h *harness) any {
			// One mapping left, so the test knows which one the kernel kept.
			kept := false
			for _, b := range h.liveBlocks() {
				if h.a.large.Lookup(addrOf(b)) != nil {
					if kept {
						require.NoError(h.t, h.free(b))
					}
					kept = true
				}
			}
			return nil
		},
		act: func(h *harness, _ any) error { return h.a.Close() },
	},
}

// alignedTrimLines finds the lines of the two munmaps that trim an
// over-aligned mapping (head, then tail) by watching an allocation that
// makes both.
var alignedTrimLines = func() func(t *testing.T) [2]int {
	var mu sync.Mutex
	var lines [2]int
	return func(t *testing.T) [2]int {
		mu.Lock()
		defer mu.Unlock()
		if lines[0] != 0 {
			return lines
		}
		a, err := New(Config{Policy: PolicyMmap})
		require.NoError(t, err)
		defer a.Close()
		var seen []int
		a.os.Fail = func(op sys.Op, _ uint64) error {
			if path, line := callPath(); op == sys.OpMunmap && path == pathMap {
				seen = append(seen, line)
			}
			return nil
		}
		for i := range 64 {
			seen = seen[:0]
			b, err := a.AlignedAlloc(1<<20, 1<<20+i*int(sys.PageSize))
			require.NoError(t, err)
			require.NoError(t, a.Free(b))
			if len(seen) == 2 {
				lines = [2]int{seen[0], seen[1]}
				return lines
			}
		}
		t.Fatal("no over-aligned mapping needed both a head and a tail trimmed")
		return lines
	}
}()

func TestInjectedFailures(t *testing.T) {
	for _, tc := range injectCases {
		for _, name := range tc.configs {
			t.Run(tc.name+"/"+name, func(t *testing.T) {
				h := newHarness(t, name, configOf(name))
				defer h.a.Close()
				h.background()
				var state any
				if tc.prepare != nil {
					state = tc.prepare(h)
				}
				h.check("before the failure")
				line := 0
				if tc.line != nil {
					line = tc.line(h)
				}
				var mappings []largealloc.Mapping
				h.a.large.Each(func(m largealloc.Mapping) { mappings = append(mappings, m) })

				h.in.arm(tc.op, tc.path, line, tc.skip, tc.times)
				err := tc.act(h, state)
				h.in.disarm()

				if !tc.real {
					require.Positive(t, h.in.fired(), "the %v on %s was never made (error: %v)", tc.op, tc.path, err)
				}
				switch tc.want {
				case wantOOM:
					require.Error(t, err)
					assert.ErrorIs(t, err, ErrOutOfMemory)
					if !tc.real {
						assert.ErrorIs(t, err, errInjected, "the kernel's error is wrapped")
					}
				case wantFailed:
					require.Error(t, err)
					assert.ErrorIs(t, err, errInjected, "the kernel's error is wrapped")
				case wantOK:
					require.NoError(t, err)
				}
				if tc.closes {
					closedAfterFailure(t, h, mappings)
					return
				}
				h.check("after the failure")
				h.usable()
			})
		}
	}
}

// closedAfterFailure checks a Close whose munmap was refused: the caller
// got the error, the allocator refuses further calls, and what the kernel
// kept is still mapped. It is unmapped here, so the test leaks nothing.
// (Only ranges known to be still mapped are touched: an address this
// allocator did unmap may already belong to the Go runtime.)
func closedAfterFailure(t *testing.T, h *harness, mappings []largealloc.Mapping) {
	_, err := h.a.Malloc(10)
	assert.ErrorIs(t, err, ErrClosed)
	assert.NoError(t, h.a.Close(), "a second Close reports nothing")
	mapped := func(addr, n uintptr) bool {
		vec := make([]byte, (n+sys.PageSize-1)/sys.PageSize)
		_, _, e := unix.Syscall(unix.SYS_MINCORE, addr, n, uintptr(unsafe.Pointer(&vec[0])))
		return e == 0
	}
	if h.in.path == pathMappingClose {
		require.Len(t, mappings, 1)
		m := mappings[0]
		require.True(t, mapped(m.Addr, m.Len), "the mapping whose munmap was refused is still there")
		_, _, e := unix.Syscall(unix.SYS_MUNMAP, m.Addr, m.Len, 0)
		require.Zero(t, e)
		return
	}
	r := h.a.region
	reserve := uintptr(orDefault(configOf(h.cfg).Reserve, DefaultReserve))
	require.True(t, mapped(r.Base(), sys.PageSize), "the region whose munmap was refused is still there")
	require.NoError(t, unix.MunmapPtr(r.Ptr(r.Base()), reserve))
}

// TestInjectionTableCoversEveryCall runs a workload that makes every kind
// of request under every configuration, records every system call and
// its path, and checks that each has a row in injectCases for that
// configuration.
func TestInjectionTableCoversEveryCall(t *testing.T) {
	covered := map[string]bool{} // "config op path"
	for _, tc := range injectCases {
		for _, c := range tc.configs {
			covered[c+" "+tc.op.String()+" "+tc.path] = true
		}
	}
	for _, c := range injectConfigs {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t, c.name, c.cfg)
			h.in.paths = map[string]bool{"mmap " + pathReserve: true} // New made it before the hook was set
			h.background()
			var bs [][]byte
			for _, n := range []int{16, 1000, 9000, 40 << 10, 100 << 10, 200 << 10, 1 << 20, 8 << 20} {
				bs = append(bs, h.mustMalloc(n))
				b, err := h.aligned(1<<20, n)
				require.NoError(t, err)
				bs = append(bs, b)
			}
			for i, b := range bs {
				nb, err := h.realloc(b, []int{24, 3000, 60 << 10, 120 << 10, 600 << 10, 4 << 20}[i%6])
				require.NoError(t, err)
				bs[i] = nb
			}
			h.check("workload")
			for i := 0; i < len(bs); i += 2 {
				require.NoError(t, h.free(bs[i]))
			}
			h.a.Trim()
			for i := 1; i < len(bs); i += 2 {
				require.NoError(t, h.free(bs[i]))
			}
			if c.name != "mmap" {
				require.NoError(t, h.heapRunBack())
				h.a.region.SetTrimThreshold(^uintptr(0))
				for _, b := range h.topRuns() {
					require.NoError(t, h.free(b))
				}
				h.a.Trim()
			}
			require.NoError(t, h.a.Close())

			var paths []string
			for p := range h.in.paths {
				paths = append(paths, p)
			}
			sort.Strings(paths)
			t.Logf("system calls made under %s:\n%s", c.name, strings.Join(paths, "\n"))
			for _, p := range paths {
				if c.name == "purge" && !strings.HasSuffix(p, pathPurgeRuns) && !strings.HasSuffix(p, pathPurgeTop) {
					continue // the other paths are the other configurations' rows
				}
				assert.True(t, covered[c.name+" "+p], "no injected-failure row for %q under %s", p, c.name)
			}
		})
	}
}
