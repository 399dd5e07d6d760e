//go:build race

package arena

import (
	"sync/atomic"
	"unsafe"
)

func loadEntry(p *unsafe.Pointer) unsafe.Pointer { return atomic.LoadPointer(p) }

func storeEntry(p *unsafe.Pointer, v unsafe.Pointer) { atomic.StorePointer(p, v) }
