package zerocopy

import (
	"errors"
	"fmt"
	"runtime"
	"sync/atomic"

	"github.com/brkmap/alloc/internal/sys"
)

// Op names a system call this package makes, for Counts and for the
// tests' failure injection.
type Op int

const (
	OpSendfile Op = iota // sendfile(2)
	OpSplice             // splice(2)
	OpVmsplice           // vmsplice(2)
	OpSendmsg            // sendmsg(2) with MSG_ZEROCOPY
	OpErrqueue           // recvmsg(2) of MSG_ERRQUEUE (completions)
	OpRead               // read(2) or pread(2) into a buffer (fallbacks, Direct)
	OpWrite              // write(2) or pwrite(2) from a buffer (fallbacks, copying sends)
	OpOpen               // open(2) (Direct)
	numOps
)

var opNames = [numOps]string{"sendfile", "splice", "vmsplice", "sendmsg", "errqueue", "read", "write", "open"}

func (o Op) String() string {
	if o < 0 || o >= numOps {
		return fmt.Sprintf("Op(%d)", int(o))
	}
	return opNames[o]
}

// Counts is what this package has done since the process started (all
// goroutines, all connections): system calls by kind, and the bytes that
// crossed user space.
type Counts struct {
	// Calls is the number of system calls of each Op, refused ones
	// included.
	Calls [numOps]uint64
	// CopiedBytes counts bytes that went through a user-space buffer (a
	// fallback's read+write, a copying send): each such byte cost the CPU
	// two copies. Zero-copy paths add nothing here.
	CopiedBytes uint64
	// Completions counts MSG_ZEROCOPY completion notifications read, and
	// CopiedCompletions those the kernel satisfied by copying after all
	// (SO_EE_CODE_ZEROCOPY_COPIED: on loopback, every one).
	Completions, CopiedCompletions uint64
}

// Call returns the number of calls of op.
func (c Counts) Call(op Op) uint64 { return c.Calls[op] }

// kernel makes and counts every system call of this package: the
// project's counted wrapper, one value for the whole process (Counts are
// the process's). Its failure hook is set once, here, and asks failHook.
var kernel = sys.OS{Fail: func(op sys.Op, _ uint64) error {
	if f := failHook.Load(); f != nil {
		for o, so := range sysOps {
			if so == op {
				return (*f)(Op(o))
			}
		}
	}
	return nil
}}

// sysOps is each Op's name in the wrapper.
var sysOps = [numOps]sys.Op{sys.OpSendfile, sys.OpSplice, sys.OpVmsplice, sys.OpSendmsg,
	sys.OpErrqueue, sys.OpRead, sys.OpWrite, sys.OpOpen}

var counts struct {
	copied                         atomic.Uint64
	completions, copiedCompletions atomic.Uint64
}

// ReadCounts returns the counts so far.
func ReadCounts() Counts {
	var c Counts
	for i := range c.Calls {
		c.Calls[i] = kernel.Calls(sysOps[i])
	}
	c.CopiedBytes = counts.copied.Load()
	c.Completions = counts.completions.Load()
	c.CopiedCompletions = counts.copiedCompletions.Load()
	return c
}

// failHook, when set (tests only), is asked before every call; a non-nil
// error is returned as if the kernel had refused, and the call is not
// made.
var failHook atomic.Pointer[func(Op) error]

// Errors. Compare with errors.Is; the errors returned wrap them with the
// call and its arguments, and a kernel's refusal wraps its errno too.
var (
	// ErrInvalid: a negative offset or length, a nil file or connection.
	ErrInvalid = errors.New("zerocopy: invalid argument")
	// ErrPastEOF: the range [off, off+n) runs past the end of the file.
	ErrPastEOF = errors.New("zerocopy: range past end of file")
	// ErrMisaligned: an O_DIRECT transfer whose buffer address, offset or
	// length is not a multiple of the file's alignment.
	ErrMisaligned = errors.New("zerocopy: O_DIRECT needs aligned buffer, offset and length")
	// ErrClosed: a Pipe or Sender used after Close.
	ErrClosed = errors.New("zerocopy: use after Close")
	// ErrUnsupported: the path does not exist on this system (wraps
	// errors.ErrUnsupported); the functions that have a fallback take it
	// instead of returning this.
	ErrUnsupported = fmt.Errorf("zerocopy: not supported on %s: %w", runtime.GOOS, errors.ErrUnsupported)
)

// checkRange validates an (offset, length) pair.
func checkRange(what string, off, n int64) error {
	if off < 0 || n < 0 {
		return fmt.Errorf("%s: offset %d, length %d: %w", what, off, n, ErrInvalid)
	}
	if off > (1<<63-1)-n {
		return fmt.Errorf("%s: offset %d + length %d overflows: %w", what, off, n, ErrInvalid)
	}
	return nil
}

// fallbackBuf is the size of the buffer of every copying fallback: the
// read+write baseline's 64 KiB.
const fallbackBuf = 64 << 10
