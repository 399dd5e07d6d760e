package alloc_test

import (
	"math/rand/v2"
	"testing"

	"github.com/brkmap/alloc/internal/alloctest"
)

// FuzzOps decodes its input into a stream of operations — Malloc, Calloc,
// Realloc, AlignedAlloc, Free, Trim and bad frees — and runs it against a
// fresh allocator under the configuration the first byte picks (every
// variant of alloctest.Variants), holding it to the model the property
// test uses (alloctest.Model): every block keeps its pattern, no two
// blocks overlap, Stats counts exactly the live blocks and bytes, bad
// frees are refused with their sentinel, and once everything is freed no
// mapping is left.
//
//	go test -run '^$' -fuzz '^FuzzOps$' -fuzztime 30s .
func FuzzOps(f *testing.F) {
	// Hand-written streams: op byte, then the operands (see decode).
	for i := range alloctest.Variants {
		c := byte(i)
		f.Add([]byte{c})
		f.Add([]byte{c, opMalloc, 1, 0, 0, opFree, 0, opTrim})
		// every size band, then realloc across the bands, then free
		f.Add([]byte{c, opMalloc, 0, 9, 0, opCalloc, 1, 200, 0, opMalloc, 5, 0, 0, opMalloc, 7, 128, 0,
			opMalloc, 9, 255, 255, opRealloc, 0, 9, 255, 255, opRealloc, 1, 0, 3, 0, opRealloc, 2, 7, 255, 255,
			opBadFree, 0, 1, 7, opFree, 0, opBadFree, 1, 0, opFree, 0, opTrim, opFree, 0, opFree, 0})
		// aligned blocks of every alignment up to 2 MiB
		f.Add([]byte{c, opAligned, 4, 1, 0, 0, opAligned, 12, 5, 0, 0, opAligned, 21, 7, 0, 0, opAligned, 16, 9, 0, 0,
			opFree, 1, opRealloc, 0, 9, 0, 0, opTrim, opFree, 0})
	}
	// Random streams, the same on every run.
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 20 {
		b := make([]byte, 1+r.IntN(600))
		for j := range b {
			b[j] = byte(r.Uint32())
		}
		b[0] = byte(i % len(alloctest.Variants))
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 {
			return
		}
		v := alloctest.Variants[int(data[0])%len(alloctest.Variants)]
		a, m := newModel(t, v)
		defer a.Close()
		d := &decoder{data: data[1:]}
		for op := 0; len(d.data) > 0 && op < maxOps; op++ {
			o := d.op(m)
			if !alloctest.Checks && (o.Kind == alloctest.OpFreeInside || o.Kind == alloctest.OpFreeStale) {
				continue // built without the always-on checks
			}
			if err := m.Apply(o); err != nil {
				t.Fatalf("%s, op %d: %v", v.Name, op, err)
			}
			if op%checkEvery == 0 {
				if err := m.Check(); err != nil {
					t.Fatalf("%s, op %d: %v", v.Name, op, err)
				}
			}
		}
		if err := m.FreeAll(); err != nil {
			t.Fatalf("%s: %v", v.Name, err)
		}
	})
}

// FuzzLocal is FuzzOps through a Local: the stream's Malloc, Calloc,
// Realloc and Free go through a Local on the allocator (its AlignedAlloc,
// Trim and Stats are the Allocator's), and two more operations hand a
// block to a second model driving the Allocator itself (which frees it
// there, or hands it back) and close the Local for a new one. The same
// model holds both: patterns intact, no overlap, Stats exact, bad frees
// refused, nothing left once everything is freed.
//
//	go test -run '^$' -fuzz '^FuzzLocal$' -fuzztime 15s .
func FuzzLocal(f *testing.F) {
	for i := range alloctest.Variants {
		c := byte(i)
		f.Add([]byte{c})
		f.Add([]byte{c, opMalloc, 1, 0, 0, opHand, 0, opMalloc, 0, 3, 0, opFree, 0, opTrim, opCloseLocal, opHand, 0, opFree, 0})
		f.Add([]byte{c, opMalloc, 0, 9, 0, opCalloc, 1, 200, 0, opMalloc, 5, 0, 0, opHand, 1, opRealloc, 0, 9, 255, 255,
			opBadFree, 0, 1, 7, opCloseLocal, opFree, 0, opHand, 0, opFree2, 0})
	}
	r := rand.New(rand.NewPCG(3, 4))
	for i := range 10 {
		b := make([]byte, 1+r.IntN(600))
		for j := range b {
			b[j] = byte(r.Uint32())
		}
		b[0] = byte(i % len(alloctest.Variants))
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 {
			return
		}
		v := alloctest.Variants[int(data[0])%len(alloctest.Variants)]
		a, l, ml, ma := newLocalModels(t, v)
		defer a.Close()
		d := &decoder{data: data[1:], local: true}
		for op := 0; len(d.data) > 0 && op < maxOps; op++ {
			var err error
			switch o := d.op(ml); {
			case o.Kind == opHandKind:
				// the block goes to the Allocator's model, which frees it
				// the Allocator's way, or back
				var blk *alloctest.Block
				if ml.Live() > 0 {
					if blk, err = ml.Hand(o.Block); err == nil {
						ma.Adopt(blk)
						if o.Size%2 == 0 {
							err = ma.Apply(alloctest.Op{Kind: alloctest.OpFree, Block: ma.Live() - 1})
						}
					}
				} else if ma.Live() > 0 {
					if blk, err = ma.Hand(o.Block); err == nil {
						ml.Adopt(blk)
					}
				}
			case o.Kind == opCloseKind:
				if err = l.Close(); err == nil {
					l = a.NewLocal()
					ml.Retarget(localHeap{a, l})
				}
			case o.Kind == alloctest.OpFreeStale && (!alloctest.Checks || ma.Live() > 0):
				// a stale slice is judged against this model's blocks only
			case !alloctest.Checks && o.Kind == alloctest.OpFreeInside:
			default:
				err = ml.Apply(o)
			}
			if err == nil && op%checkEvery == 0 {
				err = alloctest.CheckAll(ml, ma)
			}
			if err != nil {
				t.Fatalf("%s, op %d: %v", v.Name, op, err)
			}
		}
		for ma.Live() > 0 {
			blk, err := ma.Hand(0)
			if err != nil {
				t.Fatal(err)
			}
			ml.Adopt(blk)
		}
		if err := ml.FreeAll(); err != nil {
			t.Fatalf("%s: %v", v.Name, err)
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
	})
}

// The operations of a stream: the op byte modulo numOps.
const (
	opMalloc  = iota // size
	opCalloc         // size
	opRealloc        // block, size
	opAligned        // log2 alignment (mod 22), size
	opFree           // block
	opTrim           //
	opBadFree        // kind: interior pointer of a block (block, offset) or a stale slice (index)
	opFree2          // block: frees are as common as allocations
	numOps
	// FuzzLocal's two more (the op byte modulo numLocalOps)
	opHand       = numOps     // block, way: hand a block between the Local's model and the Allocator's
	opCloseLocal = numOps + 1 // close the Local and take a new one
	numLocalOps  = numOps + 2
)

// The kinds decode gives FuzzLocal's operations (beyond alloctest's).
const (
	opHandKind  = alloctest.NumOps + iota // Block, Size (even: the Allocator frees it)
	opCloseKind                           //
)

const (
	maxOps       = 300
	maxLiveBytes = 48 << 20 // past it, allocations become frees
	checkEvery   = 16
)

// decoder turns fuzz input into operations; local adds FuzzLocal's.
type decoder struct {
	data  []byte
	local bool
}

// byte returns the next input byte (0 once the input is spent).
func (d *decoder) byte() byte {
	if len(d.data) == 0 {
		return 0
	}
	b := d.data[0]
	d.data = d.data[1:]
	return b
}

func (d *decoder) u16() uint16 { return uint16(d.byte())<<8 | uint16(d.byte()) }

// size decodes a size up to 2 MiB, most of them small (alloctest.Size).
func (d *decoder) size() int { return alloctest.Size(int(d.byte()), d.u16()) }

// op decodes the next operation; past maxLiveBytes live, allocations
// become frees so that a stream cannot exhaust memory.
func (d *decoder) op(m *alloctest.Model) alloctest.Op {
	b := d.byte()
	k := b % numOps
	if d.local {
		k = b % numLocalOps
	}
	if m.LiveBytes() > maxLiveBytes && k <= opAligned && k != opRealloc {
		k = opFree
	}
	switch k {
	case opMalloc:
		return alloctest.Op{Kind: alloctest.OpMalloc, Size: d.size()}
	case opCalloc:
		return alloctest.Op{Kind: alloctest.OpCalloc, Size: d.size()}
	case opAligned:
		align := 1 << (d.byte() % 22)
		return alloctest.Op{Kind: alloctest.OpAligned, Align: align, Size: d.size()}
	case opRealloc:
		blk := int(d.byte())
		return alloctest.Op{Kind: alloctest.OpRealloc, Block: blk, Size: d.size()}
	case opTrim:
		return alloctest.Op{Kind: alloctest.OpTrim}
	case opHand:
		return alloctest.Op{Kind: opHandKind, Block: int(d.byte()), Size: int(d.byte())}
	case opCloseLocal:
		return alloctest.Op{Kind: opCloseKind}
	case opBadFree:
		kind, blk, off := d.byte(), int(d.byte()), int(d.u16())
		if kind%2 == 0 {
			return alloctest.Op{Kind: alloctest.OpFreeInside, Block: blk, Offset: off}
		}
		return alloctest.Op{Kind: alloctest.OpFreeStale, Block: off}
	}
	return alloctest.Op{Kind: alloctest.OpFree, Block: int(d.byte())}
}
