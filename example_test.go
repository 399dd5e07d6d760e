package alloc_test

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"unsafe"

	"github.com/brkmap/alloc"
)

// Realloc keeps the bytes and returns the slice to use from now on: the
// old one may point at memory already given back. On error the old block
// is untouched and still yours to free.
func ExampleAllocator_Realloc() {
	a, err := alloc.New(alloc.Config{})
	if err != nil {
		panic(err)
	}
	defer a.Close()

	b, _ := a.Malloc(5)
	copy(b, "hello")
	b, err = a.Realloc(b, 1<<20) // from a 16-byte class to a mapping of its own
	if err != nil {
		panic(err)
	}
	copy(b[5:], ", world")
	fmt.Println(string(b[:12]), len(b))

	_, err = a.Realloc(b, -1)
	fmt.Println(errors.Is(err, alloc.ErrInvalidSize), len(b)) // b is still live
	fmt.Println(a.Free(b))
	// Output:
	// hello, world 1048576
	// true 1048576
	// <nil>
}

// AlignedAlloc places a block on any power-of-two boundary: 4096 for
// O_DIRECT, 2 MiB for a huge page, 64 for a cache line.
func ExampleAllocator_AlignedAlloc() {
	a, err := alloc.New(alloc.Config{})
	if err != nil {
		panic(err)
	}
	defer a.Close()

	for _, align := range []int{64, 4096, 2 << 20} {
		b, err := a.AlignedAlloc(align, 10000)
		if err != nil {
			panic(err)
		}
		fmt.Println(align, uintptr(unsafe.Pointer(unsafe.SliceData(b)))%uintptr(align) == 0, len(b))
		_ = a.Free(b)
	}
	_, err = a.AlignedAlloc(3000, 10)
	fmt.Println(errors.Is(err, alloc.ErrInvalidSize))
	// Output:
	// 64 true 10000
	// 4096 true 10000
	// 2097152 true 10000
	// true
}

// MakeSlice gives a zeroed []T of pointer-free T, off the Go heap. A type
// holding Go pointers (strings, slices, maps, pointers) is refused: the
// garbage collector would not see what they point to.
func ExampleMakeSlice() {
	a, err := alloc.New(alloc.Config{})
	if err != nil {
		panic(err)
	}
	defer a.Close()

	type point struct{ X, Y float64 }
	pts, err := alloc.MakeSlice[point](a, 1000)
	if err != nil {
		panic(err)
	}
	pts[999] = point{1, 2}
	fmt.Println(len(pts), cap(pts), pts[0], pts[999])
	fmt.Println(alloc.FreeSlice(a, pts))

	_, err = alloc.MakeSlice[string](a, 10)
	fmt.Println(errors.Is(err, alloc.ErrPointerType))
	// Output:
	// 1000 1000 {0 0} {1 2}
	// <nil>
	// true
}

// Free pages below a live block stay resident — the fragmentation glibc is
// known for — until Trim gives them back, as malloc_trim(0) does.
func ExampleAllocator_Trim() {
	a, err := alloc.New(alloc.Config{})
	if err != nil {
		panic(err)
	}
	defer a.Close()

	blocks := make([][]byte, 100)
	for i := range blocks {
		blocks[i], _ = a.Malloc(64 << 10) // mid-size: one page run each
		clear(blocks[i])                  // touched: resident
	}
	for _, b := range blocks[:99] {
		_ = a.Free(b) // the last block, at the top, keeps the break up
	}
	before := a.Stats()
	released := a.Trim()
	after := a.Stats()
	fmt.Println("trapped before:", before.DirtyBytes > 6<<20, "released:", released >= 6<<20)
	fmt.Println("trapped after:", after.DirtyBytes, "resident dropped:", after.Resident < before.Resident-6<<20)
	_ = a.Free(blocks[99])
	// Output:
	// trapped before: true released: true
	// trapped after: 0 resident dropped: true
}

// Stats measures: resident memory comes from mincore over the allocator's
// own mappings. Counters gives the rest without measuring, for figures
// taken often.
func ExampleAllocator_Stats() {
	a, err := alloc.New(alloc.Config{})
	if err != nil {
		panic(err)
	}
	defer a.Close()

	small, _ := a.Malloc(100)
	large, _ := a.Calloc(4 << 20) // its own mapping, not yet touched
	clear(large[:1<<20])          // 1 MiB of it touched

	s := a.Stats()
	fmt.Println("live:", s.LiveBlocks, "blocks,", s.LiveBytes, "bytes")
	fmt.Println("mappings:", s.MmapCount, s.MmapBytes>>20, "MiB")
	fmt.Println("mapping resident, MiB:", s.MmapResident>>20, "measured:", s.ResidentMeasured)
	c := a.Counters()
	fmt.Println("counters:", c.LiveBlocks, c.Resident, c.ResidentMeasured)
	_ = a.Free(small)
	_ = a.Free(large)
	// Output:
	// live: 2 blocks, 4194404 bytes
	// mappings: 1 4 MiB
	// mapping resident, MiB: 1 measured: true
	// counters: 2 0 false
}

//go:noinline
func loadTable(a *alloc.Allocator) ([]byte, error) { return a.Malloc(3 << 20) }

// HeapProfile is a heap profile of the off-heap blocks in pprof's format,
// by the call stack that allocated them: write it to a file and open it
// with `go tool pprof`, or serve it with statshttp.Handler.
func ExampleAllocator_HeapProfile() {
	old := alloc.ProfileRate
	alloc.ProfileRate = 1 // record every allocation (the default samples one per 512 KiB)
	a, err := alloc.New(alloc.Config{})
	alloc.ProfileRate = old
	if err != nil {
		panic(err)
	}
	defer a.Close()

	table, _ := loadTable(a)
	defer a.Free(table)

	h := a.HeapProfile()
	for _, r := range h.Records {
		fmt.Println(r.AllocObjects-r.FreeObjects, "live,", r.AllocBytes-r.FreeBytes, "bytes")
	}
	f, err := os.CreateTemp("", "offheap-*.pb.gz")
	if err != nil {
		panic(err)
	}
	defer os.Remove(f.Name())
	fmt.Println(h.Write(f), f.Close()) // then: go tool pprof FILE
	// Output:
	// 1 live, 3145728 bytes
	// <nil> <nil>
}

// The append trap: a block is a slice whose capacity is its length, so
// append copies it to the Go heap. Free of the copy is refused, and the
// original block is still live: keep it, and free it.
func ExampleAllocator_Free_append() {
	a, err := alloc.New(alloc.Config{})
	if err != nil {
		panic(err)
	}
	defer a.Close()

	b, _ := a.Malloc(3)
	copy(b, "abc")
	grown := append(b, 'd') // a new array on the Go heap; b is untouched
	fmt.Println(errors.Is(a.Free(grown), alloc.ErrInvalidFree))
	fmt.Println(a.Free(b), a.Stats().LiveBlocks)
	// Output:
	// true
	// <nil> 0
}

// A Buffer builds a body off the Go heap and hands it to a writer; Free
// gives its memory back. The zero Buffer takes memory from Default.
func ExampleBuffer() {
	a, err := alloc.New(alloc.Config{})
	if err != nil {
		panic(err)
	}
	defer a.Close()

	buf, err := a.NewBuffer(4096)
	if err != nil {
		panic(err)
	}
	defer buf.Free()
	fmt.Fprintf(buf, "%d items\n", 3)
	buf.WriteString("a, b, c\n")
	if _, err := buf.ReadFrom(strings.NewReader("end\n")); err != nil {
		panic(err)
	}
	n, err := buf.WriteTo(os.Stdout)
	fmt.Println(n, err, buf.Len())
	// Output:
	// 3 items
	// a, b, c
	// end
	// 20 <nil> 0
}

// Default is shared by every package of the program, so nobody can close
// it for the others.
func ExampleDefault() {
	a := alloc.Default()
	b, _ := a.Malloc(10)
	defer a.Free(b)
	fmt.Println(errors.Is(a.Close(), alloc.ErrDefaultClose))
	var zero alloc.Allocator // not made by New
	_, err := zero.Malloc(10)
	fmt.Println(errors.Is(err, alloc.ErrNotInitialized))
	// Output:
	// true
	// true
}

// A worker goroutine takes a Local for its own allocations: its small
// Malloc and Free use the Local's bins, with no pinning and no lock. The
// blocks are the Allocator's: here the worker's results are freed by
// another goroutine with the Allocator's Free.
func ExampleAllocator_NewLocal() {
	a, err := alloc.New(alloc.Config{})
	if err != nil {
		panic(err)
	}
	defer a.Close()

	results := make(chan []byte)
	go func() { // the worker: one goroutine, one Local
		l := a.NewLocal()
		defer l.Close() // gives its cached blocks back
		defer close(results)
		for i := range 3 {
			scratch, err := l.Malloc(256) // a temporary: freed by the worker
			if err != nil {
				panic(err)
			}
			n := copy(scratch, fmt.Sprintf("job %d done", i))
			out, err := l.Malloc(n) // a result: freed by whoever receives it
			if err != nil {
				panic(err)
			}
			copy(out, scratch[:n])
			if err := l.Free(scratch); err != nil {
				panic(err)
			}
			results <- out
		}
	}()
	for out := range results {
		fmt.Println(string(out))
		if err := a.Free(out); err != nil { // any goroutine may free a Local's block
			panic(err)
		}
	}
	fmt.Println(a.Stats().LiveBlocks)
	// Output:
	// job 0 done
	// job 1 done
	// job 2 done
	// 0
}
