package zerocopy

import (
	"fmt"
	"sync"
	"syscall"
)

// Sender sends blocks on one socket without copying them, and owns each
// block until the kernel is done with its pages.
//
// On Linux it turns on SO_ZEROCOPY and sends with MSG_ZEROCOPY: the socket
// takes references to the block's pages, and when the last reference is
// dropped (the peer acknowledged the bytes, or the kernel copied them
// after all) the kernel queues a completion notification on the socket's
// error queue. Sender reads those and calls a block's release function
// only when every byte of it is complete. Until then the block is the
// kernel's: the caller must not touch it; from release on it is the
// caller's again, to free or reuse. This is the one way to get a
// zero-copy send right for a block that is reused: a wrong guess about
// when the kernel is done (Send returning, the send queue emptying) sends
// changed bytes, as TestPipeSendHazard shows for vmsplice.
//
// Where the socket refuses SO_ZEROCOPY (not TCP or UDP; off Linux),
// ZeroCopy reports false and Send copies: the block is released as soon
// as Send returns. On loopback, or to any peer on the same machine, the
// kernel copies each block when it delivers it (it cannot hand the
// sender's pages to another socket) and says so: Counts.CopiedCompletions.
// So MSG_ZEROCOPY saves copies to a real network card, not on loopback.
// MSG_ZEROCOPY also pins the pages (counted against RLIMIT_MEMLOCK unless
// privileged); when the kernel refuses more (ENOBUFS), Send waits for
// completions, or copies when it has none to wait for.
//
// Release functions are called by the goroutine in Send, Wait, Flush or
// Close, one after another within that call and never with the Sender's
// lock held (so a release may call the Sender again). A Sender is safe
// for concurrent use; its calls are serialized, but the releases they
// hand back are not: two goroutines calling it at once may each be
// running a release. A release that panics panics its caller; the blocks
// completed with it are handed back by the next call. Completions are read
// from the error queue, which wakes the connection's pollers: on Linux a
// goroutine blocked reading the same connection may see its read fail
// (Go reports an error-only poll event to readers) — read the
// connection's replies after Flush, or from a separate connection.
//
// When the connection breaks with blocks pending, Flush (Wait, Close)
// returns the error — a TCP socket reset by its peer is noticed while
// waiting, since a completion the kernel still owes may then never come
// — and those blocks are not released: the kernel may still hold their
// pages, so leaking them is the safe choice (Pending counts them; a
// completion that does come late is still reaped by a later call).
type Sender struct {
	mu      sync.Mutex
	rc      syscall.RawConn
	zc      bool      // SO_ZEROCOPY is on
	closed  bool      //
	next    uint32    // the id the next MSG_ZEROCOPY send will get
	done    uint32    // every id below done is complete
	early   []idRange // completed ranges above done (out of order)
	pending []held    // blocks the kernel may still reference, oldest first
	ready   []held    // blocks released under the lock, handed back after
}

// held is one block sent and not yet released: complete when every id
// below end is.
type held struct {
	b       []byte
	release func([]byte)
	end     uint32
}

// idRange is a completion: ids lo through hi, inclusive.
type idRange struct{ lo, hi uint32 }

// NewSender makes a Sender for c: a *net.TCPConn, or any syscall.Conn of
// a stream socket (on a datagram socket each Send would be one datagram);
// for anything else it copies.
//
// Make one Sender per connection and keep it for the connection's life
// (Close ends the Sender, not the connection, and is needed only to wait
// for the last completion). The kernel numbers a socket's zero-copy sends
// from its first, so only the Sender that made them all can match the
// completions: a second NewSender on the same socket (SO_ZEROCOPY is
// already on) gets a Sender that copies, ZeroCopy false — never one that
// would wait for completions it cannot recognize.
func NewSender(c syscall.Conn) (*Sender, error) {
	rc, err := rawConn("zerocopy: new sender", c)
	if err != nil {
		return nil, err
	}
	s := &Sender{rc: rc}
	s.zc = enableZeroCopy(rc)
	return s, nil
}

// ZeroCopy reports whether Send uses MSG_ZEROCOPY (else it copies).
func (s *Sender) ZeroCopy() bool { return s.zc }

// Pending returns how many blocks the kernel may still hold.
func (s *Sender) Pending() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.pending)
}

// Send sends all of b and takes ownership of it: release(b) is called
// once the kernel no longer references b's pages — at once in copying
// mode, else from this or a later Send, Flush or Close. It returns when
// every byte is queued on the socket (the socket's deadlines apply). On
// an error, some of b may have been sent, and b is released only if the
// kernel holds none of it.
func (s *Sender) Send(b []byte, release func([]byte)) error {
	const what = "zerocopy: sender send"
	if release == nil {
		return fmt.Errorf("%s: nil release function: %w", what, ErrInvalid)
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return fmt.Errorf("%s: %w", what, ErrClosed)
	}
	err := s.send(b, release)
	s.unlockHandBack()
	if err != nil {
		return fmt.Errorf("%s of %d bytes: %w", what, len(b), err)
	}
	return nil
}

// Flush waits until the kernel is done with every block sent and each is
// released. It waits on the netpoller and honours the connection's write
// deadline.
func (s *Sender) Flush() error {
	s.mu.Lock()
	err := s.wait(true)
	s.unlockHandBack()
	if err != nil {
		return fmt.Errorf("zerocopy: sender flush (%d blocks pending): %w", s.Pending(), err)
	}
	return nil
}

// Wait waits until at least one block is released (or none is
// pending), for a sender that keeps a few blocks in flight and reuses
// each as it comes back. Like Flush it waits on the netpoller and
// honours the write deadline.
func (s *Sender) Wait() error {
	s.mu.Lock()
	err := s.wait(false)
	s.unlockHandBack()
	if err != nil {
		return fmt.Errorf("zerocopy: sender wait: %w", err)
	}
	return nil
}

// Close flushes and ends the Sender (the connection stays open: it is the
// caller's).
//
// The Sender is closed first, then flushed: a Send racing Close, or made
// by a release function that Close runs, is refused with ErrClosed, so
// that no block is left pending once Close has returned.
func (s *Sender) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return fmt.Errorf("zerocopy: sender close: %w", ErrClosed)
	}
	s.closed = true
	err := s.wait(true)
	pending := len(s.pending)
	s.unlockHandBack()
	if err != nil {
		return fmt.Errorf("zerocopy: sender close (%d blocks pending): %w", pending, err)
	}
	return nil
}

// unlockHandBack ends every call: it takes the blocks made ready under
// the lock, unlocks, and hands them back. Caller holds s.mu.
func (s *Sender) unlockHandBack() {
	r := s.ready
	s.ready = nil
	s.mu.Unlock()
	s.handBack(r)
}

// handBack calls the release function of each block of r, in order,
// without the lock. If one panics, the blocks after it go back to ready
// for the next Send, Wait, Flush or Close to hand back: the panic reaches
// the caller, and no block is lost or released twice.
func (s *Sender) handBack(r []held) {
	i := 0
	defer func() {
		if i < len(r) {
			s.mu.Lock()
			s.ready = append(s.ready, r[i:]...)
			s.mu.Unlock()
		}
	}()
	for i < len(r) {
		h := r[i]
		i++
		h.release(h.b)
	}
}

// complete records a completion and moves every block it completes to
// ready. Caller holds s.mu.
func (s *Sender) complete(r idRange) {
	s.early = append(s.early, r)
	for moved := true; moved; {
		moved = false
		for i := 0; i < len(s.early); i++ {
			e := s.early[i]
			if int32(e.lo-s.done) <= 0 { // starts at or below done
				if int32(e.hi+1-s.done) > 0 {
					s.done = e.hi + 1
				}
				s.early = append(s.early[:i], s.early[i+1:]...)
				i--
				moved = true
			}
		}
	}
	i := 0
	for i < len(s.pending) && int32(s.done-s.pending[i].end) >= 0 {
		i++
	}
	s.ready = append(s.ready, s.pending[:i]...)
	s.pending = append(s.pending[:0], s.pending[i:]...)
}
