package shm

import (
	"fmt"
	"unsafe"
)

// PageSize is the pool's page: the unit of its page runs and of large
// blocks. It is fixed (not the kernel's page size) so that a pool file is
// the same on every machine; a pool's size is a multiple of both.
const PageSize = 4096

// Version is the layout version written in every pool's header; Attach
// and Open refuse any other.
const Version = 1

const (
	magic = "brkmapSH"

	// A Ref is tag<<refShift | offset: the tag, drawn at random when the
	// pool is made, tells one pool's Refs from another's.
	refShift = 48
	offMask  = 1<<refShift - 1

	logCap    = 128 // undo-log entries: the worst operation writes about 40 words
	exactBins = 32  // free runs of 1..32 pages have a bin each
	numBins   = exactBins + 2
	bigBin    = exactBins + 1 // runs of more than 32 pages, first fit
	entrySize = 64            // bytes of a page-table entry
	minPages  = 8
)

// header is page 0 of every pool. Guarded by Lock, except the fields set
// once when the pool is made (Magic … Classes; Boot, which Open rewrites
// on the first attachment after a reboot) and Lock, LockGen and Root,
// which are atomics. Lock sits on a cache line of its own, away from the
// fields its holder writes.
type header struct {
	Magic     [8]byte
	Version   uint32
	PageSize  uint32
	Size      uint64 // bytes
	NPages    uint64
	FirstData uint64 // first page of the data area
	Tag       uint64 // the pool's Ref tag, 1..65535
	Classes   uint64 // number of size classes (a check: the table is part of the version)
	Boot      [16]byte
	_         [48]byte

	Lock    uint64 // 0, or the holder's pid<<32 | its generation
	LockGen uint64 // generation of the last acquisition (written by its holder)
	_       [48]byte

	Root       uint64 // the user's root Ref
	Recoveries uint64 // operations rolled back after their process died
	FreePages  uint64 // pages in free runs (changed only with the runs)
	_          [40]byte

	Bins    [numBins]uint64    // free runs, by pages: first page of each list (0 = empty)
	Partial [numClasses]uint64 // each class's slabs with a free block (0 = none)

	_   [40]byte // the log starts a cache line: N and the first entries share it
	Log undoLog
}

// undoLog is the intent record of the operation in progress: every
// metadata word it changes, with the value it had before. N is 0 when no
// operation is in progress. Written only by the lock's holder.
type undoLog struct {
	N     uint64 // entries in use (published after the entry is written)
	Owner uint64 // the lock word of the operation's process
	Op    uint64 // what the operation was (opAlloc, …), for diagnostics
	_     uint64
	Ent   [logCap]logEntry
}

type logEntry struct {
	Off uint64 // offset of the word in the pool
	Old uint64 // its value before the operation
}

// Operations, as the undo log records them.
const (
	opNone uint64 = iota
	opAlloc
	opFree
)

var _ [PageSize - unsafe.Sizeof(header{})]byte    // the header fits in page 0
var _ [-(unsafe.Offsetof(header{}.Log) % 64)]byte // the log starts a cache line

// entry is one page's row of the page table. Whose fields mean what
// depends on the page's kind (tag & kindMask):
//
//	kindFree      head/tail of a free run: value = pages; Next/Prev link
//	              the run into its bin (head only)
//	kindLarge     head of a large block: value = pages; Size = requested bytes
//	kindSlab      head of a slab: class, value = pages; Next/Prev link it
//	              into its class's partial list; Free, Used, Carved
//	kindSlabInner another page of a slab: value = the head's page
//	0             inside a free run or a large block
//
// Every entry is either 0 or true: when a run's boundaries move, the
// entries that stop being boundaries are cleared, so a Ref into the middle
// of a large block finds 0 and is refused. Guarded by the pool's lock.
type entry struct {
	Tag    uint64
	Next   uint64 // page index, 0 = none (page 0 is the header, never linked)
	Prev   uint64
	Free   uint64 // slab: offset of the first free block, 0 = none
	Used   uint64 // slab: live blocks
	Carved uint64 // slab: blocks ever handed out (the rest were never touched)
	Size   uint64 // large: requested bytes; freedLarge once freed
	_      uint64
}

var _ [entrySize - unsafe.Sizeof(entry{})]byte
var _ [unsafe.Sizeof(entry{}) - entrySize]byte

const (
	kindFree      = 1
	kindLarge     = 2
	kindSlab      = 3
	kindSlabInner = 4
	kindMask      = 0xf
	flagHead      = 1 << 4
	flagTail      = 1 << 5
	classShift    = 8
	valueShift    = 16
)

// freedLarge marks the first page of a freed large block (entry.Size), so
// that freeing it again is told as a double free even after its run was
// coalesced away. A run allocated over it overwrites the mark when it
// starts on that page.
const freedLarge = ^uint64(0)

func makeTag(kind, flags, class, value uint64) uint64 {
	return kind | flags | class<<classShift | value<<valueShift
}

func tagKind(t uint64) uint64  { return t & kindMask }
func tagClass(t uint64) uint64 { return t >> classShift & 0xff }
func tagValue(t uint64) uint64 { return t >> valueShift }

// slabClass returns the size class of the slab whose head tag is t,
// after checking t is a slab head's tag: a class past the table (a peer
// or a bad disk wrote the page table) panics with a corruption, which
// the method's guard turns into ErrCorrupt, instead of indexing past the
// class table.
func slabClass(t uint64) uint64 {
	c, ok := slabTag(t)
	if !ok {
		panic(corruption(fmt.Sprintf("slab head tag %#x", t)))
	}
	return c
}

// slabTag returns the class of the slab head tag t, and whether t is one
// (a class that exists, its page count, the head flag alone).
func slabTag(t uint64) (uint64, bool) {
	c := tagClass(t)
	return c, c < numClasses && t == makeTag(kindSlab, flagHead, c, classes[c].pages)
}

// tablePages is how many pages the page table of an npages pool takes.
func tablePages(npages uint64) uint64 {
	return (npages*entrySize + PageSize - 1) / PageSize
}
