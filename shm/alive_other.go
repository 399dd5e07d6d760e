//go:build !linux

package shm

import (
	"fmt"
	"os"
	"runtime"

	"golang.org/x/sys/unix"
)

// alive reports whether process pid is still running: kill(pid, 0). A
// zombie counts as alive until its parent reaps it.
func alive(pid int) bool { return unix.Kill(pid, 0) != unix.ESRCH }

// memfd: there is no memfd_create here; CreateFile makes a pool over a
// regular file instead.
func memfd(string) (*os.File, error) {
	return nil, fmt.Errorf("memfd on %s: %w", runtime.GOOS, ErrUnsupported)
}

// bootID: not read here; Open trusts lock words as they are.
func bootID() (id [16]byte) { return id }
