package alloctest_test

import (
	"errors"
	"testing"
	"unsafe"

	"github.com/brkmap/alloc/internal/alloctest"
	"github.com/brkmap/alloc/stats"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var (
	errInvalid = errors.New("invalid free")
	errDouble  = errors.New("double free")
)

// fake is a bump allocator over one Go slice, correct unless told to
// break in one way, so that the model is seen to catch each way.
type fake struct {
	mem      []byte
	top      int
	live     map[uintptr]int // start -> requested size
	freed    map[uintptr]bool
	overlap  bool // hand out the last block again
	lax      bool // accept a free of any pointer
	miscount bool // Stats counts one byte too many
	last     int
}

func newFake() *fake {
	return &fake{mem: make([]byte, 64<<20), live: map[uintptr]int{}, freed: map[uintptr]bool{}}
}

func (f *fake) Malloc(n int) ([]byte, error) {
	start := (f.top + 15) &^ 15
	if f.overlap && len(f.live) > 0 {
		start = f.last
	}
	f.top = max(f.top, start+max(n, 1))
	f.last = start
	b := f.mem[start : start+n : start+n]
	p := uintptr(unsafe.Pointer(&f.mem[start]))
	f.live[p] = n
	delete(f.freed, p)
	return b, nil
}

func (f *fake) Calloc(n int) ([]byte, error) {
	b, err := f.Malloc(n)
	clear(b)
	return b, err
}

func (f *fake) Realloc(b []byte, n int) ([]byte, error) {
	nb, _ := f.Malloc(n)
	copy(nb, b)
	return nb, f.Free(b)
}

func (f *fake) AlignedAlloc(align, n int) ([]byte, error) {
	f.top = (f.top + align - 1) &^ (align - 1)
	return f.Malloc(n)
}

func (f *fake) Free(b []byte) error {
	p := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	if _, ok := f.live[p]; ok {
		delete(f.live, p)
		f.freed[p] = true
		return nil
	}
	if f.lax {
		return nil
	}
	if f.freed[p] {
		return errDouble
	}
	return errInvalid
}

func (f *fake) UsableSize(b []byte) int { return len(b) }
func (f *fake) Trim() int               { return 0 }

func (f *fake) Stats() stats.Snapshot {
	var s stats.Snapshot
	for _, n := range f.live {
		s.LiveBlocks++
		s.LiveBytes += uint64(n)
	}
	if f.miscount {
		s.LiveBytes++
	}
	return s
}

// run applies a stream that exercises every op and returns the first
// contract the model saw broken.
func run(f *fake) error {
	m := alloctest.NewModel(f, errInvalid, errDouble)
	ops := []alloctest.Op{
		{Kind: alloctest.OpMalloc, Size: 100},
		{Kind: alloctest.OpCalloc, Size: 3000},
		{Kind: alloctest.OpAligned, Align: 4096, Size: 10},
		{Kind: alloctest.OpRealloc, Block: 0, Size: 200},
		{Kind: alloctest.OpFreeInside, Block: 1, Offset: 7},
		{Kind: alloctest.OpFree, Block: 2},
		{Kind: alloctest.OpFreeStale, Block: 0},
		{Kind: alloctest.OpTrim},
	}
	for _, op := range ops {
		if err := m.Apply(op); err != nil {
			return err
		}
		if err := m.Check(); err != nil {
			return err
		}
	}
	return m.FreeAll()
}

// The model passes a correct allocator and catches each kind of bug.
func TestModelCatches(t *testing.T) {
	require.NoError(t, run(newFake()), "a correct allocator passes")

	f := newFake()
	f.overlap = true
	assert.ErrorContains(t, run(f), "damaged", "a block handed out twice")

	f = newFake()
	f.lax = true
	assert.ErrorContains(t, run(f), "want invalid free", "a bad free accepted")

	f = newFake()
	f.miscount = true
	assert.ErrorContains(t, run(f), "Stats", "counters that disagree")
}

func TestPattern(t *testing.T) {
	a, b := make([]byte, 600), make([]byte, 600)
	alloctest.Fill(a, 1)
	alloctest.Fill(b, 2)
	assert.Equal(t, -1, alloctest.Intact(a, 1))
	assert.NotEqual(t, a, b, "seeds give different patterns")
	a[300] ^= 1
	assert.Equal(t, 300, alloctest.Intact(a, 1))
	assert.Equal(t, 0, alloctest.Intact(b, 1), "another block's pattern is not this one's")
}

// The pattern catches a single changed byte anywhere in a block, in the
// words and in the tail, and Pattern is the byte Fill wrote.
func TestPatternEveryByte(t *testing.T) {
	for _, n := range []int{0, 1, 7, 8, 9, 100, 4096} {
		b := make([]byte, n)
		alloctest.Fill(b, 42)
		require.Equal(t, -1, alloctest.Intact(b, 42), n)
		for i := range b {
			require.Equal(t, alloctest.Pattern(42, i), b[i], "size %d, byte %d", n, i)
			b[i] ^= 0x10
			assert.Equal(t, i, alloctest.Intact(b, 42), "size %d, byte %d", n, i)
			b[i] ^= 0x10
		}
		if n > 0 {
			assert.NotEqual(t, -1, alloctest.Intact(b, 43), "another block's seed")
		}
	}
}

func TestSize(t *testing.T) {
	for band := range 10 {
		lo, hi := alloctest.Size(band, 0), alloctest.Size(band, 1<<16-1)
		assert.LessOrEqual(t, lo, hi)
		assert.LessOrEqual(t, hi, 2<<20)
	}
	assert.Equal(t, 0, alloctest.Size(0, 0))
	assert.InDelta(t, 2<<20, alloctest.Size(9, 1<<16-1), 32, "the top of the largest band")
}

func TestVariants(t *testing.T) {
	names := map[string]bool{}
	for _, v := range alloctest.Variants {
		assert.False(t, names[v.Name], "duplicate %s", v.Name)
		names[v.Name] = true
		assert.Equal(t, v, alloctest.VariantNamed(v.Name))
	}
	assert.Panics(t, func() { alloctest.VariantNamed("nope") })
}

// Two models over one allocator (the soak's shape): a handed-over block
// moves from one to the other, CheckAll holds the allocator against both,
// and catches a block damaged in transit and counters off by one byte.
func TestModelsShareAnAllocator(t *testing.T) {
	f := newFake()
	m1, m2 := alloctest.NewModel(f, errInvalid, errDouble), alloctest.NewModel(f, errInvalid, errDouble)
	m2.SeedFrom(1 << 24)
	for _, m := range []*alloctest.Model{m1, m2} {
		require.NoError(t, m.Apply(alloctest.Op{Kind: alloctest.OpMalloc, Size: 100}))
		require.NoError(t, m.Apply(alloctest.Op{Kind: alloctest.OpMalloc, Size: 50}))
	}
	require.NoError(t, alloctest.CheckAll(m1, m2))
	assert.Error(t, m1.Check(), "one model alone does not hold the other's blocks")
	assert.NotEqual(t, m1.Blocks()[0].Seed, m2.Blocks()[0].Seed, "seeds start apart")

	l, err := m1.Hand(0)
	require.NoError(t, err)
	assert.False(t, l.Handed)
	m2.Adopt(l)
	assert.True(t, l.Handed)
	assert.Equal(t, 1, m1.Live())
	assert.Equal(t, 3, m2.Live())
	assert.Equal(t, 150+100, m2.LiveBytes())
	require.NoError(t, alloctest.CheckAll(m1, m2))

	l.B[3] ^= 1
	assert.ErrorContains(t, alloctest.CheckAll(m1, m2), "damaged", "a block damaged in transit")
	l.B[3] ^= 1
	f.miscount = true
	assert.ErrorContains(t, alloctest.CheckAll(m1, m2), "counters disagree")
	f.miscount = false

	// A Realloc makes the block the resizer's own again.
	i := m2.Find(l.B)
	require.GreaterOrEqual(t, i, 0)
	require.NoError(t, m2.Apply(alloctest.Op{Kind: alloctest.OpRealloc, Block: i, Size: 300}))
	assert.False(t, l.Handed)

	for len(m1.Blocks()) > 0 {
		require.NoError(t, m1.Apply(alloctest.Op{Kind: alloctest.OpFree}))
	}
	assert.Error(t, alloctest.Empty(f), "m2's blocks are still live")
	require.NoError(t, m2.FreeAll())
}
