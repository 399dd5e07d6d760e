//go:build !linux && !freebsd

package zerocopy

// oDirect is 0 where open has no O_DIRECT (macOS bypasses the cache with
// fcntl F_NOCACHE, not used here): Direct reads through the page cache.
const oDirect = 0
