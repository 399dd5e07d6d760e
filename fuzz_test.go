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
)

const (
	maxOps       = 300
	maxLiveBytes = 48 << 20 // past it, allocations become frees
	checkEvery   = 16
)

// decoder turns fuzz input into operations.
type decoder struct{ data []byte }

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
	k := d.byte() % numOps
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
	case opBadFree:
		kind, blk, off := d.byte(), int(d.byte()), int(d.u16())
		if kind%2 == 0 {
			return alloctest.Op{Kind: alloctest.OpFreeInside, Block: blk, Offset: off}
		}
		return alloctest.Op{Kind: alloctest.OpFreeStale, Block: off}
	}
	return alloctest.Op{Kind: alloctest.OpFree, Block: int(d.byte())}
}
