//go:build linux || freebsd

package alloc_test

import "golang.org/x/sys/unix"

// oDirect is the open flag that bypasses the page cache (Example_directIO).
const oDirect = unix.O_DIRECT
