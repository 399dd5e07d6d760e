package shm

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"runtime/debug"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/brkmap/alloc/internal/errs"
	"github.com/brkmap/alloc/internal/sys"
)

// Errors. Bad frees wrap the module's own identities, so errors.Is(err,
// alloc.ErrDoubleFree) and errors.Is(err, alloc.ErrInvalidFree) hold for a
// pool's errors as for an Allocator's.
var (
	ErrInvalidSize = errors.New("shm: invalid size")
	ErrNoMemory    = errs.ErrNoMemory
	ErrDoubleFree  = errs.ErrDoubleFree
	ErrInvalidFree = errs.ErrInvalidFree
	ErrClosed      = errs.ErrClosed
	// ErrInvalidRef: a Ref that does not name a live block of this pool
	// (another pool's, out of range, inside a block, free).
	ErrInvalidRef = errors.New("shm: invalid ref")
	// ErrNotPool: the file does not begin with a pool header.
	ErrNotPool = errors.New("shm: not a pool")
	// ErrVersion: a pool of another layout version.
	ErrVersion = errors.New("shm: unsupported pool version")
	// ErrTooSmall: the file is shorter than the pool it holds (truncated),
	// or a size too small for a pool was asked for.
	ErrTooSmall = errors.New("shm: file too small")
	// ErrCorrupt: the pool's metadata breaks an invariant (Check says which).
	ErrCorrupt = errors.New("shm: pool metadata is corrupt")
	// ErrFault: an access to the pool faulted — its file was truncated
	// under this mapping — and was turned into this error.
	ErrFault = errors.New("shm: memory fault in the pool (file truncated?)")
	// ErrUnsupported: this system lacks what was asked for (memfd).
	ErrUnsupported = fmt.Errorf("shm: %w", errors.ErrUnsupported)
)

// Ref names a block of a pool in every process that maps it: the block's
// offset from the start of the pool (Offset), tagged with the pool's
// identity so that another pool's Ref is refused. The zero Ref names no
// block.
type Ref uint64

// Offset is the block's offset in the pool's file: what pread, sendfile
// or splice on Pool.File need.
func (r Ref) Offset() uint64 { return uint64(r) & offMask }

func (r Ref) String() string { return fmt.Sprintf("shm.Ref(%#x@%#x)", uint64(r)>>refShift, r.Offset()) }

// Pool is one process's attachment to a shared pool. Its methods are safe
// for concurrent use; the pool itself is shared with every process that
// attached to the same file. The fields are set once by Create or Attach.
type Pool struct {
	h      *header
	base   unsafe.Pointer
	size   uint64
	npages uint64 // size / PageSize: bounds every page index followed
	mapped uint64 // bytes mapped: the file's size when attached (≥ size)
	f      *os.File
	os     sys.OS
	pid    uint64

	// closed is set by Close; users counts the calls in progress, which
	// Close waits for before it unmaps (use, done).
	closed atomic.Bool
	users  atomic.Int64
	hook   func() // tests: called at every step of an operation
}

// Create makes a pool of size bytes (rounded up to whole pages) over a
// new memfd: memory shared by whoever is handed its file (Pool.File, sent
// with SendFile or given to a child in exec.Cmd.ExtraFiles), gone when the
// last process closes it. Linux only; elsewhere ErrUnsupported (use
// CreateFile).
func Create(size int) (*Pool, error) {
	f, err := memfd("brkmap-shm")
	if err != nil {
		return nil, fmt.Errorf("shm: create %d bytes: %w", size, err)
	}
	p, err := newPool(f, size)
	if err != nil {
		f.Close()
		return nil, err
	}
	return p, nil
}

// CreateFile makes a pool of size bytes in a new file at path (it must
// not exist): a regular file for a pool that persists (Sync, then Open
// after a restart), or a file under /dev/shm for a named pool in memory.
func CreateFile(path string, size int) (*Pool, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("shm: %w", err)
	}
	p, err := newPool(f, size)
	if err != nil {
		f.Close()
		os.Remove(path)
		return nil, err
	}
	return p, nil
}

// Open attaches to the pool in the file at path, made earlier by
// CreateFile, perhaps by a process that has since died. It checks the
// header, rolls back an operation left half done by a crash, and runs
// Check: a pool that does not pass is refused (ErrCorrupt).
func Open(path string) (*Pool, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("shm: %w", err)
	}
	p, err := attach(f)
	if err != nil {
		f.Close()
		return nil, err
	}
	p.claimBoot()
	if _, err := p.Check(); err != nil {
		p.Close()
		return nil, fmt.Errorf("shm: open %s: %w", path, err)
	}
	return p, nil
}

// Attach maps the pool in f, a pool's file received from another process
// (RecvFile, or an inherited ExtraFiles descriptor). The Pool takes f over:
// Close closes it.
func Attach(f *os.File) (*Pool, error) { return attach(f) }

func newPool(f *os.File, size int) (*Pool, error) {
	ps := max(PageSize, int(sys.PageSize))
	if size < minPages*PageSize || size > offMask {
		return nil, fmt.Errorf("shm: a pool of %d bytes (at least %d): %w", size, minPages*PageSize, ErrInvalidSize)
	}
	size = (size + ps - 1) / ps * ps
	npages := uint64(size) / PageSize
	first := 1 + tablePages(npages)
	if first+minPages/2 > npages {
		return nil, fmt.Errorf("shm: a pool of %d bytes leaves no room for data: %w", size, ErrInvalidSize)
	}
	if err := f.Truncate(int64(size)); err != nil {
		return nil, fmt.Errorf("shm: size the pool's file: %w", err)
	}
	p, err := mapPool(f, uint64(size))
	if err != nil {
		return nil, err
	}
	h := p.h
	h.Version = Version
	h.PageSize = PageSize
	h.Size = uint64(size)
	h.NPages = npages
	h.FirstData = first
	h.Tag = 1 + rand.Uint64N(1<<(64-refShift)-1)
	h.Classes = numClasses
	h.Boot = bootID()
	// One free run of every data page. Not shared yet: no lock; the log
	// is committed at once.
	p.markFreeLocked(first, npages-first)
	p.linkRunLocked(first, npages-first)
	h.FreePages = npages - first
	p.commit()
	copy(h.Magic[:], magic) // last: a header with its magic is complete
	return p, nil
}

func attach(f *os.File) (*Pool, error) {
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("shm: %w", err)
	}
	if fi.Size() < PageSize {
		return nil, fmt.Errorf("shm: %s is %d bytes, less than a header: %w", f.Name(), fi.Size(), ErrTooSmall)
	}
	p, err := mapPool(f, uint64(fi.Size()))
	if err != nil {
		return nil, err
	}
	if err := p.checkHeader(uint64(fi.Size())); err != nil {
		p.unmap()
		return nil, fmt.Errorf("shm: attach %s: %w", f.Name(), err)
	}
	return p, nil
}

// checkHeader checks the header of a file of fileSize bytes, just mapped.
func (p *Pool) checkHeader(fileSize uint64) error {
	h := p.h
	switch {
	case string(h.Magic[:]) != magic:
		return ErrNotPool
	case h.Version != Version:
		return fmt.Errorf("version %d, this package reads %d: %w", h.Version, Version, ErrVersion)
	case h.PageSize != PageSize || h.Classes != numClasses:
		return fmt.Errorf("page size %d and %d classes: %w", h.PageSize, h.Classes, ErrVersion)
	case h.Size > fileSize:
		return fmt.Errorf("the pool is %d bytes, its file %d: %w", h.Size, fileSize, ErrTooSmall)
	case h.Size < minPages*PageSize || h.NPages != h.Size/PageSize || h.FirstData != 1+tablePages(h.NPages) ||
		h.Tag == 0 || h.Tag >= 1<<(64-refShift):
		return fmt.Errorf("header: size %d, %d pages, data from page %d, tag %#x: %w", h.Size, h.NPages, h.FirstData, h.Tag, ErrCorrupt)
	}
	p.size, p.npages = h.Size, h.NPages
	return nil
}

func mapPool(f *os.File, size uint64) (*Pool, error) {
	p := &Pool{f: f, size: size, npages: size / PageSize, mapped: size, pid: uint64(os.Getpid())}
	base, err := p.os.MmapShared(int(f.Fd()), uintptr(size))
	if err != nil {
		return nil, fmt.Errorf("shm: map %d bytes: %w", size, err)
	}
	p.base = base
	p.h = (*header)(base)
	return p, nil
}

func (p *Pool) unmap() {
	p.os.Munmap(p.base, uintptr(p.mapped))
}

// Close unmaps the pool from this process and closes its file, once the
// calls in progress on it have returned (a call waiting for the pool's
// lock gives up with ErrClosed); every later call returns ErrClosed. The
// pool lives on in the other processes that map it (and in its file).
// Slices from this Pool must not be used afterwards.
func (p *Pool) Close() error {
	if p.closed.Swap(true) {
		return fmt.Errorf("shm: close: %w", ErrClosed)
	}
	for i := 0; p.users.Load() != 0; i++ {
		if i < yieldIters {
			runtime.Gosched()
		} else {
			time.Sleep(sleepFor)
		}
	}
	err := p.os.Munmap(p.base, uintptr(p.mapped))
	if cerr := p.f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("shm: close: %w", err)
	}
	return nil
}

// File returns the pool's file: hand it to another process to share the
// pool (SendFile, exec.Cmd.ExtraFiles), or read a block's bytes from it at
// Ref.Offset (sendfile, splice). It stays owned by the Pool.
func (p *Pool) File() *os.File { return p.f }

// Size returns the pool's size in bytes.
func (p *Pool) Size() int { return int(p.size) }

// Alloc allocates a block of n bytes and returns its Ref and a slice of
// its n bytes in this process (contents unspecified). Requests up to
// MaxSmall bytes come from slabs; larger ones get whole pages. Fails with
// ErrNoMemory when the pool has no room: a pool does not grow.
func (p *Pool) Alloc(n int) (r Ref, b []byte, err error) {
	if n < 0 || uint64(n) > p.size {
		return 0, nil, fmt.Errorf("shm: alloc %d bytes: %w", n, ErrInvalidSize)
	}
	var off uint64
	if err := p.locked(opAlloc, func() (err error) {
		off, err = p.allocLocked(n)
		return err
	}); err != nil {
		return 0, nil, fmt.Errorf("shm: alloc %d bytes: %w", n, err)
	}
	return p.ref(off), unsafe.Slice((*byte)(unsafe.Add(p.base, off)), n), nil
}

func (p *Pool) allocLocked(n int) (off uint64, err error) {
	if n <= MaxSmall {
		off, err = p.allocSmallLocked(uint64(classOf(n)))
	} else {
		pages := (uint64(n) + PageSize - 1) / PageSize
		r := p.allocRunLocked(pages, makeTag(kindLarge, flagHead, 0, pages))
		if r == 0 {
			return 0, fmt.Errorf("no free run of %d pages: %w", pages, ErrNoMemory)
		}
		p.set(&p.ent(r).Size, uint64(n))
		off = r * PageSize
	}
	if err != nil {
		return 0, err
	}
	return off, nil
}

// Free frees the block r names. A Ref that is not a live block of this
// pool — another pool's, inside a block, already freed — is refused with
// an error wrapping ErrInvalidFree or ErrDoubleFree, and nothing changes.
func (p *Pool) Free(r Ref) (err error) {
	if r == 0 {
		return nil
	}
	if err := p.locked(opFree, func() error {
		off, err := p.offset(r)
		if err != nil {
			return fmt.Errorf("%w: %w", ErrInvalidFree, err)
		}
		return p.freeLocked(off)
	}); err != nil {
		return fmt.Errorf("shm: free %v: %w", r, err)
	}
	return nil
}

func (p *Pool) freeLocked(off uint64) error {
	kind, head, err := p.locateLocked(off)
	if err != nil {
		return err
	}
	if kind == kindSlab {
		return p.freeSmallLocked(head, off)
	}
	p.set(&p.ent(head).Size, freedLarge) // so that a second free says double free
	p.freeRunLocked(head, tagValue(p.ent(head).Tag))
	return nil
}

// locateLocked finds what holds offset off: a slab (kindSlab and its head
// page) or the start of a large block (kindLarge and its page).
func (p *Pool) locateLocked(off uint64) (kind, head uint64, err error) {
	pg := off / PageSize
	if pg < p.h.FirstData || pg >= p.h.NPages {
		return 0, 0, fmt.Errorf("offset %#x is outside the data pages: %w", off, ErrInvalidFree)
	}
	t := p.ent(pg).Tag
	switch tagKind(t) {
	case kindSlabInner:
		s := tagValue(t)
		if s >= pg || s < p.h.FirstData || tagKind(p.ent(s).Tag) != kindSlab {
			return 0, 0, fmt.Errorf("page %d names slab %d: %w", pg, s, ErrCorrupt)
		}
		slabClass(p.ent(s).Tag)
		return kindSlab, s, nil
	case kindSlab:
		slabClass(t)
		return kindSlab, pg, nil
	case kindLarge:
		if off != pg*PageSize {
			return 0, 0, fmt.Errorf("%#x is inside a large block: %w", off, ErrInvalidFree)
		}
		return kindLarge, pg, nil
	case kindFree:
		if off == pg*PageSize && t&flagHead != 0 {
			return 0, 0, fmt.Errorf("%#x is a free run: %w", off, ErrDoubleFree)
		}
		return 0, 0, fmt.Errorf("%#x is in a free run: %w", off, ErrInvalidFree)
	case 0:
		if off == pg*PageSize && p.ent(pg).Size == freedLarge {
			return 0, 0, fmt.Errorf("%#x was a large block, freed (or is inside one allocated since): %w", off, ErrDoubleFree)
		}
		return 0, 0, fmt.Errorf("%#x is inside a large block or a free run: %w", off, ErrInvalidFree)
	}
	return 0, 0, fmt.Errorf("page %d has tag %#x: %w", pg, t, ErrCorrupt)
}

// Bytes returns the live block r names as a slice of its usable bytes in
// this process (at least the size it was allocated with: the rest of its
// size class, or of its last page). A Ref that is not a live block of this
// pool is refused with ErrInvalidRef. The slice is not guarded against a
// truncated file: use Read and Write where that may happen.
func (p *Pool) Bytes(r Ref) (b []byte, err error) {
	var off, n uint64
	if err := p.locked(opNone, func() (err error) {
		if off, err = p.offset(r); err != nil {
			return err
		}
		if n, err = p.usableLocked(off); err != nil {
			return fmt.Errorf("%w: %w", ErrInvalidRef, err)
		}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("shm: bytes of %v: %w", r, err)
	}
	return unsafe.Slice((*byte)(unsafe.Add(p.base, off)), n), nil
}

// usableLocked returns the usable size of the live block at off.
func (p *Pool) usableLocked(off uint64) (uint64, error) {
	kind, head, err := p.locateLocked(off)
	if err != nil {
		return 0, err
	}
	e := p.ent(head)
	if kind == kindLarge {
		return tagValue(e.Tag) * PageSize, nil
	}
	k := &classes[slabClass(e.Tag)]
	if _, err := p.liveBlockLocked(head, k, off); err != nil {
		return 0, err
	}
	return k.size, nil
}

// SetRoot records r as the pool's root: the one Ref a program finds again
// after Open (a table of its other blocks, say). Zero clears it.
func (p *Pool) SetRoot(r Ref) (err error) {
	if !p.use() {
		return fmt.Errorf("shm: set root: %w", ErrClosed)
	}
	defer p.done()
	defer p.unguard(debug.SetPanicOnFault(true), nil, &err)
	if r != 0 {
		if _, err := p.offset(r); err != nil {
			return err
		}
	}
	atomic.StoreUint64(&p.h.Root, uint64(r))
	return nil
}

// Root returns the Ref last given to SetRoot, or 0.
func (p *Pool) Root() (r Ref, err error) {
	if !p.use() {
		return 0, fmt.Errorf("shm: root: %w", ErrClosed)
	}
	defer p.done()
	defer p.unguard(debug.SetPanicOnFault(true), nil, &err)
	return Ref(atomic.LoadUint64(&p.h.Root)), nil
}

// Sync writes the pool back to its file and waits (msync MS_SYNC): after
// it returns, the pool as it stands survives a crash of the machine, not
// only of the process (a process's death alone loses nothing: the pages
// are the kernel's).
func (p *Pool) Sync() error {
	if !p.use() {
		return fmt.Errorf("shm: sync: %w", ErrClosed)
	}
	defer p.done()
	if err := p.os.Msync(p.base, uintptr(p.size)); err != nil {
		return fmt.Errorf("shm: sync: %w", err)
	}
	return nil
}

// Stats is a pool's state, read under its lock.
type Stats struct {
	Size       uint64 // bytes
	FreePages  uint64 // pages in free runs
	LiveBlocks uint64
	LiveBytes  uint64 // usable bytes of the live blocks
	Recoveries uint64 // operations rolled back after their process died
	Msync      uint64 // msync calls by this attachment
}

// Stats returns the pool's counters. The live blocks are counted by a
// walk of the page table (no operation pays for a shared counter), so it
// takes time in proportion to the pool's size, under the lock: about a
// millisecond a GiB.
func (p *Pool) Stats() (s Stats, err error) {
	if err := p.locked(opNone, func() error { s = p.statsLocked(); return nil }); err != nil {
		return Stats{}, fmt.Errorf("shm: stats: %w", err)
	}
	return s, nil
}

// statsLocked counts the live blocks by a walk of the page table.
func (p *Pool) statsLocked() Stats {
	h := p.h
	s := Stats{Size: h.Size, FreePages: h.FreePages,
		Recoveries: atomic.LoadUint64(&h.Recoveries), Msync: p.os.Calls(sys.OpMsync)}
	for pg := h.FirstData; pg < h.NPages; {
		e := p.ent(pg)
		n := max(tagValue(e.Tag), 1)
		switch tagKind(e.Tag) {
		case kindLarge:
			s.LiveBlocks++
			s.LiveBytes += n * PageSize
		case kindSlab:
			s.LiveBlocks += e.Used
			s.LiveBytes += e.Used * classes[slabClass(e.Tag)].size
		}
		pg += n
	}
	return s
}

// use counts a call in progress, so that Close waits for it before it
// unmaps the pool; false (and nothing counted) once Close has begun. The
// count goes up before closed is read, and Close sets closed before it
// reads the count: a call that saw the pool open is waited for. Every
// method that touches the mapping calls use first and defers done before
// anything else (its fault guard included), so that done runs last.
func (p *Pool) use() bool {
	p.users.Add(1)
	if p.closed.Load() {
		p.users.Add(-1)
		return false
	}
	return true
}

// done ends a call counted by use.
func (p *Pool) done() { p.users.Add(-1) }

// locked is the frame of every call that takes the pool's lock: counted
// by use (Close waits for it), under the fault guard (a fault or a
// corruption panic is an error, the operation rolled back), with the lock
// held while fn runs. For op other than opNone, fn's changes are logged
// as operation op and committed, or rolled back if fn fails; with opNone
// fn changes nothing. Its errors are returned unwrapped, for the caller
// to name its call.
func (p *Pool) locked(op uint64, fn func() error) (err error) {
	if !p.use() {
		return ErrClosed
	}
	defer p.done()
	var held opState
	defer p.unguard(debug.SetPanicOnFault(true), &held, &err)
	if err := p.lock(&held); err != nil {
		return err
	}
	if op == opNone {
		err = fn()
		p.unlock(&held)
		return err
	}
	p.begin(op)
	return p.end(fn(), &held)
}

func (p *Pool) ref(off uint64) Ref { return Ref(p.h.Tag<<refShift | off) }

// offset checks that r is one of this pool's Refs and returns its offset.
func (p *Pool) offset(r Ref) (uint64, error) {
	if uint64(r)>>refShift != p.h.Tag {
		return 0, fmt.Errorf("%v is another pool's (this pool's tag is %#x): %w", r, p.h.Tag, ErrInvalidRef)
	}
	off := r.Offset()
	if off < p.h.FirstData*PageSize || off >= p.size {
		return 0, fmt.Errorf("%v is outside the pool's data: %w", r, ErrInvalidRef)
	}
	return off, nil
}

// ent returns page i's page-table entry. An index out of range means the
// metadata is corrupt: it panics with a corruption, which the method's
// guard turns into ErrCorrupt after rolling the operation back.
func (p *Pool) ent(i uint64) *entry {
	if i >= p.npages {
		panic(corruption(fmt.Sprintf("page %d of %d", i, p.npages)))
	}
	return (*entry)(unsafe.Add(p.base, PageSize+i*entrySize))
}

// word returns the word at offset off, which must be in the pool.
func (p *Pool) word(off uint64) *uint64 {
	if off%8 != 0 || off+8 > p.size {
		panic(corruption(fmt.Sprintf("word at %#x of %#x", off, p.size)))
	}
	return (*uint64)(unsafe.Add(p.base, off))
}

// claimBoot, on Open: a lock word left by a process of an earlier boot of
// the machine names a pid that may now be anyone's (even this process's),
// so it is cleared before the lock is first taken; the undo log it left is
// rolled back by that first lock, as for any dead holder.
func (p *Pool) claimBoot() {
	id := bootID()
	if id == ([16]byte{}) || p.h.Boot == id {
		return
	}
	if w := atomic.LoadUint64(&p.h.Lock); w != 0 {
		atomic.CompareAndSwapUint64(&p.h.Lock, w, 0)
	}
	p.h.Boot = id
}
