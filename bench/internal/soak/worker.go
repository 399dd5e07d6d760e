package soak

import (
	"math/rand/v2"

	"github.com/brkmap/alloc"
	"github.com/brkmap/alloc/internal/alloctest"
)

// soakWorker is one goroutine's state: its own operation-stream model
// (alloctest.Model) over the shared allocator, its inbox of blocks handed
// over by the previous worker, its counters.
type soakWorker struct {
	a     *alloc.Allocator
	m     *alloctest.Model
	rng   *rand.Rand
	inbox chan *alloctest.Block
	next  *soakWorker
	n     [numSoakOps]int64
	err   error
}

// A worker's limits.
const (
	soakMaxLive = 1500 // blocks a worker keeps; past it, it frees
	soakInbox   = 256
)

// newWorker returns worker i of a soak on a, its model's seeds apart from
// every other worker's.
func newWorker(a *alloc.Allocator, i int, seed uint64) *soakWorker {
	m := alloctest.NewModel(a, alloc.ErrInvalidFree, alloc.ErrDoubleFree)
	m.SeedFrom(uint32(i) << 24)
	return &soakWorker{a: a, m: m, rng: rand.New(rand.NewPCG(seed, uint64(i))), inbox: make(chan *alloctest.Block, soakInbox)}
}

// adopt moves the blocks handed to w into its own model.
func (w *soakWorker) adopt() {
	for {
		select {
		case l := <-w.inbox:
			w.m.Adopt(l)
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

// free frees live block i of w's model (modulo their number), counted as
// a free of w's own block or of one handed over.
func (w *soakWorker) free(i int) error {
	k := sFree
	if w.m.Blocks()[i%w.m.Live()].Handed {
		k = sCross
	}
	return w.apply(k, alloctest.Op{Kind: alloctest.OpFree, Block: i})
}

// apply has the model perform op, counted as kind k if it succeeds.
func (w *soakWorker) apply(k int, op alloctest.Op) error {
	if err := w.m.Apply(op); err != nil {
		return err
	}
	w.n[k]++
	return nil
}

// run does n operations (fewer if one fails) and returns how many.
func (w *soakWorker) run(n int64) int64 {
	var done int64
	for ; done < n; done++ {
		if done%64 == 0 {
			w.adopt()
		}
		x := w.rng.IntN(1000)
		if w.m.Live() >= soakMaxLive && x < 450 {
			x += 450 // full: free instead
		}
		if w.m.Live() == 0 && x >= 380 {
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
// AlignedAlloc (at 1 B to 1 MiB), 7% Realloc, 40% Free, 14% hand-over to
// the next worker, 0.9% interior-pointer Free (which must be refused with
// ErrInvalidFree; a Free instead in a build without the always-on checks),
// 0.1% Trim. The model checks each: a block's pattern
// before it is freed, resized or handed over, a Calloc'd block zeroed, a
// Realloc'd prefix kept, alignment. counted is false for a hand-over,
// which is no allocator operation.
func (w *soakWorker) op(x int) (counted bool, err error) {
	block := w.rng.Int()
	switch {
	case x < 300:
		return true, w.apply(sMalloc, alloctest.Op{Kind: alloctest.OpMalloc, Size: w.size()})
	case x < 340:
		return true, w.apply(sCalloc, alloctest.Op{Kind: alloctest.OpCalloc, Size: w.size()})
	case x < 380:
		return true, w.apply(sAligned, alloctest.Op{Kind: alloctest.OpAligned, Align: 1 << w.rng.IntN(21), Size: w.size()})
	case x < 450:
		return true, w.apply(sRealloc, alloctest.Op{Kind: alloctest.OpRealloc, Block: block, Size: w.size()})
	case x < 850:
		return true, w.free(block)
	case x < 990: // hand a block to the next worker, which will free it
		// w is the only sender on w.next.inbox: room now is room at the send.
		if len(w.next.inbox) == cap(w.next.inbox) {
			return true, w.free(block)
		}
		l, err := w.m.Hand(block)
		if err == nil {
			w.next.inbox <- l
		}
		return false, err
	case x < 999 && !alloctest.Checks: // -tags brkmap_nochecks: a bad free would corrupt the heap
		return true, w.free(block)
	case x < 999:
		return true, w.apply(sBadFree, alloctest.Op{Kind: alloctest.OpFreeInside, Block: block, Offset: w.rng.Int()})
	}
	return true, w.apply(sTrim, alloctest.Op{Kind: alloctest.OpTrim})
}
