//go:build linux || freebsd

package zerocopy

import "golang.org/x/sys/unix"

// oDirect is the open flag that bypasses the page cache.
const oDirect = unix.O_DIRECT
