package alloc

import (
	"errors"
	"fmt"
	"io"
	"math"
)

// Buffer is a growable byte buffer in off-heap memory, for building a
// response or reading a body without handing the garbage collector
// megabytes to scan and free. It is written to as a bytes.Buffer is
// (io.Writer, io.ReaderFrom, WriteString, WriteByte) and drained with
// WriteTo (io.WriterTo) or read through Bytes.
//
// Its memory is one block of its Allocator, grown with Realloc: a small
// buffer grows within its size class while it can, a mid-size one into the
// free pages after it, and a large one (a mapping of its own) with mremap,
// which moves page tables instead of copying the bytes. Growth doubles the
// capacity, so writing n bytes costs O(log n) reallocations.
//
// The zero Buffer is ready to use and takes its memory from Default();
// Allocator.NewBuffer makes one that takes it from that Allocator. Free
// gives the memory back: a Buffer that is dropped without Free leaks its
// block, as any block of an Allocator does. After Free the Buffer is empty
// and can be written again (it allocates anew).
//
// Errors are returned, never panicked: a write that would need more memory
// than the Allocator can give returns an error wrapping ErrOutOfMemory
// (ErrClosed once the Allocator is closed) and leaves the content as it was.
//
// A Buffer is not safe for concurrent use, and must not be copied once
// written to (the copy would share its block).
type Buffer struct {
	a   *Allocator // nil until the first allocation of a zero Buffer: Default()
	buf []byte     // the block, len(buf) == cap(buf) == its capacity; nil when none
	r   int        // read offset: buf[:r] was drained by WriteTo
	w   int        // write offset: buf[r:w] is the content
}

var (
	_ io.Writer       = (*Buffer)(nil)
	_ io.StringWriter = (*Buffer)(nil)
	_ io.ByteWriter   = (*Buffer)(nil)
	_ io.ReaderFrom   = (*Buffer)(nil)
	_ io.WriterTo     = (*Buffer)(nil)
)

// MinRead is the smallest room ReadFrom offers a Read, as bytes.MinRead.
const MinRead = 512

// minBuffer is the smallest capacity a Buffer allocates: the first write
// of a few bytes should not be followed by a reallocation at once.
const minBuffer = 64

// errInvalidRead is returned by ReadFrom for a reader that breaks the
// io.Reader contract.
var errInvalidRead = errors.New("alloc: Buffer.ReadFrom: reader returned an invalid count")

// NewBuffer returns an empty Buffer whose memory comes from a, with room
// for n bytes (allocated now when n > 0, so that an allocation failure
// shows here and not at the first write).
func (a *Allocator) NewBuffer(n int) (*Buffer, error) {
	if err := a.usable(); err != nil {
		return nil, err
	}
	b := &Buffer{a: a}
	if err := b.Grow(n); err != nil {
		return nil, err
	}
	return b, nil
}

// Len returns the bytes written and not yet drained: len(b.Bytes()).
func (b *Buffer) Len() int { return b.w - b.r }

// Cap returns the capacity of the buffer's block: how many bytes it holds
// before it must grow (bytes drained by WriteTo count until the next
// Reset or growth reclaims them).
func (b *Buffer) Cap() int { return len(b.buf) }

// Bytes returns the content: the bytes written and not yet drained. The
// slice is the buffer's own off-heap memory, valid until the next call
// that writes, resets or frees the buffer; copy what must outlive that.
// Its capacity is its length, so appending to it copies to the Go heap
// instead of writing into the buffer's spare room (or past its block).
func (b *Buffer) Bytes() []byte { return b.buf[b.r:b.w:b.w] }

// Reset empties the buffer and keeps its memory for the next writes.
func (b *Buffer) Reset() { b.r, b.w = 0, 0 }

// Free gives the buffer's memory back to its Allocator and empties it.
// Freeing a Buffer with no memory does nothing.
func (b *Buffer) Free() error {
	if b.buf == nil {
		return nil
	}
	err := b.a.Free(b.buf)
	b.buf, b.r, b.w = nil, 0, 0
	return err
}

// Grow makes room for at least n more bytes, so that the next n bytes of
// writes do not allocate. n < 0 is ErrInvalidSize. On error the buffer is
// unchanged.
func (b *Buffer) Grow(n int) error {
	if n < 0 {
		return fmt.Errorf("%w: Buffer.Grow(%d)", ErrInvalidSize, n)
	}
	if n <= len(b.buf)-b.w {
		return nil
	}
	return b.grow(n)
}

// grow is Grow's slow path: the block has less than n bytes after w.
func (b *Buffer) grow(n int) error {
	m := b.w - b.r
	if n > math.MaxInt-m {
		return fmt.Errorf("%w: Buffer of %d bytes cannot grow by %d", ErrOutOfMemory, m, n)
	}
	need := m + n
	if b.r > 0 && need <= len(b.buf) && m <= b.r {
		// Drained bytes at the front make the room, and the content is no
		// larger than them: slide it down rather than grow.
		b.slide()
		return nil
	}
	if b.a == nil {
		b.a = Default()
	}
	size := max(need, 2*len(b.buf), minBuffer)
	if size < need { // 2*len overflowed
		size = need
	}
	var nb []byte
	var err error
	if b.buf == nil {
		nb, err = b.a.Malloc(size)
	} else {
		// Realloc keeps len(b.buf[:b.w]) bytes: never the spare room.
		nb, err = b.a.Realloc(b.buf[:b.w], size)
	}
	if err != nil {
		return fmt.Errorf("alloc: Buffer: growing to %d bytes: %w", size, err)
	}
	b.buf = nb
	if b.r > 0 {
		b.slide()
	}
	return nil
}

// slide moves the content to the front of the block.
func (b *Buffer) slide() {
	copy(b.buf, b.buf[b.r:b.w])
	b.w -= b.r
	b.r = 0
}

// Write appends p. It returns len(p), or 0 and an error if the buffer
// cannot grow (the content is then unchanged).
func (b *Buffer) Write(p []byte) (int, error) {
	if err := b.Grow(len(p)); err != nil {
		return 0, err
	}
	b.w += copy(b.buf[b.w:], p)
	return len(p), nil
}

// WriteString appends s, as Write.
func (b *Buffer) WriteString(s string) (int, error) {
	if err := b.Grow(len(s)); err != nil {
		return 0, err
	}
	b.w += copy(b.buf[b.w:], s)
	return len(s), nil
}

// WriteByte appends c.
func (b *Buffer) WriteByte(c byte) error {
	if err := b.Grow(1); err != nil {
		return err
	}
	b.buf[b.w] = c
	b.w++
	return nil
}

// ReadFrom reads r until io.EOF and appends what it reads, growing the
// buffer as needed (each Read is offered at least MinRead bytes). It
// returns the bytes read; io.EOF is not an error. What was read before an
// error stays in the buffer.
func (b *Buffer) ReadFrom(r io.Reader) (int64, error) {
	var total int64
	for {
		if err := b.Grow(MinRead); err != nil {
			return total, err
		}
		n, err := r.Read(b.buf[b.w:])
		if n < 0 || n > len(b.buf)-b.w {
			return total, errInvalidRead
		}
		b.w += n
		total += int64(n)
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

// WriteTo writes the content to w and drains it: what w took is gone from
// the buffer, and once all of it is, the buffer is reset (its memory kept).
// A w that takes less than all without an error gives io.ErrShortWrite.
func (b *Buffer) WriteTo(w io.Writer) (int64, error) {
	m := b.Len()
	if m == 0 {
		b.Reset()
		return 0, nil
	}
	n, err := w.Write(b.buf[b.r:b.w])
	if n < 0 || n > m {
		return 0, fmt.Errorf("alloc: Buffer.WriteTo: writer returned the invalid count %d for %d bytes", n, m)
	}
	b.r += n
	if err != nil {
		return int64(n), err
	}
	if n < m {
		return int64(n), io.ErrShortWrite
	}
	b.Reset()
	return int64(n), nil
}
