// Package zerocopy sends and receives an off-heap block's bytes without a
// copy through user space where the kernel allows it, and says what each
// way costs.
//
// The allocator hands out blocks the garbage collector never sees; a
// shared or file-backed pool names its blocks by (file, offset, length).
// This package moves those bytes to and from sockets, pipes and files.
// Every function works on plain values — a []byte block from an
// Allocator, an *os.File with an offset and a length, a net.Conn or
// *os.File through syscall.Conn — so it needs nothing from the pools'
// code. Sockets and pipes are driven through syscall.RawConn: a call that
// would block (EAGAIN) parks the goroutine on Go's netpoller, not an OS
// thread, and the connection's deadlines apply.
//
// The ways, and what each costs the sender (Linux; copies are of every
// byte sent):
//
//	read+write, 64 KiB []byte   2 copies: page cache → buffer, buffer → socket
//	SendFile (sendfile)         0 copies: the socket takes references to
//	                            the file's page-cache pages
//	Pipe.Send (vmsplice+splice) 0 copies: the pipe, then the socket, take
//	                            references to the block's own pages
//	Sender (MSG_ZEROCOPY)       0 copies to a network card that gathers
//	                            (scatter-gather, as nearly all do); on
//	                            loopback or any local peer the kernel
//	                            copies when it delivers the data, and says
//	                            so (Counts.CopiedCompletions)
//	Direct (O_DIRECT read)      0 CPU copies from the disk into an aligned
//	                            block (the device writes it), page cache
//	                            bypassed; falls back to a cached read
//	Pipe.RecvFile (splice)      1 copy (socket buffer → page cache) instead
//	                            of 2 (socket → buffer → page cache)
//
// The catch of references: once SendFile, Pipe.Send or Sender has
// returned, the kernel may still hold references to the pages it sends —
// TCP keeps them until the peer acknowledges the data, and a local peer
// (loopback, a pipe's reader) reads them straight out of the sender's
// memory whenever it gets round to it. A block changed or freed and
// reused in that window sends the new bytes. The package takes two
// stances, one per path:
//
//   - Sender owns the block until the kernel is done with it. It sends
//     with MSG_ZEROCOPY, reads the kernel's completion notifications from
//     the socket's error queue, and hands each block back (its release
//     function) only when every byte of it is acknowledged or was copied.
//     This is the way to send a block that is freed or reused afterwards.
//   - Pipe.Send (vmsplice) has no completion notification: the kernel
//     never says when a spliced page is released. Its rule is that the
//     block stays unchanged until the receiver has read the data — fit
//     for blocks that are never written again (a file-backed pool's
//     mapping of a file that does not change, a published immutable
//     payload), and for nothing else. Not even "the socket's send queue
//     is empty" (SIOCOUTQ 0) is enough on loopback: the receiver's queue
//     still references the pages. TestPipeSendHazard shows both.
//
// Receiving into user memory is not zero-copy here: a TCP socket's bytes
// reach a block with one copy (read, recvmsg, or vmsplice from a pipe,
// which copies too). The kernel's zero-copy receive (TCP_ZEROCOPY_RECEIVE,
// mapping whole received pages) needs page-sized, page-aligned segments
// from the network card and is not offered. Pipe.RecvFile saves the copy
// through user space when the bytes go to a file.
//
// Off Linux (macOS, FreeBSD): SendFile uses the system's sendfile (which
// wants a socket as destination; other destinations fall back); Pipe and
// Sender copy through a buffer and say so (ZeroCopy reports false);
// Direct opens with O_DIRECT on FreeBSD and reads through the cache on
// macOS (Bypass false).
//
// Every transfer's system call goes through the project's counted
// wrapper (internal/sys, one value for this package: kernel.go); the
// pipe's own pipe2, fcntl and close, the SO_ZEROCOPY socket option and
// the TCP_INFO a waiting Sender reads are made directly and not counted. ReadCounts reports calls by kind, bytes
// that went through a user-space buffer instead, and the MSG_ZEROCOPY
// completions the kernel satisfied by copying.
package zerocopy
