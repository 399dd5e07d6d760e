// Package replay replays malloc-lab traces (trace.go parses them) on one
// heap, in this process: every byte of a block is written when it is
// allocated (and the new tail on a grow) and checked before it is freed or
// moved, so a replay also proves that no two live blocks overlap. The
// bench command runs Measure in a child process per (trace, policy).
package replay

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/brkmap/alloc/bench/internal/harness"
	"github.com/brkmap/alloc/bench/internal/sampler"
)

// CorruptEnv, when set to an operation index, makes the replay flip a byte
// of a live block at that operation: the test that proves the content
// check catches what it should.
const CorruptEnv = "BRKMAP_BENCH_CORRUPT"

// Measure replays one trace under one policy, in this process.
func Measure(path string, p harness.Policy, threshold int) *harness.Result {
	res := &harness.Result{Trace: path, Policy: p.Name, ResidentFrom: "mincore"}
	t, err := ParseTraceFile(path)
	if err != nil {
		res.Error = err.Error()
		return res
	}
	res.Trace, res.Ops = t.name, len(t.ops)
	peakAt := t.livePeak() // before the instance: its table is the Go runtime's, not the run's
	in, err := res.Instance(p, threshold, nil)
	if err != nil {
		return res
	}
	defer in.Close()
	corruptAt := -1
	if v := os.Getenv(CorruptEnv); v != "" {
		if corruptAt, err = strconv.Atoi(v); err != nil {
			res.Error = CorruptEnv + ": " + err.Error()
			return res
		}
	}

	// The table of blocks is written through now: a fresh large slice is
	// not resident until written, and its pages faulted in during the
	// replay would count as glibc's under the libc policy (3.6 MB for a
	// trace of 150,000 ids).
	blocks := make([][]byte, t.ids)
	clear(blocks)
	s := sampler.New(time.Millisecond, in.Probe)
	if err := in.Start(s); err != nil {
		res.Error = err.Error()
		return res
	}
	s.Start()
	peakLive, checkErr, allocErr := loop(t, in.Heap, blocks, s, corruptAt, peakAt)
	elapsed := s.Elapsed()
	s.Mark("end")

	// Blocks the trace leaves live are checked too (not timed).
	for id, b := range blocks {
		if b != nil && checkErr == nil && !harness.Check(b, harness.Tag(int32(id))) {
			checkErr = fmt.Errorf("block %d (%d bytes) changed while live", id, len(b))
		}
	}
	res.Seconds = elapsed.Seconds()
	if res.Seconds > 0 {
		res.OpsPerSec = float64(len(t.ops)) / res.Seconds
	}
	res.PeakLiveBytes = peakLive
	in.Finish(res, s)
	res.OK = checkErr == nil && allocErr == nil
	if err := errors.Join(allocErr, checkErr); err != nil {
		res.Error = err.Error()
	}
	return res
}

// loop runs the trace's operations on h: every byte of a block is
// written when it is allocated (and the new tail on a grow), and checked
// before it is freed or handed to realloc. It stops at the first failed
// allocation; a failed check is remembered and the replay goes on. The
// sampler is ticked every 64 operations and made to sample each time the
// live bytes pass their previous peak by 1/32 (at least 16 KiB), and right
// after operation peakAt, at which the live bytes peak (known from the
// trace before the run: otherwise the peak can fall up to 1/32 short of a
// sample, for each policy at another place), so the peak of resident
// memory is seen; and after every operation that moved the live bytes by
// harness.BigEvent or more.
func loop(t *Trace, h harness.Heap, blocks [][]byte, s *sampler.Sampler, corruptAt, peakAt int) (peakLive uint64, checkErr, allocErr error) {
	var live, nextMark uint64
	for i, o := range t.ops {
		b := blocks[o.id]
		tg := harness.Tag(o.id)
		before := live
		switch o.kind {
		case 'a':
			nb, err := h.Malloc(int(o.size))
			if err != nil {
				return peakLive, checkErr, fmt.Errorf("op %d: a %d %d: %w", i, o.id, o.size, err)
			}
			harness.Fill(nb, tg, 0)
			blocks[o.id] = nb
			live += uint64(o.size)
		case 'f':
			if checkErr == nil && !harness.Check(b, tg) {
				checkErr = fmt.Errorf("op %d: f %d: the block's %d bytes changed while it was live", i, o.id, len(b))
			}
			if err := h.Free(b); err != nil {
				return peakLive, checkErr, fmt.Errorf("op %d: f %d: %w", i, o.id, err)
			}
			blocks[o.id] = nil
			live -= uint64(len(b))
		case 'r':
			if checkErr == nil && b != nil && !harness.Check(b, tg) {
				checkErr = fmt.Errorf("op %d: r %d: the block's %d bytes changed while it was live", i, o.id, len(b))
			}
			nb, err := h.Realloc(b, int(o.size))
			if err != nil {
				return peakLive, checkErr, fmt.Errorf("op %d: r %d %d: %w", i, o.id, o.size, err)
			}
			if len(nb) > len(b) {
				harness.Fill(nb, tg, len(b))
			}
			blocks[o.id] = nb
			live += uint64(len(nb)) - uint64(len(b))
		}
		if i >= corruptAt && corruptAt >= 0 && len(blocks[o.id]) > 0 {
			nb := blocks[o.id]
			nb[len(nb)/2] ^= 0xff
			corruptAt = -1
		}
		if i == peakAt {
			s.Mark("") // the peak of the live bytes, known from the trace: every policy is measured there
			nextMark = live + max(live/32, 16<<10)
		}
		if live > peakLive {
			peakLive = live
			if live >= nextMark {
				s.Mark("")
				nextMark = live + max(live/32, 16<<10)
			}
		} else if live >= before+harness.BigEvent || before >= live+harness.BigEvent {
			s.Event()
		}
		if i&63 == 0 {
			s.Tick()
		}
	}
	return peakLive, checkErr, nil
}
