//go:build !linux && !freebsd

package alloc_test

// oDirect is 0 where open has no O_DIRECT (macOS bypasses the page cache
// with fcntl F_NOCACHE instead): Example_directIO reads through the page
// cache there, with the same aligned buffer.
const oDirect = 0
