package alloc

import "github.com/brkmap/alloc/shm"

// SharedPool is a pool of memory shared between processes (package shm):
// the allocator's ideas over a file mapped MAP_SHARED, blocks named by
// offsets (Ref) that every process turns into its own slice.
type SharedPool = shm.Pool

// Ref names a block of a SharedPool in every process that maps the pool.
type Ref = shm.Ref

// NewShared makes a pool of size bytes shared between processes, over a
// memfd (Linux; elsewhere the error wraps errors.ErrUnsupported and
// shm.CreateFile makes one over a file). Hand its File to another process
// (exec.Cmd.ExtraFiles, or shm.SendFile over a Unix socket), which
// attaches with shm.Attach. Its bad frees wrap ErrInvalidFree and
// ErrDoubleFree, as the Allocator's do.
func NewShared(size int) (*SharedPool, error) { return shm.Create(size) }
