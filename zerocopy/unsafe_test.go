package zerocopy_test

import "unsafe"

// unsafeData is a block's address, to tell blocks apart.
func unsafeData(b []byte) *byte { return unsafe.SliceData(b) }
