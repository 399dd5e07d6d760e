package alloc_test

import (
	"fmt"

	"github.com/brkmap/alloc"
)

// A request handler with a request arena: every object a request needs
// comes from its worker's Scratch, and all of them go at once when the
// request ends (Reset), so the handler frees nothing object by object and
// the garbage collector sees none of it. Reset keeps the pages the request
// used, so a steady stream of requests takes nothing more from the
// allocator after the first; the worker frees its Scratch when it stops.
func ExampleScratch() {
	a, err := alloc.New(alloc.Config{})
	if err != nil {
		panic(err)
	}
	defer a.Close()

	type point struct{ X, Y float64 } // no Go pointers: off-heap memory may hold it
	type request struct{ points int }

	// One Scratch per worker goroutine: a Scratch is owned by one goroutine.
	s := a.NewScratch()
	defer s.Free()

	handle := func(r request) (float64, error) {
		defer s.Reset() // the request's objects, all at once

		pts, err := alloc.ScratchSlice[point](s, r.points, r.points) // zeroed
		if err != nil {
			return 0, err
		}
		for i := range pts {
			pts[i] = point{X: float64(i), Y: float64(2 * i)}
		}
		sum, err := alloc.ScratchNew[point](s) // a zero point
		if err != nil {
			return 0, err
		}
		for _, p := range pts {
			sum.X += p.X
			sum.Y += p.Y
		}
		return sum.X + sum.Y, nil // a float64 copied out: nothing of s escapes
	}

	for _, n := range []int{10, 1000, 100} {
		v, err := handle(request{points: n})
		fmt.Println(v, err)
	}
	_, err = alloc.ScratchNew[*point](s)
	fmt.Println(err)
	// Output:
	// 135 <nil>
	// 1.4985e+06 <nil>
	// 14850 <nil>
	// alloc: type contains Go pointers: *alloc_test.point
}
