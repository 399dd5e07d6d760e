package zerocopy

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// DirectAlign is the alignment Direct asks of a buffer's address, an
// offset and a length when it bypasses the page cache: a page, which is
// a multiple of every disk's logical block. A block from
// Allocator.AlignedAlloc(DirectAlign, n) with n a multiple of it fits.
const DirectAlign = 4096

// Direct is a file opened for reading with O_DIRECT where the filesystem
// allows it: ReadAt has the device write straight into the caller's
// block, with no copy by the CPU and without filling the page cache (for
// data read once, a cache that would only evict something useful).
//
// Not every filesystem takes O_DIRECT: tmpfs refused it (EINVAL) before
// Linux 6.6, and so do some FUSE and network filesystems; macOS has no
// O_DIRECT at all. Then Direct reads through the page cache (one copy),
// Bypass reports false, and no alignment is asked. A filesystem that
// accepts the flag at open but refuses a read (EINVAL) is handled the same
// way: the file is reopened without it and the read made again.
//
// A Direct is safe for concurrent use.
type Direct struct {
	name   string
	mu     sync.RWMutex // guards f and bypass (swapped by the fallback)
	f      *os.File
	bypass bool
}

// OpenDirect opens name for reading, with O_DIRECT when the filesystem
// takes it.
func OpenDirect(name string) (*Direct, error) {
	d := &Direct{name: name}
	f, bypass, err := openDirect(name, oDirect != 0)
	if err != nil {
		return nil, &os.PathError{Op: "zerocopy: open direct", Path: name, Err: err}
	}
	d.f, d.bypass = f, bypass
	return d, nil
}

// openDirect opens name with O_DIRECT if want, falling back to a plain
// open when the filesystem refuses the flag.
func openDirect(name string, want bool) (*os.File, bool, error) {
	if want {
		fd, err := kernel.Open(name, unix.O_RDONLY|unix.O_CLOEXEC|oDirect, 0)
		if err == nil {
			return os.NewFile(uintptr(fd), name), true, nil
		}
		if !errors.Is(err, unix.EINVAL) {
			return nil, false, err
		}
	}
	fd, err := kernel.Open(name, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, false, err
	}
	return os.NewFile(uintptr(fd), name), false, nil
}

// Bypass reports whether reads bypass the page cache (O_DIRECT in
// effect).
func (d *Direct) Bypass() bool {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return d.bypass
}

// Align returns what ReadAt asks buffers, offsets and lengths to be
// multiples of: DirectAlign when bypassing the cache, else 1.
func (d *Direct) Align() int {
	if d.Bypass() {
		return DirectAlign
	}
	return 1
}

// File returns the open file (for SendFile, Stat); it changes if a read
// falls back.
func (d *Direct) File() *os.File {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return d.f
}

// ReadAt reads len(b) bytes at off into b (io.ReaderAt: fewer only with
// an error, io.EOF at the end of the file). Bypassing the cache, b's
// address, len(b) and off must be multiples of DirectAlign, or the
// error is ErrMisaligned (the end of the file need not be aligned: the
// last read is short). A negative off is ErrInvalid.
func (d *Direct) ReadAt(b []byte, off int64) (int, error) {
	if err := checkRange("zerocopy: direct read", off, int64(len(b))); err != nil {
		return 0, err
	}
	done := 0
	for done < len(b) {
		// The read lock is held across the read: a fallback (or Close)
		// closes the file only once no read is using it.
		d.mu.RLock()
		f, bypass := d.f, d.bypass
		if bypass && !aligned(b[done:], off+int64(done)) {
			d.mu.RUnlock()
			return done, fmt.Errorf("zerocopy: direct read of %d bytes at %d into %p: %w", len(b)-done, off+int64(done), unsafe.SliceData(b), ErrMisaligned)
		}
		var n int
		err := withFile("zerocopy: direct read", f, func(fd int) error {
			var err error
			n, err = kernel.Pread(fd, b[done:], off+int64(done))
			return err
		})
		d.mu.RUnlock()
		switch {
		case retry(err):
			continue
		case bypass && errors.Is(err, unix.EINVAL):
			if ferr := d.fallBack(f); ferr != nil {
				return done, ferr
			}
			continue
		case err != nil:
			return done, fmt.Errorf("zerocopy: direct read at %d: %w", off+int64(done), err)
		case n == 0:
			return done, io.EOF
		}
		done += n
		if bypass && n%DirectAlign != 0 {
			return done, io.EOF // a short direct read ends at the end of the file
		}
	}
	return done, nil
}

// fallBack reopens the file without O_DIRECT (once, whoever sees the
// refusal first).
func (d *Direct) fallBack(old *os.File) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.f != old || !d.bypass {
		return nil
	}
	f, _, err := openDirect(d.name, false)
	if err != nil {
		return &os.PathError{Op: "zerocopy: reopen without O_DIRECT", Path: d.name, Err: err}
	}
	_ = old.Close()
	d.f, d.bypass = f, false
	return nil
}

// Close closes the file.
func (d *Direct) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.f.Close()
}

// aligned reports whether b's address, its length and off are multiples
// of DirectAlign (an empty b is).
func aligned(b []byte, off int64) bool {
	return len(b) == 0 || uintptr(unsafe.Pointer(unsafe.SliceData(b)))%DirectAlign == 0 &&
		len(b)%DirectAlign == 0 && off%DirectAlign == 0
}
