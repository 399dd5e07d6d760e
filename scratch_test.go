package alloc_test

import (
	"errors"
	"math/rand/v2"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"testing"
	"unsafe"

	"github.com/brkmap/alloc"
	"github.com/brkmap/alloc/internal/alloctest"
	"github.com/brkmap/alloc/stats"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// record is the struct the typed helpers are tested with: 24 bytes,
// 8-byte aligned.
type record struct {
	ID    uint64
	Score float64
	Flags [4]uint16
}

// scratchTarget returns a model target of a new Scratch of a; with held,
// the model checks Held against the allocator's ScratchBytes (only when
// this Scratch is the allocator's one).
func scratchTarget(a *alloc.Allocator, held bool, opts ...alloc.ScratchOption) alloctest.ScratchTarget {
	tg := alloctest.ScratchTarget{
		S:        a.NewScratch(opts...),
		Align:    int(unsafe.Alignof(record{})),
		ErrFreed: alloc.ErrScratchFreed,
		Renew:    func() alloctest.Scratch { return a.NewScratch(opts...) },
	}
	if held {
		tg.Held = func() int { return int(a.Counters().ScratchBytes) }
	}
	tg.New = func(s alloctest.Scratch) ([]byte, error) {
		p, err := alloc.ScratchNew[record](s.(*alloc.Scratch))
		if err != nil {
			return nil, err
		}
		return unsafe.Slice((*byte)(unsafe.Pointer(p)), unsafe.Sizeof(*p)), nil
	}
	tg.Slice = func(s alloctest.Scratch, n, c int) ([]byte, error) {
		v, err := alloc.ScratchSlice[record](s.(*alloc.Scratch), n, c)
		if err != nil {
			return nil, err
		}
		if len(v) != n || cap(v) != c {
			return nil, errors.New("wrong length or capacity from ScratchSlice")
		}
		return unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(v))), uintptr(c)*unsafe.Sizeof(record{})), nil
	}
	return tg
}

// randomScratchOp picks an op: mostly small objects, now and then a Reset,
// rarely a Free.
func randomScratchOp(rng *rand.Rand) alloctest.ScratchOp {
	size := alloctest.ScratchSize(rng.IntN(8), uint16(rng.Uint32()))
	switch k := rng.IntN(100); {
	case k < 40:
		return alloctest.ScratchOp{Kind: alloctest.ScratchAlloc, Size: size}
	case k < 50:
		return alloctest.ScratchOp{Kind: alloctest.ScratchAligned, Align: 1 << rng.IntN(14), Size: size}
	case k < 80:
		return alloctest.ScratchOp{Kind: alloctest.ScratchNew}
	case k < 96:
		return alloctest.ScratchOp{Kind: alloctest.ScratchSlice, Size: rng.IntN(300), Cap: rng.IntN(50)}
	case k < 99:
		return alloctest.ScratchOp{Kind: alloctest.ScratchReset}
	}
	return alloctest.ScratchOp{Kind: alloctest.ScratchFree}
}

// TestScratchModel holds a Scratch to the model under every variant: every
// object zeroed, aligned, in no other, its content kept until Reset or
// Free; Held equal to the allocator's ScratchBytes; the breakdown of
// Stats exact throughout; nothing held once freed.
func TestScratchModel(t *testing.T) {
	ops := 3000
	if testing.Short() || raceBuild {
		ops = 600
	}
	for _, v := range alloctest.Variants {
		t.Run(v.Name, func(t *testing.T) {
			a := newAlloc(t, alloc.ConfigOf(v))
			// Debug's quarantine holds freed runs: Held is the live Scratch's only
			tg := scratchTarget(a, !v.Debug, alloc.ScratchChunk(64<<10))
			m := alloctest.NewScratchModel(tg)
			rng := rand.New(rand.NewPCG(7, uint64(len(v.Name))))
			for i := range ops {
				op := randomScratchOp(rng)
				require.NoError(t, m.Apply(op), "op %d", i)
				if i%100 == 0 {
					require.NoError(t, m.CheckAll(), "op %d", i)
					requireBreakdown(t, a.Stats(), v.Name)
				}
			}
			require.NoError(t, m.Apply(alloctest.ScratchOp{Kind: alloctest.ScratchFree}))
			if v.Debug {
				a.Trim() // empties the quarantine
			}
			s := a.Stats()
			requireBreakdown(t, s, "freed")
			assert.Zero(t, s.ScratchBytes, "a freed Scratch holds nothing")
			assert.Zero(t, s.ScratchRuns)
		})
	}
}

// TestScratchAlignedOddReserve: AlignedAlloc's alignment beyond a page
// holds wherever the kernel put the region (a reservation of an odd
// number of pages is placed on a page only): such a request takes a run
// of its own, aligned in the address space, not an offset of a chunk
// aligned from the region's start.
func TestScratchAlignedOddReserve(t *testing.T) {
	for _, cfg := range []alloc.Config{{Reserve: 1<<30 + 4096}, {Reserve: 1<<30 + 4096, Debug: true}} {
		a := newAlloc(t, cfg)
		s := a.NewScratch()
		for i := range 40 {
			_, err := s.Alloc(24 + i) // the chunk's offset moves on
			require.NoError(t, err)
			for _, align := range []int{8192, 1 << 16} {
				b, err := s.AlignedAlloc(align, 8+i)
				require.NoError(t, err)
				require.Zero(t, uintptr(unsafe.Pointer(&b[0]))%uintptr(align), "AlignedAlloc(%d, %d)", align, 8+i)
			}
		}
		require.NoError(t, s.Free())
	}
}

// TestScratchRefusesPerObjectFree: an object of a Scratch is no block of
// the Allocator's: Free, Realloc and UsableSize refuse it, changing nothing.
func TestScratchRefusesPerObjectFree(t *testing.T) {
	for _, cfg := range []alloc.Config{{}, {Debug: true}, {Policy: alloc.PolicyMmap}} {
		a := newAlloc(t, cfg)
		s := a.NewScratch()
		b, err := s.Alloc(100)
		require.NoError(t, err)
		alloctest.Fill(b, 9)
		big, err := s.Alloc(2 << 20) // a run of its own
		require.NoError(t, err)
		for _, x := range [][]byte{b, big, b[16:]} {
			assert.ErrorIs(t, a.Free(x), alloc.ErrInvalidFree)
			_, err = a.Realloc(x, 10)
			assert.ErrorIs(t, err, alloc.ErrInvalidFree)
			assert.Zero(t, a.UsableSize(x))
		}
		assert.Equal(t, -1, alloctest.Intact(b, 9), "a refused free changes nothing")
		require.NoError(t, s.Free())
	}
}

func TestScratchPointerTypes(t *testing.T) {
	a := newAlloc(t, alloc.Config{})
	s := a.NewScratch()
	_, err := alloc.ScratchNew[*int](s)
	assert.ErrorIs(t, err, alloc.ErrPointerType)
	_, err = alloc.ScratchNew[struct {
		N int
		S string
	}](s)
	assert.ErrorIs(t, err, alloc.ErrPointerType)
	_, err = alloc.ScratchSlice[[]byte](s, 1, 1)
	assert.ErrorIs(t, err, alloc.ErrPointerType)
	// a pointer type after a good one, and the good one again
	p, err := alloc.ScratchNew[record](s)
	require.NoError(t, err)
	_, err = alloc.ScratchNew[map[int]int](s)
	assert.ErrorIs(t, err, alloc.ErrPointerType)
	q, err := alloc.ScratchNew[record](s)
	require.NoError(t, err)
	assert.Greater(t, uintptr(unsafe.Pointer(q)), uintptr(unsafe.Pointer(p)))
	// sizes
	_, err = alloc.ScratchSlice[record](s, 2, 1)
	assert.ErrorIs(t, err, alloc.ErrInvalidSize)
	_, err = alloc.ScratchSlice[record](s, -1, 1)
	assert.ErrorIs(t, err, alloc.ErrInvalidSize)
	_, err = alloc.ScratchSlice[record](s, 0, int(^uint(0)>>1))
	assert.ErrorIs(t, err, alloc.ErrOutOfMemory)
	_, err = s.Alloc(-1)
	assert.ErrorIs(t, err, alloc.ErrInvalidSize)
	_, err = s.AlignedAlloc(3, 8)
	assert.ErrorIs(t, err, alloc.ErrInvalidSize)
	e, err := alloc.ScratchSlice[record](s, 0, 0)
	require.NoError(t, err)
	assert.NotNil(t, e)
	z, err := alloc.ScratchNew[struct{}](s)
	require.NoError(t, err)
	assert.NotNil(t, z)
	require.NoError(t, s.Free())
}

// TestScratchLifecycle: use after Free, a second Free and a zero Scratch
// are errors; after the Allocator's Close every call is ErrClosed.
func TestScratchLifecycle(t *testing.T) {
	a, err := alloc.New(alloc.Config{})
	require.NoError(t, err)
	s := a.NewScratch()
	_, err = alloc.ScratchNew[record](s)
	require.NoError(t, err)
	require.NoError(t, s.Free())
	_, err = alloc.ScratchNew[record](s)
	assert.ErrorIs(t, err, alloc.ErrScratchFreed)
	_, err = s.Alloc(0)
	assert.ErrorIs(t, err, alloc.ErrScratchFreed)
	assert.ErrorIs(t, s.Reset(), alloc.ErrScratchFreed)
	assert.ErrorIs(t, s.Free(), alloc.ErrScratchFreed)

	var zero alloc.Scratch
	_, err = zero.Alloc(8)
	assert.ErrorIs(t, err, alloc.ErrNotInitialized)
	assert.ErrorIs(t, zero.Reset(), alloc.ErrNotInitialized)
	assert.ErrorIs(t, zero.Free(), alloc.ErrNotInitialized)

	open := a.NewScratch() // holding a chunk when the Allocator closes
	_, err = open.Alloc(100)
	require.NoError(t, err)
	require.NoError(t, a.Close())
	_, err = open.Alloc(100) // the chunk has room: the fast path must refuse too
	assert.ErrorIs(t, err, alloc.ErrClosed)
	_, err = alloc.ScratchNew[record](open)
	assert.ErrorIs(t, err, alloc.ErrClosed)
	assert.ErrorIs(t, open.Reset(), alloc.ErrClosed)
	assert.ErrorIs(t, open.Free(), alloc.ErrClosed)
	assert.ErrorIs(t, open.Free(), alloc.ErrScratchFreed)
	late := a.NewScratch()
	_, err = late.Alloc(1)
	assert.ErrorIs(t, err, alloc.ErrClosed)
}

// TestScratchResetKeepsPages: Reset keeps the chunks the ended request
// used and releases the rest and every big run; a request like the last
// takes nothing new from the region; what it is handed is zero again.
func TestScratchResetKeepsPages(t *testing.T) {
	a := newAlloc(t, alloc.Config{PurgeDelay: alloc.PurgeNever})
	s := a.NewScratch(alloc.ScratchChunk(64 << 10))
	request := func(objects int) {
		for i := range objects {
			p, err := alloc.ScratchNew[[64]byte](s)
			require.NoError(t, err)
			require.Equal(t, [64]byte{}, *p, "object %d is zero", i)
			for j := range p {
				p[j] = 0xAB
			}
		}
	}
	request(10000) // 640 KB: 16, 32, then 64 KiB chunks
	big, err := s.Alloc(1 << 20)
	require.NoError(t, err)
	big[0] = 1
	heldBig := s.Held()
	require.Equal(t, int(a.Counters().ScratchBytes), heldBig)
	require.NoError(t, s.Reset())
	held := s.Held()
	assert.Equal(t, heldBig-1<<20, held, "the big run is released, the chunks kept")
	assert.Equal(t, held, int(a.Counters().ScratchBytes))
	assert.Zero(t, s.Used())

	runs, mprot := a.Counters().ScratchRuns, a.Counters().Mprotect
	request(10000)
	assert.Equal(t, runs, a.Counters().ScratchRuns, "the same request takes no new run")
	assert.Equal(t, mprot, a.Counters().Mprotect)
	assert.Equal(t, held, s.Held())

	require.NoError(t, s.Reset())
	request(100) // a small request: only the first chunk
	require.NoError(t, s.Reset())
	assert.Equal(t, 16<<10, s.Held(), "chunks the last request did not reach are released")
	require.NoError(t, s.Reset()) // nothing asked since: keeps what it kept
	assert.Equal(t, 16<<10, s.Held())
	request(300)
	require.NoError(t, s.Free())
	assert.Zero(t, a.Counters().ScratchBytes)
}

// TestScratchFreeIsCheap: Free gives a 64 MiB Scratch back in one call to
// the region, with no system call: the purge releases the pages later.
func TestScratchFreeIsCheap(t *testing.T) {
	a := newAlloc(t, alloc.Config{})
	s := a.NewScratch()
	n := 1 << 20
	if raceBuild {
		n = 1 << 16
	}
	for range n {
		p, err := alloc.ScratchNew[[64]byte](s)
		require.NoError(t, err)
		p[0] = 1
	}
	before := a.Counters()
	require.NoError(t, s.Free())
	after := a.Counters()
	assert.Equal(t, before.Syscalls(), after.Syscalls(), "no system call in Free")
	assert.Zero(t, after.ScratchBytes)
	assert.GreaterOrEqual(t, after.DirtyBytes, uint64(n*64), "the pages wait for the purge")
}

// TestScratchRegionMap: a Scratch's pages show as scratch in the map.
func TestScratchRegionMap(t *testing.T) {
	a := newAlloc(t, alloc.Config{})
	s := a.NewScratch()
	_, err := s.Alloc(100 << 10)
	require.NoError(t, err)
	m := a.RegionMap()
	assert.Equal(t, uint64(s.Held()), m.Bytes(stats.PageScratch))
	require.NoError(t, s.Free())
	assert.Zero(t, a.RegionMap().Bytes(stats.PageScratch))
}

// TestScratchDebugFaults: in Debug, the pages of a freed or reset Scratch
// fault on use (PROT_NONE, quarantined), and Trim gives them back.
func TestScratchDebugFaults(t *testing.T) {
	a := newAlloc(t, alloc.Config{Debug: true})
	faults := func(p *uint64) (fault bool) {
		defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
		defer func() {
			if r := recover(); r != nil {
				err, ok := r.(runtime.Error)
				require.True(t, ok, "a runtime error, not %v", r)
				_, ok = err.(interface{ Addr() uintptr })
				require.True(t, ok, "a memory fault: %v", err)
				fault = true
			}
		}()
		*p = 1
		return false
	}
	for _, end := range []string{"Free", "Reset"} {
		s := a.NewScratch()
		p, err := alloc.ScratchNew[uint64](s)
		require.NoError(t, err)
		big, err := s.Alloc(2 << 20)
		require.NoError(t, err)
		*p = 7
		assert.False(t, faults(p), "live memory is writable")
		if end == "Free" {
			require.NoError(t, s.Free())
		} else {
			require.NoError(t, s.Reset())
			q, err := alloc.ScratchNew[uint64](s)
			require.NoError(t, err)
			assert.NotEqual(t, uintptr(unsafe.Pointer(p)), uintptr(unsafe.Pointer(q)), "Debug's Reset keeps nothing")
			assert.False(t, faults(q))
		}
		assert.True(t, faults(p), "%s: a kept pointer faults", end)
		assert.True(t, faults((*uint64)(unsafe.Pointer(&big[1<<20]))), "%s: so does a big run", end)
		assert.Positive(t, a.Counters().ScratchBytes, "quarantined runs are still the Scratches' pages")
		if end == "Reset" {
			require.NoError(t, s.Free())
		}
	}
	a.Trim()
	s := a.Counters()
	assert.Zero(t, s.ScratchBytes, "Trim empties the quarantine")
	requireBreakdown(t, a.Stats(), "trimmed")
}

// TestScratchRace: goroutines each own a Scratch (model-checked) while
// others Malloc and Free on the same Allocator. Run with -race: a Scratch
// used by two goroutines at once would be reported.
func TestScratchRace(t *testing.T) {
	a := newAlloc(t, alloc.Config{})
	ops := 2000
	if testing.Short() || raceBuild {
		ops = 500
	}
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for w := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 11))
			if w%2 == 0 { // a Malloc/Free user
				var live [][]byte
				for range ops {
					if len(live) > 50 || len(live) > 0 && rng.IntN(2) == 0 {
						i := rng.IntN(len(live))
						if err := a.Free(live[i]); err != nil {
							errs <- err
							return
						}
						live[i] = live[len(live)-1]
						live = live[:len(live)-1]
						continue
					}
					b, err := a.Malloc(1 + rng.IntN(5000))
					if err != nil {
						errs <- err
						return
					}
					live = append(live, b)
				}
				for _, b := range live {
					_ = a.Free(b)
				}
				return
			}
			m := alloctest.NewScratchModel(scratchTarget(a, false, alloc.ScratchChunk(32<<10)))
			m.SeedFrom(uint32(w) << 24)
			for i := range ops {
				if err := m.Apply(randomScratchOp(rng)); err != nil {
					errs <- err
					return
				}
				if i%50 == 0 {
					if err := m.CheckAll(); err != nil {
						errs <- err
						return
					}
				}
			}
			if err := m.Apply(alloctest.ScratchOp{Kind: alloctest.ScratchFree}); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	requireBreakdown(t, a.Stats(), "after the race")
}

// TestScratchCloseRace: goroutines allocate from their Scratches, reset and
// free them while the Allocator closes. Every call succeeds or returns
// ErrClosed (a Free after its Scratch's end: ErrScratchFreed), none
// crashes, and every call after Close returned is ErrClosed. Nothing can
// leak: a Scratch's runs are pages of the region, which Close unmaps
// whole, and Close forgets every Scratch (scratchSet).
func TestScratchCloseRace(t *testing.T) {
	rounds := 20
	if raceBuild || testing.Short() {
		rounds = 5
	}
	for round := range rounds {
		a, err := alloc.New(alloc.Config{Debug: round%4 == 3})
		require.NoError(t, err)
		var (
			wg     sync.WaitGroup
			closed atomic.Bool
			bad    atomic.Value
		)
		check := func(op string, after bool, err error) {
			switch {
			case after && !errors.Is(err, alloc.ErrClosed) && !errors.Is(err, alloc.ErrScratchFreed):
				bad.Store(op + " after Close: " + errString(err))
			case err != nil && !errors.Is(err, alloc.ErrClosed) && !errors.Is(err, alloc.ErrScratchFreed):
				bad.Store(op + ": " + err.Error())
			}
		}
		for w := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				rng := rand.New(rand.NewPCG(uint64(round), uint64(w)))
				s := a.NewScratch(alloc.ScratchChunk(16 << 10))
				for i := 0; i < 20000; i++ {
					after := closed.Load()
					switch k := rng.IntN(100); {
					case k < 70:
						_, err := alloc.ScratchNew[record](s)
						check("ScratchNew", after, err)
					case k < 85:
						_, err := s.Alloc(rng.IntN(300 << 10))
						check("Alloc", after, err)
					case k < 95:
						check("Reset", after, s.Reset())
					default:
						check("Free", after, s.Free())
						s = a.NewScratch(alloc.ScratchChunk(16 << 10))
					}
					if after && i > 0 {
						return
					}
				}
			}()
		}
		runtime.Gosched()
		require.NoError(t, a.Close())
		closed.Store(true)
		wg.Wait()
		if v := bad.Load(); v != nil {
			t.Fatalf("round %d: %v", round, v)
		}
	}
}

// FuzzScratch decodes its input into a stream of Scratch operations —
// Alloc, AlignedAlloc (alignments up to 64 KiB: past a page, a run of its
// own), ScratchNew, ScratchSlice, Reset, Free — and runs it on a Scratch of
// a fresh allocator under the variant and chunk size the first two bytes
// pick, held to the model: every object zeroed, aligned, in no other, its
// content kept until Reset or Free; Held equal to the allocator's
// ScratchBytes (outside Debug); the breakdown of Stats exact at the end.
//
//	go test -run '^$' -fuzz '^FuzzScratch$' -fuzztime 15s .
func FuzzScratch(f *testing.F) {
	for i := range alloctest.Variants {
		c := byte(i)
		f.Add([]byte{c, 0})
		f.Add([]byte{c, 1, 0, 1, 0, 10, 2, 3, 4, 5, 3, 7, 0, 4, 0, 200, 7, 255, 255, 4, 5, 2, 2, 3})
		f.Add([]byte{c, 2, 1, 16, 7, 255, 255, 1, 12, 6, 0, 0, 2, 4, 1, 1, 4, 2, 4, 5, 0, 1, 0, 1})
	}
	r := rand.New(rand.NewPCG(5, 6))
	for i := range 10 {
		b := make([]byte, 2+r.IntN(400))
		for j := range b {
			b[j] = byte(r.Uint32())
		}
		b[0] = byte(i % len(alloctest.Variants))
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) < 2 {
			return
		}
		v := alloctest.Variants[int(data[0])%len(alloctest.Variants)]
		chunk := 16 << 10 << (data[1] % 8) // 16 KiB to 2 MiB
		a, err := alloc.New(alloc.ConfigOf(v))
		if err != nil {
			t.Fatal(err)
		}
		defer a.Close()
		m := alloctest.NewScratchModel(scratchTarget(a, !v.Debug, alloc.ScratchChunk(chunk)))
		d := &decoder{data: data[2:]}
		for op := 0; len(d.data) > 0 && op < maxOps; op++ {
			o := d.scratchOp()
			if err := m.Apply(o); err != nil {
				t.Fatalf("%s, chunk %d, op %d: %v", v.Name, chunk, op, err)
			}
			if op%checkEvery == 0 {
				if err := m.CheckAll(); err != nil {
					t.Fatalf("%s, chunk %d, op %d: %v", v.Name, chunk, op, err)
				}
			}
		}
		if err := m.Apply(alloctest.ScratchOp{Kind: alloctest.ScratchFree}); err != nil {
			t.Fatalf("%s: %v", v.Name, err)
		}
		a.Trim() // Debug: empties the quarantine
		s := a.Stats()
		var sum uint64
		for _, p := range s.Breakdown() {
			sum += p.Bytes
		}
		if sum != s.Committed || s.ScratchBytes != 0 {
			t.Fatalf("%s: breakdown %d, committed %d, scratch bytes %d after Free", v.Name, sum, s.Committed, s.ScratchBytes)
		}
	})
}

// scratchOp decodes the next Scratch operation: op byte, then operands.
func (d *decoder) scratchOp() alloctest.ScratchOp {
	switch k := d.byte() % 8; k {
	case 0, 1:
		return alloctest.ScratchOp{Kind: alloctest.ScratchAlloc, Size: alloctest.ScratchSize(int(d.byte()), d.u16())}
	case 2:
		align := 1 << (d.byte() % 17)
		return alloctest.ScratchOp{Kind: alloctest.ScratchAligned, Align: align, Size: alloctest.ScratchSize(int(d.byte()), d.u16())}
	case 3, 4:
		return alloctest.ScratchOp{Kind: alloctest.ScratchNew}
	case 5:
		return alloctest.ScratchOp{Kind: alloctest.ScratchSlice, Size: int(d.u16()) % 5000, Cap: int(d.byte())}
	case 6:
		return alloctest.ScratchOp{Kind: alloctest.ScratchReset}
	}
	if d.byte()%4 == 0 {
		return alloctest.ScratchOp{Kind: alloctest.ScratchFree}
	}
	return alloctest.ScratchOp{Kind: alloctest.ScratchReset}
}
