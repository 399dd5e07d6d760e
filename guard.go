package alloc

import (
	"errors"
	"fmt"
)

// The errors of misuse that New and a zero Allocator report. Compare with
// errors.Is, as the others.
var (
	// ErrNotInitialized: the Allocator was not made by New (a zero
	// Allocator, for example one declared as a value or embedded in a
	// struct). Its methods do nothing and return this error (the methods
	// without an error return their zero value); it has no memory to give.
	// It is not ErrClosed, so that a shutdown path ignoring ErrClosed does
	// not hide the mistake.
	ErrNotInitialized = errors.New("alloc: Allocator not made by alloc.New (a zero Allocator is unusable)")
	// ErrInvalidConfig: New was given a Config it cannot honour: an unknown
	// Policy or HugePages value, or a negative size where none is allowed
	// (those also match ErrInvalidSize).
	ErrInvalidConfig = errors.New("alloc: invalid Config")
	// ErrDefaultClose: Close was called on the process-wide Allocator of
	// Default, which every package of the program shares. It stays open.
	ErrDefaultClose = errors.New("alloc: the Default allocator is shared by the whole program and cannot be closed")
)

// usable reports why a cannot serve a call: closed, or never made by New.
// Only slow paths ask: the fast paths of a zero Allocator fall through to
// them by themselves (its smallLimit is 0 and its page map empty).
func (a *Allocator) usable() error {
	if a.region == nil {
		return ErrNotInitialized
	}
	if a.closed.Load() {
		return ErrClosed
	}
	return nil
}

// validate checks the fields of cfg that New cannot take as they are.
func (cfg *Config) validate() error {
	for _, f := range []struct {
		name string
		v    int
	}{{"MmapThreshold", cfg.MmapThreshold}, {"Reserve", cfg.Reserve}, {"Limit", cfg.Limit}} {
		if f.v < 0 {
			return fmt.Errorf("%w: Config.%s = %d is negative (%w)", ErrInvalidConfig, f.name, f.v, ErrInvalidSize)
		}
	}
	if cfg.Policy < PolicyThreshold || cfg.Policy > PolicyMmap {
		return fmt.Errorf("%w: unknown Policy %d", ErrInvalidConfig, int(cfg.Policy))
	}
	if cfg.HugePages < HugePagesOff || cfg.HugePages > HugePagesAll {
		return fmt.Errorf("%w: unknown HugePages setting %d", ErrInvalidConfig, int(cfg.HugePages))
	}
	return nil
}
