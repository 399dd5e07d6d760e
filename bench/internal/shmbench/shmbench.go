// Package shmbench measures the lesson of the shared pool for the main
// report (`go run ./bench`): handing payloads from a process to a worker
// process in two ways.
//
//   - socket: the parent writes each payload's bytes into a Unix stream
//     socket and the child reads them into a buffer of its own — every
//     byte copied twice, into the kernel by write and out of it by read;
//   - shm: the parent allocates the payload in a shared pool (package
//     shm, over a memfd both processes map), writes it there in place, and
//     sends only its 8-byte Ref over the same socket; the child turns the
//     Ref into a slice of its own mapping (Pool.Bytes), reads the payload
//     where it lies, and frees it.
//
// The child is this binary started again through package child, with the
// socket as descriptor 3 and the pool's file as descriptor 4. Each payload
// is one round trip: the parent produces it (allocates it, for shm, and
// fills it with a pattern of its number), hands it over, and waits for the
// child's one-byte answer, which the child sends after it has checked
// every word of the payload against the pattern (and, for shm, freed it).
// So both ways do the same work on the payload — written once, read once
// — and differ only in how it travels.
//
// What is measured, per way and payload size, over the payloads after a
// first one (a warm-up, whose page faults would be counted otherwise):
// the median round trip (wall time), each side's CPU time (its working
// thread's CPU clock, CLOCK_THREAD_CPUTIME_ID, user + system, over the
// phase, per payload) and, of it, the time spent writing the payload
// (parent) and reading it (child) — so that what is left is what handing
// it over cost —, each side's minor page faults (getrusage RUSAGE_THREAD), and the bytes that crossed the
// socket — counted by both sides as write and read return them, so that
// "bytes copied" is measured, not inferred. During the warm-up payload of
// each shm phase the child reads the pool's Stats while it holds the
// block, and both sides report the address at which they see it, beside
// its Ref. The pool's Stats and the memory its file holds (fstat) are
// read before and after.
package shmbench

import (
	"errors"
	"slices"
	"unsafe"
)

// The ways of handing a payload over.
const (
	WaySocket = "socket" // the bytes through a Unix socket
	WayShm    = "shm"    // the Ref through the socket, the bytes in a shared pool
)

// Ways are the ways, in the report's order.
var Ways = []string{WaySocket, WayShm}

// ChildKind is the child.Job kind of the worker process.
const ChildKind = "shm-handoff"

// ErrUnsupported: this system has no memfd (the pool needs one) or no
// per-thread CPU clock.
var ErrUnsupported = errors.ErrUnsupported

// Config is what to measure.
type Config struct {
	Sizes []int `json:"sizes"` // payload sizes in bytes
	// Each size sends Bytes/size payloads, bounded by Min and Max.
	Bytes    int64 `json:"bytes"`
	Min, Max int   `json:"-"`
}

// DefaultConfig is the report's: 4 KiB, 64 KiB, 1 MiB and 8 MiB payloads,
// about 64 MiB of each size, from 16 to 1000 payloads a size — well under
// a second on a small machine.
func DefaultConfig() Config {
	return Config{Sizes: []int{4 << 10, 64 << 10, 1 << 20, 8 << 20}, Bytes: 64 << 20, Min: 16, Max: 1000}
}

// count returns how many payloads of size n to send (the warm-up apart).
func (c Config) count(n int) int {
	k := int(c.Bytes / int64(max(n, 1)))
	return min(max(k, c.Min, 1), max(c.Max, c.Min, 1))
}

// Result is the whole measurement: shared-pool.json in the report folder.
type Result struct {
	Rows      []Row `json:"rows"`
	PoolBytes int   `json:"pool_bytes"` // the pool's size
	// The pool's Stats, read by the parent: just made, and after every
	// payload was handed over and freed by the child.
	StatsEmpty PoolStats `json:"stats_empty"`
	StatsAfter PoolStats `json:"stats_after"`
	// Memory the pool's file holds (fstat: st_blocks × 512), just made and
	// at the end: pages once written stay with the file, freed or not.
	FileBytesEmpty uint64  `json:"file_memory_bytes_empty"`
	FileBytesAfter uint64  `json:"file_memory_bytes_after"`
	Seconds        float64 `json:"seconds"` // the whole measurement, the child's start included
	OK             bool    `json:"ok"`      // every payload arrived intact, every block was freed
	Error          string  `json:"error,omitempty"`
}

// Row is one way at one payload size.
type Row struct {
	Way      string `json:"way"` // WaySocket or WayShm
	Size     int    `json:"payload_bytes"`
	Payloads int    `json:"payloads"` // measured (the warm-up apart)
	// Per payload.
	MedianSeconds float64 `json:"median_seconds"`     // the parent's round trip: produce, hand over, child reads and answers
	SocketBytes   float64 `json:"socket_bytes"`       // bytes the parent wrote into the socket
	CopiedBytes   float64 `json:"copied_bytes"`       // bytes copied between user space and the kernel: written and read, both sides
	ParentCPU     float64 `json:"parent_cpu_seconds"` // user + system
	ChildCPU      float64 `json:"child_cpu_seconds"`  // user + system
	// Of which the work on the payload itself, the same both ways: the
	// parent writing it (its pattern), the child reading and checking it.
	// CPU less work is what the handing over cost (Handover).
	ParentWork   float64 `json:"parent_work_cpu_seconds"`
	ChildWork    float64 `json:"child_work_cpu_seconds"`
	ChildFaults  float64 `json:"child_minor_faults"`     // the child's working thread's
	ParentFaults float64 `json:"parent_minor_faults"`    // the parent's working thread's
	OK           bool    `json:"ok"`                     // every payload checked by the child
	Error        string  `json:"error,omitempty"`        // the first thing that went wrong
	Warmup       *Block  `json:"warmup_block,omitempty"` // shm: the warm-up payload's block, seen from both sides
}

// Block is one shm payload as both processes see it.
type Block struct {
	Ref         uint64    `json:"ref"`            // what went through the socket
	Offset      uint64    `json:"offset"`         // Ref.Offset(): where the block is in the pool's file
	ParentAddr  uint64    `json:"parent_address"` // the block's address in the parent
	ChildAddr   uint64    `json:"child_address"`  // and in the child: another mapping of the same pages
	ParentBase  uint64    `json:"parent_base"`    // the block's address less its offset: where each mapped the pool
	ChildBase   uint64    `json:"child_base"`
	ChildStats  PoolStats `json:"child_stats"` // the pool's Stats, read by the child while it held the block
	HeldByChild bool      `json:"held_by_child"`
}

// PoolStats is shm.Stats, with names for JSON.
type PoolStats struct {
	Size       uint64 `json:"size_bytes"`
	FreeBytes  uint64 `json:"free_bytes"` // free pages × page size
	LiveBlocks uint64 `json:"live_blocks"`
	LiveBytes  uint64 `json:"live_bytes"`
	Recoveries uint64 `json:"recoveries"` // operations rolled back after their process died
}

// Handover is the CPU time, both sides together, that handing a payload
// over cost: their CPU less their work on the payload.
func (r *Row) Handover() float64 {
	return max(0, r.ParentCPU-r.ParentWork) + max(0, r.ChildCPU-r.ChildWork)
}

// Row returns the row of way at size, or nil.
func (r *Result) Row(way string, size int) *Row {
	for i := range r.Rows {
		if r.Rows[i].Way == way && r.Rows[i].Size == size {
			return &r.Rows[i]
		}
	}
	return nil
}

// Sizes returns the payload sizes measured, in order.
func (r *Result) Sizes() []int {
	var s []int
	for _, row := range r.Rows {
		if !slices.Contains(s, row.Size) {
			s = append(s, row.Size)
		}
	}
	return s
}

// word is the pattern: word i of payload k.
func word(k, i int) uint64 { return (uint64(k)<<32 | uint64(i)) * 0x9E3779B97F4A7C15 }

// words views b (its length a multiple of 8, its start 8-aligned: a Go
// allocation or a pool block) as words.
func words(b []byte) []uint64 {
	return unsafe.Slice((*uint64)(unsafe.Pointer(unsafe.SliceData(b))), len(b)/8)
}

// fill writes payload k's pattern into b.
func fill(b []byte, k int) {
	ws := words(b)
	for i := range ws {
		ws[i] = word(k, i)
	}
}

// check reads every word of b (no early exit: every payload is read
// whole) and says whether it is payload k's.
func check(b []byte, k int) bool {
	var diff uint64
	for i, w := range words(b) {
		diff |= w ^ word(k, i)
	}
	return diff == 0
}
