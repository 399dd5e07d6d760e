// Package errs holds the allocator's error identities, shared by every
// layer (arena, slab, largealloc, the system-call wrapper) and exported by
// the root package as alloc.ErrOutOfMemory, alloc.ErrDoubleFree,
// alloc.ErrInvalidFree and alloc.ErrClosed. Layers wrap them with %w and
// context; callers compare with errors.Is.
package errs

// ErrNoMemory is what every layer wraps when memory cannot be had: the
// kernel refused, the reservation is full, or the budget (Config.Limit) is
// spent. The root package exports it as alloc.ErrOutOfMemory.
var ErrNoMemory = errorString("alloc: out of memory")

type errorString string

func (e errorString) Error() string { return string(e) }

// The errors of a bad free, shared by every layer; the root package exports
// them as alloc.ErrDoubleFree and alloc.ErrInvalidFree.
var (
	ErrDoubleFree  = errorString("alloc: double free")
	ErrInvalidFree = errorString("alloc: invalid free")
	ErrClosed      = errorString("alloc: allocator is closed")
)
