// Package largealloc gives each large block its own anonymous mapping.
//
// Its part of the allocation path: a request at or above the mmap threshold
// (PolicyThreshold), or every request (PolicyMmap), becomes one
// mmap(MAP_PRIVATE|MAP_ANONYMOUS) of the size rounded up to pages, and Free
// gives it back at once with munmap — the memory leaves the process the
// moment it is freed, at the price of two system calls and a page fault per
// page touched, every time. Realloc grows or shrinks a mapping with mremap,
// which moves pages instead of copying bytes.
//
// A registry of live mappings, keyed by block address, makes a second free,
// a foreign pointer or an interior pointer an error instead of an munmap of
// someone else's memory. It is sharded by address, each shard under its own
// mutex, so goroutines working on different blocks do not wait for each
// other; system calls are made outside the shard locks.
//
// Blocks with an alignment above the page size are mapped with room to
// spare and the head and tail unmapped, so the block starts aligned. With
// huge pages on (SetHugePages), every block of at least a huge page is so
// aligned to a huge page and advised MADV_HUGEPAGE (huge.go).
//
// At the kernel's map-count limit (vm.max_map_count) munmap of a block in
// the middle of merged mappings is refused, since it would split one: Free
// then releases the block's pages with madvise and keeps the range on a
// deferred list, reused by the next block of its size and unmapped by Trim
// (UnmapDeferred) or Close. Close unmaps from the highest address down,
// which never splits a merged mapping, and tries again what is refused.
package largealloc
