// Package arena is the brk-like region: one large range of address space,
// reserved once, whose "break" moves up as memory is needed and down when
// the top of the region is free.
//
// Where it sits in the allocation path (see the root package for the whole
// picture): the slab package asks it for page runs to carve into blocks of
// one size class, and the root package asks it directly for runs that serve
// mid-size requests (larger than the largest size class, smaller than the
// mmap threshold) and, under PolicyBrk, everything else too; and the
// chunks of request arenas (alloc.Scratch: KindScratch runs, bump
// allocated by their owner and given back whole with FreeRuns, which
// leaves a free top to the purge instead of trimming it in the call).
//
// The life of the region:
//
//  1. New reserves Config.Reserve bytes with mmap(PROT_NONE, MAP_NORESERVE):
//     address space only, no memory. Every small block therefore lives at a
//     known offset from one base, and the page map below finds its run by
//     arithmetic.
//  2. Alloc looks for a free run (best fit among free runs; exact-size
//     buckets up to 127 pages, then one list of the big ones). If none fits
//     it moves the break up with mprotect(PROT_READ|PROT_WRITE), by what is
//     missing plus TopPad, as glibc's sbrk(nb + M_TOP_PAD).
//  3. Free turns a run back into a free run and coalesces it with free
//     neighbours. If the merged run touches the break and is at least
//     TrimThreshold long, the break moves down, keeping TopPad:
//     madvise(MADV_DONTNEED) then mprotect(PROT_NONE).
//  4. A free run below a live run cannot be given back by moving the break:
//     its pages stay resident ("trapped"), which is exactly the glibc
//     fragmentation story. Trim releases every free run with one madvise
//     per run (runs are coalesced, so this is as few calls as it can be),
//     then moves the break down to the last live run, like malloc_trim(0).
//  5. With Config.Purge, a free run is released by itself once it has
//     been free for PurgeDelay (the top one moves the break down, keeping
//     TopPad), by Free, Purge, or a one-shot timer armed while dirty runs
//     wait (purge.go).
//
// The page map holds, for every page below the break, the run that owns it:
// every page of a run in use, and the first and last page of a free run.
// It is a two-level table of atomic pointers, so Lookup takes no lock: the
// fields it exposes without a lock (Kind, Start of a live run) are
// fixed before the run is published.
//
// With Config.HugePageSize set, the reservation is huge-page aligned and
// advised MADV_HUGEPAGE, and the break moves in whole huge pages (huge.go).
//
// Concurrency: one mutex per Region guards the break, the free runs and the
// counters. Lookup is lock-free. The system calls that give pages back
// (the purge, the top trimmed by Free, Trim) are made without the mutex:
// the runs they release are taken out of the free runs first and put back
// known zero after (purge.go), so a release of 64 MiB does not hold up the
// other goroutines' Alloc and Free.
package arena
