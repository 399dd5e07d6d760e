package shm

// The size classes: 16-byte steps to 128 bytes, then four classes per
// doubling up to MaxSmall, as jemalloc's spacing (at most 25% waste inside
// a block). Each class's slab is the fewest pages (at most 8) that hold at
// least 8 blocks and waste at most an eighth of the slab at its tail. The
// table is computed, not typed; TestClassTable prints it with its waste.

// MaxSmall is the largest request served from a slab; larger ones get a
// run of whole pages.
const MaxSmall = 3072

const (
	numClasses   = 26
	maxSlabPages = 8
)

// class describes one size class. Read-only after init.
type class struct {
	size    uint64 // block size
	pages   uint64 // pages per slab
	nblocks uint64 // blocks per slab
	dataOff uint64 // offset of block 0 in the slab: the live bitmap comes first
}

var classes [numClasses]class

// sizeToClass maps (n+15)/16 to a class index, for n ≤ MaxSmall.
var sizeToClass [MaxSmall/16 + 1]uint8

func init() {
	var sizes []uint64
	for s := uint64(16); s <= 128; s += 16 {
		sizes = append(sizes, s)
	}
	for base := uint64(128); base < MaxSmall; base *= 2 {
		for i := uint64(1); i <= 4 && base+i*base/4 <= MaxSmall; i++ {
			sizes = append(sizes, base+i*base/4)
		}
	}
	if len(sizes) != numClasses {
		panic("shm: class table has the wrong length")
	}
	for c, s := range sizes {
		classes[c] = makeClass(s)
	}
	c := 0
	for i := range sizeToClass {
		for uint64(i)*16 > classes[c].size {
			c++
		}
		sizeToClass[i] = uint8(c)
	}
}

// makeClass chooses the slab of blocks of size s.
func makeClass(s uint64) class {
	var k class
	for pages := uint64(1); pages <= maxSlabPages; pages++ {
		bytes := pages * PageSize
		// n blocks and a bitmap of n bits rounded up to 16 bytes.
		n := bytes / s
		for n > 0 && bitmapBytes(n)+n*s > bytes {
			n--
		}
		k = class{size: s, pages: pages, nblocks: n, dataOff: bitmapBytes(n)}
		if n >= 8 && (bytes-n*s)*8 <= bytes {
			break
		}
	}
	return k
}

func bitmapBytes(n uint64) uint64 { return (n + 127) / 128 * 16 }

// classOf returns the class index of a request of n bytes, 1 ≤ n ≤ MaxSmall.
func classOf(n int) int { return int(sizeToClass[(n+15)/16]) }
