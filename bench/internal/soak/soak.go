// Package soak is the soak test (`go run ./bench soak [-ops N]
// [-goroutines G] [-policy P]`).
//
// Under each policy, G goroutines run N operations in all — Malloc,
// Calloc, AlignedAlloc, Realloc, Free, Trim, interior-pointer frees that
// must be refused — on blocks of 0 B to 2 MiB, and hand blocks to each
// other so that a good share of the frees happen on a goroutine (and a P
// cache) other than the one that allocated. Each goroutine drives its own
// operation-stream model (alloctest.Model, the one the root package's rapid
// test and fuzzer drive) over the shared allocator: every block is filled
// with its own pattern when allocated and checked before it is freed,
// resized or handed over. Every -check operations all goroutines stop at a
// barrier and alloctest.CheckAll holds the allocator against all the
// models: every live block's pattern, no two blocks overlapping, LiveBlocks
// and LiveBytes exactly, the budget (Committed = ArenaBytes + MmapBytes +
// QuarantineBytes).
// At the end everything is freed: nothing may stay live or mapped, and the
// process's count of mappings (/proc/self/maps) must come back to where it
// started. Any difference is an error (exit status 1).
package soak

import (
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/brkmap/alloc"
	"github.com/brkmap/alloc/bench/internal/harness"
	"github.com/brkmap/alloc/internal/alloctest"
	"github.com/brkmap/alloc/internal/procfs"
)

// Policies are the policies a soak runs under: this allocator's policies
// (not libc), a low threshold, and Debug mode.
var Policies = func() []harness.Policy {
	var ps []harness.Policy
	for _, p := range harness.Policies {
		if !p.Libc {
			ps = append(ps, p)
		}
	}
	return append(ps,
		harness.Policy{Name: "low-threshold", Cfg: alloc.Config{MmapThreshold: 8 << 10, TrimThreshold: 16 << 10, TopPad: -1}},
		harness.Policy{Name: "debug", Cfg: alloc.Config{Debug: true}})
}()

// Params are a soak's sizes: operations in all, goroutines, operations
// between two full checks at a barrier, and the random seed.
type Params struct {
	Ops        int64
	Goroutines int
	Check      int64
	Seed       uint64
}

// Operation kinds, counted.
const (
	sMalloc = iota
	sCalloc
	sAligned
	sRealloc
	sFree  // frees by the goroutine that allocated (or last resized) the block
	sCross // frees of a block handed over by another goroutine
	sBadFree
	sTrim
	numSoakOps
)

type Result struct {
	n                     [numSoakOps]int64
	checks                int
	corrupt               int
	mapsBefore, mapsAfter int
	mmapCalls             uint64
	seconds               float64
}

func (r Result) total() int64 {
	var t int64
	for _, n := range r.n {
		t += n
	}
	return t
}

// Run soaks a fresh allocator made with p's Config and returns the counts;
// the error says what went wrong (nil: nothing).
func Run(p harness.Policy, sp Params) (Result, error) {
	var r Result
	r.mapsBefore = procfs.MapCount()
	start := time.Now()
	a, err := alloc.New(p.Cfg)
	if err != nil {
		return r, err
	}
	ws := newWorkers(a, sp)
	var done int64
	for done < sp.Ops && err == nil {
		var n int64
		n, err = round(ws, min(sp.Check, sp.Ops-done), &r)
		done += n
	}
	for _, w := range ws {
		for i := range r.n {
			r.n[i] += w.n[i]
		}
	}
	if err != nil {
		a.Close()
		r.seconds = time.Since(start).Seconds()
		return r, err
	}
	err = freeAll(a, ws, &r)
	r.mapsAfter = procfs.MapCount()
	// The Go runtime maps memory of its own meanwhile (its heap grows
	// during the first run: up to a few dozen mappings); a leak of this
	// allocator would be thousands of mappings (one per large block).
	if r.mapsAfter > r.mapsBefore+64 {
		err = errors.Join(err, fmt.Errorf("the process has %d mappings, %d before: mappings leaked", r.mapsAfter, r.mapsBefore))
	}
	r.seconds = time.Since(start).Seconds()
	return r, err
}

// newWorkers returns sp.Goroutines workers on a, each handing blocks to
// the next.
func newWorkers(a *alloc.Allocator, sp Params) []*soakWorker {
	ws := make([]*soakWorker, sp.Goroutines)
	for i := range ws {
		ws[i] = newWorker(a, i, sp.Seed)
	}
	for i, w := range ws {
		w.next = ws[(i+1)%len(ws)]
	}
	return ws
}

// round runs ops operations shared between the workers, then, with every
// goroutine waiting at the barrier, checks the blocks and Stats. It
// returns the operations done and what went wrong.
func round(ws []*soakWorker, ops int64, r *Result) (int64, error) {
	var wg sync.WaitGroup
	var roundDone atomic.Int64
	for i, w := range ws {
		share := ops / int64(len(ws))
		if int64(i) < ops%int64(len(ws)) {
			share++
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			roundDone.Add(w.run(share))
		}()
	}
	wg.Wait()
	// Quiescent: every goroutine waits at the barrier.
	var err error
	for _, w := range ws {
		if w.err != nil {
			err = errors.Join(err, w.err)
			r.corrupt++
		}
	}
	if err == nil {
		err = checkSoak(ws)
		r.checks++
		if err != nil {
			r.corrupt++
		}
	}
	return roundDone.Load(), err
}

// freeAll frees every block (each checked first), trims, checks that
// nothing is left live or mapped, and closes a.
func freeAll(a *alloc.Allocator, ws []*soakWorker, r *Result) error {
	var err error
	for _, w := range ws {
		w.adopt()
		for w.m.Live() > 0 {
			if e := w.free(w.m.Live() - 1); e != nil {
				err = errors.Join(err, e)
				r.corrupt++
				break // the model keeps a block it could not free
			}
		}
	}
	a.Trim()
	r.mmapCalls = a.Stats().Mmap
	err = errors.Join(err, alloctest.Empty(a))
	if e := a.Close(); e != nil {
		err = errors.Join(err, e)
	}
	return err
}

// checkSoak runs at the barrier: the blocks in transit between workers
// adopted, the allocator held against every worker's model at once.
func checkSoak(ws []*soakWorker) error {
	ms := make([]*alloctest.Model, len(ws))
	for i, w := range ws {
		w.adopt()
		ms[i] = w.m
	}
	return alloctest.CheckAll(ms...)
}

// tableRow is the format of PrintHeader's and PrintRow's lines, fixed
// widths so that a row can be printed as soon as its policy is done.
const tableRow = "%13s %9s %8s %7s %7s %7s %8s %10s %8s %6s %6s %7s %11s %10s %10s %7s\n"

// PrintHeader prints the header of the soak's table.
func PrintHeader(w io.Writer) {
	fmt.Fprintf(w, tableRow, "policy", "ops", "malloc", "calloc", "aligned", "realloc", "free", "cross-free", "bad-free",
		"trim", "checks", "corrupt", "maps before", "maps after", "mmap calls", "seconds")
}

// PrintRow prints r as the table's row for the policy called name.
func (r Result) PrintRow(w io.Writer, name string) {
	d := func(n int64) string { return fmt.Sprint(n) }
	fmt.Fprintf(w, tableRow, name, d(r.total()), d(r.n[sMalloc]), d(r.n[sCalloc]), d(r.n[sAligned]), d(r.n[sRealloc]),
		d(r.n[sFree]), d(r.n[sCross]), d(r.n[sBadFree]), d(r.n[sTrim]), d(int64(r.checks)), d(int64(r.corrupt)),
		d(int64(r.mapsBefore)), d(int64(r.mapsAfter)), fmt.Sprint(r.mmapCalls), fmt.Sprintf("%.1f", r.seconds))
}
