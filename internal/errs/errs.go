// Package errs holds the allocator's error identities, shared by every
// layer (arena, slab, largealloc, the system-call wrapper) and exported by
// the root package as alloc.ErrOutOfMemory, alloc.ErrDoubleFree,
// alloc.ErrInvalidFree and alloc.ErrClosed. Layers wrap them with %w and
// context; callers compare with errors.Is. Their texts carry no package
// prefix (as os.ErrClosed's does not): every chain that wraps one begins
// with its layers' own ("alloc: 1048576 bytes in a mapping: largealloc:
// map …: out of memory"), and a prefix here would stutter.
package errs

// ErrNoMemory is what every layer wraps when memory cannot be had: the
// kernel refused, the reservation is full, or the budget (Config.Limit) is
// spent. The root package exports it as alloc.ErrOutOfMemory.
var ErrNoMemory = errorString("out of memory")

type errorString string

func (e errorString) Error() string { return string(e) }

// The errors of a bad free, shared by every layer; the root package exports
// them as alloc.ErrDoubleFree and alloc.ErrInvalidFree.
var (
	ErrDoubleFree  = errorString("double free")
	ErrInvalidFree = errorString("invalid free")
	ErrClosed      = errorString("allocator is closed")
)
