package fit

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/brkmap/alloc/internal/errs"
)

// Attacks on the sorted bin (bigChunk): writes after free into a free
// chunk of exactLimit bytes or more.

// bigFreeBetween returns a heap whose OnCorruption appends to *got, with a
// free chunk of the sorted bin made of block a (n bytes) freed between two
// blocks in use, and those two.
func bigFreeBetween(t *testing.T, got *[]uintptr, n uintptr) (h *Heap, a block, live []block) {
	h = reportsTo(t, got)
	bs := allocFilled(t, h, 3, n)
	freeBlock(t, h, bs[1])
	walk(t, h)
	return h, bs[1], []block{bs[0], bs[2]}
}

// TestForgedReleasedFlag: a write after free that sets or clears the
// released flag in the header of a free chunk — of the sorted bin, or of an
// exact bin whose inside Trim releases — leaves its
// size, flags in use and links as the heap wrote them. The heap's count of
// the pages released inside free chunks must not follow the forged flag:
// taking the chunk out of its bin would subtract pages never released
// (Released wraps below zero), or a released chunk would be released and
// counted twice and never uncounted: they follow the heap's own record (a
// sorted bin's entry, relExact). The damage is reported, and the chunk is
// not used again; the counts stay true.
func TestForgedReleasedFlag(t *testing.T) {
	for _, tc := range []struct {
		bin string
		n   uintptr
	}{{"sorted", 200 << 10}, {"exact", 40 << 10}} {
		for _, set := range []bool{true, false} {
			var got []uintptr
			h, a, live := bigFreeBetween(t, &got, tc.n)
			require.Equal(t, tc.bin == "sorted", chunkSize(tc.n) >= exactLimit, tc.bin)
			hdw := wordAt(h, a.p, ^uintptr(7)) // the header: 8 bytes before the block
			if set {
				*hdw |= flagReleased
			} else {
				require.NotZero(t, h.Trim(), "%s: the free chunk's inside is released", tc.bin)
				require.NotZero(t, *hdw&flagReleased)
				*hdw &^= flagReleased
				h.Trim() // must not release it, and count it, again
			}
			st := h.Stats()
			require.LessOrEqual(t, st.Released, st.FreeBytes, "%s, set %v: released bytes are free bytes", tc.bin, set)
			p, err := h.Alloc(tc.n) // the best fit is the forged chunk, if it is still binned
			require.NoError(t, err)
			st = h.Stats()
			require.LessOrEqual(t, st.Released, st.FreeBytes, "%s, set %v: released bytes are free bytes", tc.bin, set)
			require.Contains(t, got, a.p, "%s, set %v: the forged header is reported", tc.bin, set)
			require.NotEqual(t, a.p, uintptr(p), "%s, set %v: the damaged chunk is not handed out", tc.bin, set)
			for _, b := range live {
				require.True(t, intact(h, b))
			}
		}
	}
}

// TestBigWritesAfterFree runs random allocations, frees and resizes of
// blocks up to a few hundred KiB (their chunks in the sorted bin once
// free), and now and then writes over a word of a freed block's chunk
// (its header, links or boundary tag, whatever the heap made of it since)
// that no block in use holds. Whatever is damaged, no block handed out
// overlaps a block in use, every block's contents stay intact, the counts
// of blocks in use stay true, and the released bytes stay within the free
// bytes.
func TestBigWritesAfterFree(t *testing.T) {
	for seed := uint64(1); seed <= 4; seed++ {
		opts := Options{OnCorruption: func(addr, size uintptr, detail string) {}}
		if seed%2 == 0 {
			opts.Purge = true
		}
		h, _ := newHeapWith(t, opts)
		rng := rand.New(rand.NewPCG(seed, 7))
		type liveBlock struct {
			block
			usable uintptr
		}
		var live []liveBlock
		var freed []uintptr // blocks freed: their p
		overlaps := func(lo, hi uintptr, skip int) bool {
			for k, b := range live {
				if k != skip && lo < b.p+b.usable && b.p < hi {
					return true
				}
			}
			return false
		}
		size := func() uintptr {
			if rng.IntN(3) == 0 {
				return uintptr(1100 + rng.IntN(20000))
			}
			return uintptr(60<<10 + rng.IntN(300<<10))
		}
		for i := 0; i < 1500; i++ {
			switch op := rng.IntN(12); {
			case op < 5 || len(live) == 0:
				n := size()
				p, err := h.Alloc(n)
				require.NoError(t, err)
				b := block{p: uintptr(p), n: n, tag: byte(rng.Uint32())}
				u, _, err := h.Usable(h.region.Lookup(b.p), b.p)
				require.NoError(t, err)
				require.False(t, overlaps(b.p, b.p+u, -1), "a block at %#x handed out over a block in use", b.p)
				fill(h, b)
				live = append(live, liveBlock{b, u})
			case op < 8:
				k := rng.IntN(len(live))
				b := live[k]
				require.True(t, intact(h, b.block), "block %#x changed", b.p)
				if _, err := h.Free(h.region.Lookup(b.p), b.p); err != nil {
					require.ErrorIs(t, err, errs.ErrInvalidFree, "left alone: the chunk after it is damaged")
					continue
				}
				live[k] = live[len(live)-1]
				live = live[:len(live)-1]
				freed = append(freed, b.p)
			case op < 10:
				k := rng.IntN(len(live))
				b := live[k]
				n := size()
				ok, err := h.Resize(h.region.Lookup(b.p), b.p, n, 0)
				if err != nil {
					require.ErrorIs(t, err, errs.ErrInvalidFree)
					continue
				}
				if ok {
					require.True(t, intact(h, block{p: b.p, n: min(n, b.n), tag: b.tag}))
					u, _, err := h.Usable(h.region.Lookup(b.p), b.p)
					require.NoError(t, err)
					require.False(t, overlaps(b.p, b.p+u, k), "block %#x grown over a block in use", b.p)
					b.n, b.usable = n, u
					fill(h, b.block)
					live[k] = b
				}
			default:
				if len(freed) == 0 {
					continue
				}
				p := freed[rng.IntN(len(freed))]
				at := p - 8 + uintptr(rng.IntN(3))*8 // header, fd, bk
				if rng.IntN(4) == 0 {
					at = p + uintptr(rng.IntN(4))*16 - 16 // or the words of a chunk a split may have made
				}
				if overlaps(at, at+8, -1) || h.region.Lookup(at) == nil {
					continue
				}
				w := (*uint64)(h.region.Ptr(at))
				switch rng.IntN(4) {
				case 0:
					*w = 0
				case 1:
					*w ^= 1 << rng.IntN(64)
				case 2:
					*w |= flagReleased
				default:
					*w = uint64(rng.IntN(1 << 20))
				}
			}
			if i%100 == 0 {
				st := h.Stats()
				require.LessOrEqual(t, st.Released, st.FreeBytes)
				require.Equal(t, uintptr(len(live)), st.LiveChunks, "blocks in use (Free, not FreeFast: no front holds any)")
			}
		}
		for _, b := range live {
			require.True(t, intact(h, b.block), "block %#x changed", b.p)
		}
		h.Trim()
		st := h.Stats()
		require.LessOrEqual(t, st.Released, st.FreeBytes)
	}
}

// TestBigReleasedKept: the released mark of a chunk of the sorted bin,
// kept in its entry, follows the chunk as Trim, the purge at once, a
// Resize that grows into it, an allocation that splits it, and the top's
// growth in place take it or make it again: nothing reads as damaged, and
// the released bytes are those of the chunks marked so (walk).
func TestBigReleasedKept(t *testing.T) {
	for _, opts := range []Options{{}, {Purge: true}} {
		var got []uintptr
		opts.OnCorruption = func(addr, size uintptr, detail string) {
			got = append(got, addr)
			t.Logf("reported %#x: %s", addr, detail)
		}
		h, _ := newHeapWith(t, opts)
		bs := allocFilled(t, h, 4, 200<<10) // a, b, c, d
		freeBlock(t, h, bs[0])
		freeBlock(t, h, bs[2])
		h.Trim()
		walk(t, h)
		require.NotZero(t, h.Stats().Released)
		ok, err := h.Resize(h.region.Lookup(bs[1].p), bs[1].p, 300<<10, 0) // into c, released
		require.NoError(t, err)
		require.True(t, ok)
		walk(t, h)
		p, err := h.Alloc(100 << 10) // a split, released
		require.NoError(t, err)
		walk(t, h)
		big, err := h.Alloc(4 << 20) // the top grown in place, or a run
		require.NoError(t, err)
		walk(t, h)
		for _, q := range []uintptr{bs[1].p, bs[3].p, uintptr(p), uintptr(big)} {
			_, err := h.Free(h.region.Lookup(q), q)
			require.NoError(t, err)
			walk(t, h)
		}
		h.Trim()
		walk(t, h)
		require.Empty(t, got, "purge %v: nothing is damaged", opts.Purge)
	}
}

// TestBigConcurrent: workers allocate, free (through their P's front when
// it takes the block) and resize blocks up to a few hundred KiB while the
// purge's timer, Trim and Idle release the sorted bin's chunks and Stats
// reads the counts: contents stay intact, the released bytes stay within
// the free bytes, and the invariants hold at the end.
func TestBigConcurrent(t *testing.T) {
	h, _ := newHeapWith(t, Options{Purge: true, PurgeDelay: time.Millisecond})
	const workers = 3
	done := make(chan error, workers)
	stop := make(chan struct{})
	go func() {
		for {
			select {
			case <-stop:
				done <- nil
				return
			default:
			}
			h.Trim()
			h.Idle()
			if st := h.Stats(); st.Released > st.FreeBytes {
				done <- fmt.Errorf("released %d of %d free bytes", st.Released, st.FreeBytes)
				<-stop
				done <- nil
				return
			}
			time.Sleep(100 * time.Microsecond)
		}
	}()
	for w := range workers {
		go func(seed uint64) {
			rng := rand.New(rand.NewPCG(seed, 11))
			size := func() uintptr {
				if rng.IntN(2) == 0 {
					return uintptr(1100 + rng.IntN(3000))
				}
				return uintptr(60<<10 + rng.IntN(300<<10))
			}
			var mine []block
			var err error
			for i := 0; i < 1500 && err == nil; i++ {
				switch op := rng.IntN(10); {
				case op < 5 || len(mine) == 0:
					n := size()
					p, e := h.Alloc(n)
					if e != nil {
						err = e
						break
					}
					b := block{p: uintptr(p), n: n, tag: byte(rng.Uint32())}
					fill(h, b)
					mine = append(mine, b)
				case op < 8:
					k := rng.IntN(len(mine))
					b := mine[k]
					mine[k] = mine[len(mine)-1]
					mine = mine[:len(mine)-1]
					if !intact(h, b) {
						err = fmt.Errorf("block %#x changed", b.p)
						break
					}
					if ar := h.region.Lookup(b.p); !h.FreeFast(ar, b.p) {
						_, err = h.Free(ar, b.p)
					}
				default:
					k := rng.IntN(len(mine))
					mine[k], err = resizeFilled(h, mine[k], size())
				}
			}
			for _, b := range mine {
				if err == nil && !intact(h, b) {
					err = fmt.Errorf("block %#x changed", b.p)
				}
				if err == nil {
					_, err = h.Free(h.region.Lookup(b.p), b.p)
				}
			}
			done <- err
		}(uint64(w))
	}
	for range workers {
		require.NoError(t, <-done)
	}
	close(stop)
	require.NoError(t, <-done)
	walk(t, h)
	h.Trim()
	walk(t, h)
	require.Zero(t, h.Stats().LiveChunks)
}

// TestWildDamaged: a write after free into the top run's last free chunk,
// which sits in no bin (wild) — its header or a link word — is reported
// when the heap next looks at it, and the chunk is never handed out again;
// the block before it is not merged with it (its Free fails), and stays
// intact. Both when the chunk is of the sorted bin's sizes and when it is
// of an exact bin's.
func TestWildDamaged(t *testing.T) {
	for _, small := range []bool{false, true} {
		for _, off := range []uintptr{^uintptr(7), 0, 8} { // the header, the forward link, the back link
			var got []uintptr
			h := reportsTo(t, &got)
			if small {
				allocFilled(t, h, 1, runBytes-60<<10) // leaves less than exactLimit at the run's end
			}
			bs := allocFilled(t, h, 2, 3000)
			freeBlock(t, h, bs[1]) // merged into the run's last free chunk
			walk(t, h)
			require.Equal(t, bs[1].p-2*overhead, h.wild, "small %v: the freed block is the top's last free chunk", small)
			require.Equal(t, small, h.wildS < exactLimit, "small %v", small)
			*wordAt(h, bs[1].p, off) ^= 0x10
			p, err := h.Alloc(3000)
			require.NoError(t, err)
			require.NotEqual(t, bs[1].p, uintptr(p), "small %v, offset %d: the damaged chunk is not handed out", small, int(off))
			require.Contains(t, got, bs[1].p, "small %v, offset %d: the damage is reported", small, int(off))
			_, err = h.Free(h.region.Lookup(bs[0].p), bs[0].p)
			require.ErrorIs(t, err, errs.ErrInvalidFree, "small %v, offset %d: not merged with the damaged chunk", small, int(off))
			require.True(t, intact(h, bs[0]))
		}
	}
}

// TestWildPrevForged: a Free trusts a header's size without the bitmap
// only for the block carved last off the top's last free chunk, whose
// size ends there (wildPrev). A header of the block before it overwritten
// to end there too — over the block carved last — is refused and
// reported, both blocks left intact; the block carved last frees.
func TestWildPrevForged(t *testing.T) {
	var got []uintptr
	h := reportsTo(t, &got)
	bs := allocFilled(t, h, 2, 3000)
	a, b := bs[0], bs[1]
	require.Equal(t, b.p-2*overhead, h.wildPrev, "the block carved last")
	hdw := wordAt(h, a.p, ^uintptr(7))
	was := *hdw
	*hdw = was&^uint64(sizeMask) | uint64(h.wild-(a.p-2*overhead)) // a's size, ending at the top's chunk
	_, err := h.Free(h.region.Lookup(a.p), a.p)
	require.ErrorIs(t, err, errs.ErrInvalidFree)
	require.Contains(t, got, a.p, "the forged header is reported")
	require.True(t, intact(h, a))
	require.True(t, intact(h, b))
	*hdw = was
	freeBlock(t, h, b)
	freeBlock(t, h, a)
	walk(t, h)
}
