//go:build !linux

package zerocopy

import "syscall"

// enableZeroCopy: no MSG_ZEROCOPY off Linux.
func enableZeroCopy(syscall.RawConn) bool { return false }

// send copies b and releases it: the socket has its own copy.
func (s *Sender) send(b []byte, release func([]byte)) error {
	_, err := writeAll(s.rc, b)
	s.ready = append(s.ready, held{b: b, release: release})
	return err
}

// wait: nothing is ever pending.
func (s *Sender) wait(bool) error { return nil }
