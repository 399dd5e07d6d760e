// Package stats is the measuring side of the allocator: what each policy
// costs in memory, system calls and time, so that the brk-like region, one
// mapping per block, and the threshold between them can be compared on the
// same workload.
//
// A Snapshot is taken by Allocator.Stats. Its counters are kept as
// operations happen, by the layer that does the work (live blocks and
// bytes by the slab classes, the region and the mapping registry; system
// calls by the one wrapper every call goes through), so a snapshot is exact
// when no operation is in flight. Resident is never derived from those
// counters: it is measured, by asking the kernel with mincore which pages of
// this allocator's own mappings (the region up to its break, and every live
// large mapping) are in RAM. MinorFaults comes from getrusage and is for
// the whole process. HugeResident, the part of Resident in transparent huge
// pages, is read from /proc/self/smaps for this allocator's own mappings.
//
// The vocabulary follows glibc's mallinfo2 where it has a word for the
// thing: ArenaBytes is its arena, MmapCount/MmapBytes its hblks/hblkhd,
// LiveBytes its uordblks, FreeBytes its fordblks and TopFreeBytes its
// keepcost.
//
// Off-heap memory is invisible to the Go runtime's own tools, so stats
// gives it theirs: HeapProfile is a heap profile of live off-heap
// allocations in pprof's format, sampled by bytes and scaled as Go's heap
// profile is (profile.go). Package statshttp serves it and the Snapshot to
// a service's debug port and to expvar, and package metrics to Prometheus;
// both take an allocator through an interface, so stats never imports the
// allocator, and stats itself links no net/http and registers nothing.
package stats
