//go:build !race

package arena

import (
	"sync/atomic"
	"unsafe"
)

// Page-map entries are read with an atomic load (a plain load on amd64 and
// arm64's load-acquire) and, under the region's lock, written with a plain
// store: an aligned pointer store is single-copy atomic on every platform
// Go supports, and the Go compiler never splits one (the garbage collector
// relies on that too). An atomic store would be an XCHG on amd64, and a
// mid-size block writes one entry per page: 64 of them for 256 KiB, which
// the dynamic threshold's repeated buffers pay on every allocation. The
// race build (entry_race.go) uses atomic stores, so the detector sees
// synchronized accesses.

func loadEntry(p *unsafe.Pointer) unsafe.Pointer { return atomic.LoadPointer(p) }

func storeEntry(p *unsafe.Pointer, v unsafe.Pointer) { *p = v }
