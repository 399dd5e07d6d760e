package slab

// The size-class API over the generated tables (sizeclasses.go).

// SizeClass returns the class of a request of n bytes, 0 <= n <= MaxSize.
func SizeClass(n uintptr) int {
	if n <= 1024 {
		return int(sizeToClass16[(n+15)>>4])
	}
	return int(sizeToClassBig[(n-1024+1<<bigShift-1)>>bigShift])
}

// ClassOf is SizeClass in one load, for the fast paths: n <= MaxSize.
func ClassOf(n uintptr) uint8 { return sizeToClass[(n+15)>>4] }

// sizeToClass[(n+15)/16] is the class of a request of n <= MaxSize bytes:
// the two generated tables merged into one (2 KiB), so the fast path has
// no branch on the size.
var sizeToClass = func() (t [MaxSize/16 + 1]uint8) {
	for i := range t {
		t[i] = uint8(SizeClass(uintptr(i) * 16))
	}
	return t
}()

// ClassSize returns the block size of class c.
func ClassSize(c int) uintptr { return uintptr(classSize[c]) }

// AlignedClass returns the smallest class whose blocks hold n bytes and all
// start at a multiple of align (a power of two no larger than the page
// size), or -1 if there is none.
func AlignedClass(n, align uintptr) int {
	if n > MaxSize {
		return -1
	}
	for c := SizeClass(n); c < NumClasses; c++ {
		if uintptr(classSize[c])%align == 0 {
			return c
		}
	}
	return -1
}
