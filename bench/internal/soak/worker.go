package soak

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"unsafe"

	"github.com/brkmap/alloc"
)

// soakBlock is a live block of the soak, with the seed of its pattern.
type soakBlock struct {
	b     []byte
	seed  uint64
	cross bool // handed over by another goroutine
}

// soakWorker is one goroutine's state: its blocks, its inbox of blocks
// handed over by the previous worker, its counters.
type soakWorker struct {
	a     *alloc.Allocator
	rng   *rand.Rand
	live  []soakBlock
	inbox chan soakBlock
	next  *soakWorker
	n     [numSoakOps]int64
	seeds uint64
	err   error
}

// A worker's limits.
const (
	soakMaxLive = 1500 // blocks a worker keeps; past it, it frees
	soakInbox   = 256
)

// Run soaks a fresh allocator made with p's Config and returns the counts;

// adopt moves the blocks handed to w into its own list.
func (w *soakWorker) adopt() {
	for {
		select {
		case l := <-w.inbox:
			l.cross = true
			w.live = append(w.live, l)
		default:
			return
		}
	}
}

// size draws a request size: mostly small, some mid-size, a few large.
func (w *soakWorker) size() int {
	switch x := w.rng.IntN(1000); {
	case x < 600:
		return w.rng.IntN(257)
	case x < 900:
		return w.rng.IntN(4097)
	case x < 985:
		return w.rng.IntN(40 << 10)
	case x < 998:
		return w.rng.IntN(300 << 10)
	}
	return w.rng.IntN(2<<20 + 1)
}

func (w *soakWorker) keep(b []byte) {
	w.seeds++
	soakFill(b, w.seeds)
	w.live = append(w.live, soakBlock{b: b, seed: w.seeds})
}

func (w *soakWorker) free(l soakBlock) error {
	if i := soakIntact(l.b, l.seed); i >= 0 {
		return fmt.Errorf("block of %d bytes at %p damaged at offset %d before Free", len(l.b), unsafe.SliceData(l.b), i)
	}
	if err := w.a.Free(l.b); err != nil {
		return fmt.Errorf("free of %d bytes: %w", len(l.b), err)
	}
	if l.cross {
		w.n[sCross]++
	} else {
		w.n[sFree]++
	}
	return nil
}

// take removes a random block from w's list.
func (w *soakWorker) take() soakBlock {
	i := w.rng.IntN(len(w.live))
	l := w.live[i]
	w.live[i] = w.live[len(w.live)-1]
	w.live = w.live[:len(w.live)-1]
	return l
}

// run does n operations (fewer if one fails) and returns how many.
func (w *soakWorker) run(n int64) int64 {
	var done int64
	for ; done < n; done++ {
		if done%64 == 0 {
			w.adopt()
		}
		x := w.rng.IntN(1000)
		if len(w.live) >= soakMaxLive && x < 450 {
			x += 450 // full: free instead
		}
		if len(w.live) == 0 && x >= 380 {
			x %= 380 // nothing to resize or free: allocate
		}
		counted, err := w.op(x)
		if !counted {
			done-- // a hand-over is not an allocator operation
		}
		if err != nil {
			w.err = err
			return done + 1
		}
	}
	return done
}

// op does the operation x (0 to 999) picks: 30% Malloc, 4% Calloc, 4%
// AlignedAlloc, 7% Realloc, 40% Free, 14% hand-over to the next worker,
// 0.9% interior-pointer Free, 0.1% Trim. counted is false for a
// hand-over, which is no allocator operation.
func (w *soakWorker) op(x int) (counted bool, err error) {
	switch {
	case x < 300:
		return true, w.malloc()
	case x < 340:
		return true, w.calloc()
	case x < 380:
		return true, w.aligned()
	case x < 450:
		return true, w.realloc()
	case x < 850:
		return true, w.free(w.take())
	case x < 990: // hand a block to the next worker, which will free it
		l := w.take()
		select {
		case w.next.inbox <- l:
			return false, nil
		default:
			return true, w.free(l)
		}
	case x < 999:
		return true, w.badFree()
	}
	w.a.Trim()
	w.n[sTrim]++
	return true, nil
}

func (w *soakWorker) malloc() error {
	b, err := w.a.Malloc(w.size())
	if err == nil {
		w.keep(b)
		w.n[sMalloc]++
	}
	return err
}

// calloc allocates with Calloc and checks the block is zeroed.
func (w *soakWorker) calloc() error {
	n := w.size()
	b, err := w.a.Calloc(n)
	if err != nil {
		return err
	}
	for i, c := range b {
		if c != 0 {
			err = fmt.Errorf("Calloc(%d): byte %d is %#x", n, i, c)
			break
		}
	}
	w.keep(b)
	w.n[sCalloc]++
	return err
}

// aligned allocates at an alignment of 1 B to 1 MiB and checks it.
func (w *soakWorker) aligned() error {
	align, n := 1<<w.rng.IntN(21), w.size()
	b, err := w.a.AlignedAlloc(align, n)
	if err != nil {
		return err
	}
	if uintptr(unsafe.Pointer(unsafe.SliceData(b)))%uintptr(align) != 0 {
		err = fmt.Errorf("AlignedAlloc(%d, %d) returned %p", align, n, unsafe.SliceData(b))
	}
	w.keep(b)
	w.n[sAligned]++
	return err
}

// realloc resizes a random block and checks that its prefix survived.
func (w *soakWorker) realloc() error {
	l := w.take()
	if i := soakIntact(l.b, l.seed); i >= 0 {
		return fmt.Errorf("block of %d bytes at %p damaged at offset %d before Realloc", len(l.b), unsafe.SliceData(l.b), i)
	}
	n := w.size()
	nb, err := w.a.Realloc(l.b, n)
	if err != nil {
		return err
	}
	if i := soakIntact(nb[:min(n, len(l.b))], l.seed); i >= 0 {
		err = fmt.Errorf("Realloc(%d -> %d) lost byte %d", len(l.b), n, i)
	}
	w.keep(nb)
	w.n[sRealloc]++
	return err
}

// badFree frees an interior pointer of a random block, which must be
// refused with ErrInvalidFree.
func (w *soakWorker) badFree() error {
	var err error
	l := w.live[w.rng.IntN(len(w.live))]
	if len(l.b) >= 2 {
		off := 1 + w.rng.IntN(len(l.b)-1)
		if e := w.a.Free(l.b[off:]); !errors.Is(e, alloc.ErrInvalidFree) {
			err = fmt.Errorf("free of an interior pointer (+%d of %d) gave %v", off, len(l.b), e)
		}
	}
	w.n[sBadFree]++
	return err
}

// soakFill writes a block's pattern eight bytes at a time: every word
// depends on the block's seed and its offset, so an overlap with any other
// block, or a stray write, shows.
func soakFill(b []byte, seed uint64) {
	key := seed * 0x9e3779b97f4a7c15
	i := 0
	for ; i+8 <= len(b); i += 8 {
		*(*uint64)(unsafe.Pointer(&b[i])) = key ^ uint64(i)
	}
	for ; i < len(b); i++ {
		b[i] = soakByte(key, i)
	}
}

func soakIntact(b []byte, seed uint64) int {
	key := seed * 0x9e3779b97f4a7c15
	i := 0
	for ; i+8 <= len(b); i += 8 {
		if *(*uint64)(unsafe.Pointer(&b[i])) != key^uint64(i) {
			for j := i; ; j++ {
				if b[j] != soakByte(key, j) {
					return j
				}
			}
		}
	}
	for ; i < len(b); i++ {
		if b[i] != soakByte(key, i) {
			return i
		}
	}
	return -1
}

// soakByte is byte i of the pattern: byte i%8 of the (little-endian) word
// at i&^7, so a prefix of a block checks the same bytes the words wrote.
func soakByte(key uint64, i int) byte { return byte((key ^ uint64(i&^7)) >> (8 * (i & 7))) }
