package zerocopy

import (
	"encoding/binary"
	"errors"
	"fmt"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// enableZeroCopy turns SO_ZEROCOPY on; false when the socket refuses it
// (not TCP or UDP, not a socket, an old kernel) — and when it is on
// already: the kernel numbers a socket's zero-copy sends from the first
// one, and a Sender that did not make them all could not tell which
// completion is whose; it would wait for ids that never come.
func enableZeroCopy(rc syscall.RawConn) bool {
	var on bool
	if cerr := rc.Control(func(fd uintptr) {
		v, err := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_ZEROCOPY)
		if err != nil || v != 0 {
			return
		}
		on = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_ZEROCOPY, 1) == nil
	}); cerr != nil {
		return false
	}
	return on
}

// send sends b with MSG_ZEROCOPY and keeps it until its completions come.
// Caller holds s.mu.
func (s *Sender) send(b []byte, release func([]byte)) error {
	if !s.zc || len(b) == 0 {
		_, err := writeAll(s.rc, b)
		s.ready = append(s.ready, held{b: b, release: release})
		return err
	}
	off := 0
	used := false // some of b went with MSG_ZEROCOPY
	copyRest := false
	var serr error
	err := s.rc.Write(func(fd uintptr) bool {
		for off < len(b) {
			if serr = s.reap(int(fd)); serr != nil {
				return true
			}
			n, err := kernel.Sendmsg(int(fd), b[off:], unix.MSG_ZEROCOPY)
			if n > 0 {
				off += n
				s.next++
				used = true
			}
			switch {
			case err == nil, retry(err):
			case wouldBlock(err):
				return false
			case errors.Is(err, unix.ENOBUFS) && (used || len(s.pending) > 0):
				return false // pinned or notification memory: wait for completions
			case errors.Is(err, unix.ENOBUFS):
				copyRest = true
				return true
			default:
				serr = err
				return true
			}
		}
		return true
	})
	if err == nil {
		err = serr
	}
	if err == nil && copyRest {
		var k int
		k, err = writeAll(s.rc, b[off:])
		off += k
	}
	if used {
		s.pending = append(s.pending, held{b: b, release: release, end: s.next})
	} else {
		s.ready = append(s.ready, held{b: b, release: release})
	}
	if rerr := s.reapNow(); err == nil {
		err = rerr
	}
	return err
}

// wait waits until every pending block is complete (all), or at least
// one block is ready or none pending. Caller holds s.mu.
func (s *Sender) wait(all bool) error {
	enough := func() bool {
		if all {
			return len(s.pending) == 0
		}
		return len(s.pending) == 0 || len(s.ready) > 0
	}
	if enough() {
		return nil
	}
	var serr error
	err := s.rc.Write(func(fd uintptr) bool {
		if serr = s.reap(int(fd)); serr != nil || enough() {
			return true
		}
		if closedTCP(int(fd)) {
			// Reset: the kernel dropped its queues, and a completion
			// still missing may never come. Stop waiting; the blocks
			// stay pending (a later call still reaps a late completion).
			serr = fmt.Errorf("the connection is closed with %d blocks pending: %w", len(s.pending), unix.ECONNRESET)
			return true
		}
		return false
	})
	if err == nil {
		err = serr
	}
	return err
}

// tcpClose is TCP_CLOSE, the state of a TCP socket that is reset or done
// (include/net/tcp_states.h).
const tcpClose = 7

// closedTCP reports whether fd is a TCP socket in state TCP_CLOSE: reset
// by its peer, or failed. (A socket the peer merely shut down, CLOSE_WAIT,
// still gets its data acknowledged, and its completions.)
func closedTCP(fd int) bool {
	info, err := unix.GetsockoptTCPInfo(fd, unix.IPPROTO_TCP, unix.TCP_INFO)
	return err == nil && info.State == tcpClose
}

// reapNow reads the completions already queued, without waiting.
func (s *Sender) reapNow() error {
	var serr error
	if err := s.rc.Control(func(fd uintptr) { serr = s.reap(int(fd)) }); err != nil {
		return err
	}
	return serr
}

// reap reads every notification queued on fd's error queue and completes
// the blocks they cover. Caller holds s.mu.
func (s *Sender) reap(fd int) error {
	if len(s.pending) == 0 && s.next == s.done {
		return nil
	}
	var oob [256]byte
	for {
		oobn, err := kernel.RecvErrqueue(fd, oob[:])
		switch {
		case retry(err):
			continue
		case wouldBlock(err):
			return nil
		case err != nil:
			return fmt.Errorf("recvmsg MSG_ERRQUEUE: %w", err)
		}
		msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
		if err != nil {
			return fmt.Errorf("completion: %w", err)
		}
		for _, m := range msgs {
			ip4 := m.Header.Level == unix.SOL_IP && m.Header.Type == unix.IP_RECVERR
			ip6 := m.Header.Level == unix.SOL_IPV6 && m.Header.Type == unix.IPV6_RECVERR
			if !ip4 && !ip6 || len(m.Data) < int(unsafe.Sizeof(unix.SockExtendedErr{})) {
				continue
			}
			// struct sock_extended_err: errno u32, origin u8, type u8,
			// code u8, pad u8, info u32, data u32 (read without assuming
			// the control buffer's alignment)
			d := m.Data
			if d[4] != unix.SO_EE_ORIGIN_ZEROCOPY {
				continue
			}
			counts.completions.Add(1)
			if d[6]&unix.SO_EE_CODE_ZEROCOPY_COPIED != 0 {
				counts.copiedCompletions.Add(1)
			}
			s.complete(idRange{lo: binary.NativeEndian.Uint32(d[8:]), hi: binary.NativeEndian.Uint32(d[12:])})
		}
	}
}
