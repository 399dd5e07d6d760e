package slab

import (
	"math"
	"math/rand/v2"
)

// Heap-profile sampling, as the Go runtime samples its own heap: whoever
// hands out blocks counts their bytes down from an exponentially
// distributed start of mean rate, and the block that crosses zero is
// sampled — so a block of n bytes is sampled with probability about
// 1-exp(-n/rate) (stats.HeapProfile scales the counts back by that
// probability). Each P's cache has a countdown, and each class one for the
// blocks handed out under its lock. A sampled block carries sampledBit in
// its state; freeing it calls Options.OnSampledFree before the block can
// be handed out again. FreeFast leaves sampled blocks to Free, so the fast
// path never looks at the bit.

// NextSample returns the bytes to count down until the next sample at a
// mean of rate bytes: exponentially distributed; 0 at rate 1 (every
// block); never (MaxInt64) with rate <= 0, sampling off. It is the one
// random draw of the heap profile: the root package's countdown for runs
// and mappings draws here too.
func NextSample(rate int64) int64 {
	switch {
	case rate <= 0:
		return math.MaxInt64
	case rate == 1:
		return 0
	}
	return int64(rand.ExpFloat64() * float64(rate))
}

// countdown is the bytes still to hand out before the next sample.
type countdown int64

// due counts n bytes down and reports whether this block is the sample;
// with sampling off it never is (the countdown starts at MaxInt64). The
// branch is never taken while profiling is off. Small enough to inline
// into the fast path: the draw is a call only when it is due.
// rate points at the Pool's rate, read only when a draw is due.
func (d *countdown) due(rate *int64, n uintptr) bool {
	if *d -= countdown(n); *d >= 0 {
		return false
	}
	d.redraw(*rate)
	return true
}

// skip counts n bytes down if that does not reach the sample, and reports
// whether it did: AllocFast's test, which leaves the sample to Refill.
func (d *countdown) skip(n uintptr) bool {
	if *d < countdown(n) {
		return false
	}
	*d -= countdown(n)
	return true
}

//go:noinline
func (d *countdown) redraw(rate int64) { *d = countdown(NextSample(rate)) }

// counts is what a P's cache or a class handed out, net: blocks and the
// bytes requested for them (negative in a cache that frees more than it
// allocates, as a consumer's does).
type counts struct {
	blocks int64
	bytes  int64
}

// handOut is the one place a block becomes live: it marks the block whose
// state is st live for a request of n bytes (size is its class's block
// size), with sampledBit if sampled (what the countdown's due said), and
// counts it in k. Every path that hands out a block reads
//
//	handOut(st, size, n, d.due(&rate, n), k)
//
// "mark live, sample, count"; both halves inline into the fast path.
func handOut(st *uint16, size, n uintptr, sampled bool, k *counts) {
	v := liveState(size, n)
	if sampled {
		v |= sampledBit
	}
	storeState(st, v)
	k.blocks++
	k.bytes += int64(n)
}

// takeBack is the one place a live block stops being counted: it uncounts
// a block of n requested bytes in k.
func (k *counts) takeBack(n uintptr) {
	k.blocks--
	k.bytes -= int64(n)
}
