// Package shm is the allocator over memory that is not private to one
// process: a pool laid out in a file mapped MAP_SHARED — a memfd, a file
// under /dev/shm, or a regular file that outlives the process — that
// several processes allocate from and free into at once, each mapping it
// at its own address.
//
// The rest of this module hands out anonymous memory one process owns;
// the same ideas work here, with two changes forced by sharing:
//
//   - every piece of metadata lives inside the mapping (a header page, a
//     page table, the slabs' bitmaps), and every link is an offset, never
//     an address, since each process maps the pool elsewhere. A block is
//     named by a Ref (its offset, tagged with the pool's identity);
//     Pool.Bytes turns a Ref into a slice in this process;
//   - the lock is a word in the mapping, taken with atomics (spin, then
//     yield, then sleep: no futex), holding the owner's pid and a
//     sequence number, so that a process dying with it held is noticed
//     and its half-done operation undone.
//
// # Layout
//
//	page 0           header: magic, version, size, the lock, the undo log,
//	                 the root Ref, free-run bins, each class's partial slabs
//	pages 1..T       page table: 64 bytes a page (kind, links, slab state)
//	pages T+1..      data: free runs, large blocks (whole pages), slabs
//
// # How an allocation proceeds
//
//  1. Take the pool's lock (lock.go). If the undo log is not empty, the
//     previous holder died mid-operation: roll its changes back first.
//  2. A request up to 3 KiB is rounded up to one of 26 size classes
//     (classes.go). Pop a block from the first slab of the class's
//     partial list: its free list, else the next never-used block (slab.go).
//  3. If the class has no partial slab, carve a slab (1–8 pages) from the
//     free runs (pages.go): the smallest exact-size bin that has one,
//     else first fit among the large runs; the rest of the run goes back.
//  4. A larger request gets a run of whole pages of its own; freeing it
//     coalesces it with free neighbours through the page table's boundary
//     tags.
//  5. Every metadata word changed in steps 2–4 is first recorded (its
//     offset and old value) in the undo log in the header; the log is
//     emptied when the operation is complete, and the lock released.
//
// Recovery rolls back: a process that finds the lock held by a dead pid
// takes it over and restores every logged word in reverse order, so the
// pool is exactly as it was before the dead process's last operation
// began (an allocation it never saw did not happen; a free it did not
// finish leaves the block allocated). Blocks a dead process had allocated
// and not freed stay allocated: the pool cannot know whether it handed
// them on. Recovery is idempotent, so a process dying while recovering is
// recovered in turn.
//
// # Files
//
// A pool over a regular file persists: Sync writes it back (msync), and
// Open finds it again after a restart — every block live at the last
// Sync, reachable from the root Ref the program sets — after checking the
// header and rolling back an operation a crash left half done. Access to a
// pool whose file was truncated under it faults (SIGBUS); every method of
// Pool, and the Read and Write accessors, turn that fault into an error
// wrapping ErrFault instead of a crash (debug.SetPanicOnFault on the
// calling goroutine). Slices from Bytes are not guarded: a program that
// fears truncation reads and writes through Read and Write.
//
// Concurrency: a Pool is safe for concurrent use by goroutines and by
// processes; each process attaches once (or more: each attachment is an
// independent mapping) and Closes when done.
package shm
