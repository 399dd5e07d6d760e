//go:build !linux

package shmbench

import (
	"fmt"

	"github.com/brkmap/alloc/bench/internal/child"
)

// Run needs a memfd and a per-thread CPU clock: Linux only.
func Run(Config) (*Result, error) {
	return nil, fmt.Errorf("shmbench: the shared pool's lesson needs Linux: %w", ErrUnsupported)
}

// ServeChild is never asked for off Linux (Run starts no child).
func ServeChild(child.Job) (any, bool, error) {
	return nil, false, fmt.Errorf("shmbench: %w", ErrUnsupported)
}
