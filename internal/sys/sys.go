// Package sys is the allocator's one door to the kernel: the counted
// system-call wrapper, and nothing else (the error identities live in
// internal/errs, the commit budget in internal/budget, what the kernel
// publishes in /proc and /sys in internal/procfs).
//
// Every system call the allocator makes — mmap, munmap, mprotect, madvise,
// mremap, mincore and msync — goes through an *OS value, which counts it (so
// stats.Snapshot can report exactly how many calls a policy cost) and can be
// told by a test to fail at a chosen call (the seam through which kernel
// failures are injected). Each Allocator owns one OS value; the arena and
// largealloc packages receive it and never call golang.org/x/sys/unix
// themselves. Package zerocopy's transfers (sendfile, splice, vmsplice,
// sendmsg, read, write, open: io.go) go through one OS value of its own,
// whose counts are its ReadCounts.
//
// Concurrency: the counters are atomics, and the failure hook is set once
// before the OS value is shared (tests only).
package sys

import (
	"errors"
	"fmt"
	"runtime"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Op names a system call, for counters and for failure injection.
type Op int

const (
	OpMmap Op = iota
	OpMunmap
	OpMprotect
	OpMadvise
	OpMremap
	OpMincore
	OpMsync
	// The I/O calls of package zerocopy (io.go).
	OpSendfile // sendfile(2)
	OpSplice   // splice(2)
	OpVmsplice // vmsplice(2)
	OpSendmsg  // sendmsg(2)
	OpErrqueue // recvmsg(2) of MSG_ERRQUEUE
	OpRead     // read(2) or pread(2)
	OpWrite    // write(2) or pwrite(2)
	OpOpen     // open(2)
	numOps
)

var opNames = [numOps]string{"mmap", "munmap", "mprotect", "madvise", "mremap", "mincore", "msync",
	"sendfile", "splice", "vmsplice", "sendmsg", "errqueue", "read", "write", "open"}

func (o Op) String() string { return opNames[o] }

// PageSize is the kernel's page size, the unit of every mapping.
var PageSize = uintptr(unix.Getpagesize())

// OS counts and performs system calls for one allocator.
type OS struct {
	calls [numOps]atomic.Uint64

	// Fail, when set, is asked before every call; a non-nil error is
	// returned as if the kernel had refused, and the call is not made.
	// The count passed is the 1-based number of this op so far.
	Fail func(op Op, n uint64) error
}

// Calls returns how many calls of op have been made (including refused ones).
func (s *OS) Calls(op Op) uint64 { return s.calls[op].Load() }

func (s *OS) enter(op Op) error {
	n := s.calls[op].Add(1)
	if s.Fail != nil {
		return s.Fail(op, n)
	}
	return nil
}

// Mmap maps n bytes of anonymous private memory with the given protection
// and extra flags (for example MapNoReserve).
func (s *OS) Mmap(n uintptr, prot, flags int) (unsafe.Pointer, error) {
	if err := s.enter(OpMmap); err != nil {
		return nil, err
	}
	return unix.MmapPtr(-1, 0, nil, n, prot, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|flags)
}

// Munmap unmaps [p, p+n).
func (s *OS) Munmap(p unsafe.Pointer, n uintptr) error {
	if err := s.enter(OpMunmap); err != nil {
		return err
	}
	return unix.MunmapPtr(p, n)
}

// Mprotect changes the protection of [p, p+n).
func (s *OS) Mprotect(p unsafe.Pointer, n uintptr, prot int) error {
	if err := s.enter(OpMprotect); err != nil {
		return err
	}
	return unix.Mprotect(unsafe.Slice((*byte)(p), n), prot)
}

// Madvise gives advice about [p, p+n), for example unix.MADV_DONTNEED.
// MADV_DONTNEED means what it means on Linux everywhere: the pages are
// given back and read as zero when next touched (sys_other.go keeps that
// promise where the kernel's madvise does not).
func (s *OS) Madvise(p unsafe.Pointer, n uintptr, advice int) error {
	if err := s.enter(OpMadvise); err != nil {
		return err
	}
	return madvise(p, n, advice)
}

// Mremap resizes the mapping [p, p+old) to n bytes, moving it if it must.
// Only where HasMremap (Linux); elsewhere it returns ErrUnsupported.
func (s *OS) Mremap(p unsafe.Pointer, old, n uintptr) (unsafe.Pointer, error) {
	if err := s.enter(OpMremap); err != nil {
		return nil, err
	}
	return mremap(p, old, n, nil, mremapMayMove)
}

// ReleaseProtNone gives back the pages of [p, p+n), a range the caller
// has already made PROT_NONE, and leaves it PROT_NONE (Debug's quarantine
// of freed mappings): madvise(MADV_DONTNEED) on Linux; where madvise keeps
// the contents, fresh inaccessible pages mapped over it. Counted as a
// madvise.
func (s *OS) ReleaseProtNone(p unsafe.Pointer, n uintptr) error {
	if err := s.enter(OpMadvise); err != nil {
		return err
	}
	return releaseProtNone(p, n)
}

// remapZero replaces the pages of [p, p+n) with fresh anonymous ones of
// protection prot: the old pages go back to the kernel at once, and the
// range reads as zero. It is MADV_DONTNEED where madvise keeps the
// contents (sys_other.go); written once here so that Linux tests it too.
func remapZero(p unsafe.Pointer, n uintptr, prot int) error {
	_, err := unix.MmapPtr(-1, 0, p, n, prot, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_FIXED)
	return err
}

// ErrUnsupported is what the wrappers of calls this system lacks (mremap,
// MADV_HUGEPAGE outside Linux) return. Callers look at HasMremap and
// HasHugePages first and take their fallback instead.
var ErrUnsupported = fmt.Errorf("sys: not supported on %s: %w", runtime.GOOS, errors.ErrUnsupported)

// Resident returns how many bytes of [p, p+n) are resident in RAM, asking
// the kernel with mincore (ResidentPages). vec is scratch space, grown as
// needed.
func (s *OS) Resident(p unsafe.Pointer, n uintptr, vec *[]byte) (uintptr, error) {
	v, err := s.ResidentPages(p, n, vec)
	if err != nil {
		return 0, err
	}
	var r uintptr
	for _, b := range v {
		r += uintptr(b & 1)
	}
	return r * PageSize, nil
}

// MinorFaults returns the process's minor page faults so far (getrusage).
func MinorFaults() uint64 {
	var ru unix.Rusage
	if unix.Getrusage(unix.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return uint64(ru.Minflt)
}
