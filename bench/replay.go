package main

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/brkmap/alloc/bench/internal/sampler"
	"github.com/brkmap/alloc/stats"
)

func init() { commands["replay"] = replayCommand }

// result is what one (trace or workload, policy) run measured. The first
// fields, down to OK, are the contract of `bench replay -json` (see
// DESIGN.md): programs outside this repository parse them, so their names
// never change. The rest is extra.
type result struct {
	Trace              string  `json:"trace"`
	Policy             string  `json:"policy"`
	Threshold          int     `json:"threshold"` // configured mmap threshold in bytes; 0 for brk and mmap, which have none
	Ops                int     `json:"ops"`
	Seconds            float64 `json:"seconds"` // the replay loop only: not parsing, not sampling
	PeakLiveBytes      uint64  `json:"peak_live_bytes"`
	PeakResidentBytes  uint64  `json:"peak_resident_bytes"`
	FinalResidentBytes uint64  `json:"final_resident_bytes"`
	Fragmentation      float64 `json:"fragmentation"` // peak_resident_bytes / peak_live_bytes
	MmapCalls          *uint64 `json:"mmap_calls"`    // null for libc: glibc's calls are not counted
	MunmapCalls        *uint64 `json:"munmap_calls"`
	MadviseCalls       *uint64 `json:"madvise_calls"`
	OK                 bool    `json:"ok"` // every content check passed and no allocation failed

	OpsPerSec          float64 `json:"ops_per_sec"`
	MprotectCalls      *uint64 `json:"mprotect_calls"`
	MinorFaults        uint64  `json:"minor_faults"`          // the process's, during the run
	PeakRSSGrowthBytes uint64  `json:"peak_rss_growth_bytes"` // VmHWM during the run minus RSS before it (every policy)
	TrappedBytes       uint64  `json:"trapped_bytes"`         // at the end: free pages below the break still resident
	ResidentFrom       string  `json:"resident_from"`         // "mincore" (this allocator's mappings) or "rss" (process growth)
	Error              string  `json:"error,omitempty"`
	Note               string  `json:"note,omitempty"`

	// For the report only; left out of `replay -json`.
	Series  []sampler.Sample `json:"series,omitempty"`
	PeakMap *stats.RegionMap `json:"peak_map,omitempty"`
	Moments []moment         `json:"moments,omitempty"`
}

// syscalls returns the memory-management calls counted, and whether they
// were (not for libc).
func (r *result) syscalls() (uint64, bool) {
	if r.MmapCalls == nil {
		return 0, false
	}
	return *r.MmapCalls + *r.MunmapCalls + *r.MadviseCalls + *r.MprotectCalls, true
}

func replayCommand(args []string) error {
	fs := flag.NewFlagSet("replay", flag.ContinueOnError)
	pol := fs.String("policy", "all", fmt.Sprintf("policy: one of %v", policyNames()))
	threshold := fs.Int("threshold", 0, "mmap threshold in bytes for the threshold and libc policies (0: 128 KiB; for libc, glibc's sliding default)")
	asJSON := fs.Bool("json", false, "print one JSON object a line")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: bench replay [-policy P] [-threshold BYTES] [-json] FILE.rep…")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return errors.New("replay: no trace files")
	}
	if *threshold < 0 {
		return fmt.Errorf("replay: -threshold %d: must not be negative", *threshold)
	}
	ps, err := selectPolicies(*pol)
	if err != nil {
		return err
	}
	if ps = dropLibcIfMissing(ps); len(ps) == 0 {
		return nil
	}
	// Parse every trace here first, so a bad file fails before any run.
	for _, f := range fs.Args() {
		if _, err := parseTraceFile(f); err != nil {
			return err
		}
	}
	var jobs []job
	for _, f := range fs.Args() {
		for _, p := range ps {
			jobs = append(jobs, job{kind: "replay", target: f, policy: p.name, threshold: *threshold})
		}
	}
	results := runJobs(jobs, func(r *result) {
		if *asJSON {
			line, _ := json.Marshal(r.contract())
			fmt.Println(string(line))
		}
	})
	if !*asJSON {
		printTable(os.Stdout, "", results)
	}
	return failures(results)
}

// contract returns r without the report-only fields.
func (r *result) contract() *result {
	c := *r
	c.Series, c.PeakMap, c.Moments = nil, nil, nil
	return &c
}

// failures returns an error naming the runs that failed, or nil.
func failures(results []*result) error {
	bad := 0
	for _, r := range results {
		if !r.OK {
			bad++
			warn("%s under %s failed: %s", r.Trace, r.Policy, r.Error)
		}
	}
	if bad > 0 {
		return fmt.Errorf("%d of %d runs failed", bad, len(results))
	}
	return nil
}

// corruptEnv, when set to an operation index, makes the replay flip a byte
// of a live block at that operation: the test that proves the content
// check catches what it should.
const corruptEnv = "BRKMAP_BENCH_CORRUPT"

// childReplay replays one trace under one policy, in this (child) process.
func childReplay(path string, p policy, threshold int) *result {
	res := &result{Trace: path, Policy: p.name, ResidentFrom: "mincore"}
	t, err := parseTraceFile(path)
	if err != nil {
		res.Error = err.Error()
		return res
	}
	res.Trace, res.Ops = t.name, len(t.ops)
	in, err := res.instance(p, threshold, nil)
	if err != nil {
		return res
	}
	defer in.close()
	corruptAt := -1
	if v := os.Getenv(corruptEnv); v != "" {
		if corruptAt, err = strconv.Atoi(v); err != nil {
			res.Error = corruptEnv + ": " + err.Error()
			return res
		}
	}

	blocks := make([][]byte, t.ids)
	s := sampler.New(time.Millisecond, in.probe)
	if err := in.start(); err != nil {
		res.Error = err.Error()
		return res
	}
	s.Start()
	peakLive, checkErr, allocErr := replayLoop(t, in.heap, blocks, s, corruptAt)
	elapsed := s.Elapsed()
	s.Mark("end")

	// Blocks the trace leaves live are checked too (not timed).
	for id, b := range blocks {
		if b != nil && checkErr == nil && !check(b, tag(int32(id))) {
			checkErr = fmt.Errorf("block %d (%d bytes) changed while live", id, len(b))
		}
	}
	res.Seconds = elapsed.Seconds()
	if res.Seconds > 0 {
		res.OpsPerSec = float64(len(t.ops)) / res.Seconds
	}
	res.PeakLiveBytes = peakLive
	finish(res, in, s)
	res.OK = checkErr == nil && allocErr == nil
	if err := errors.Join(allocErr, checkErr); err != nil {
		res.Error = err.Error()
	}
	return res
}

// replayLoop runs the trace's operations on h: every byte of a block is
// written when it is allocated (and the new tail on a grow), and checked
// before it is freed or handed to realloc. It stops at the first failed
// allocation; a failed check is remembered and the replay goes on. The
// sampler is ticked every 64 operations and made to sample each time the
// live bytes pass their previous peak by 1/32 (at least 16 KiB), so the
// peak of resident memory is seen.
func replayLoop(t *trace, h heap, blocks [][]byte, s *sampler.Sampler, corruptAt int) (peakLive uint64, checkErr, allocErr error) {
	var live, nextMark uint64
	for i, o := range t.ops {
		b := blocks[o.id]
		tg := tag(o.id)
		switch o.kind {
		case 'a':
			nb, err := h.Malloc(int(o.size))
			if err != nil {
				return peakLive, checkErr, fmt.Errorf("op %d: a %d %d: %w", i, o.id, o.size, err)
			}
			fill(nb, tg, 0)
			blocks[o.id] = nb
			live += uint64(o.size)
		case 'f':
			if checkErr == nil && !check(b, tg) {
				checkErr = fmt.Errorf("op %d: f %d: the block's %d bytes changed while it was live", i, o.id, len(b))
			}
			if err := h.Free(b); err != nil {
				return peakLive, checkErr, fmt.Errorf("op %d: f %d: %w", i, o.id, err)
			}
			blocks[o.id] = nil
			live -= uint64(len(b))
		case 'r':
			if checkErr == nil && b != nil && !check(b, tg) {
				checkErr = fmt.Errorf("op %d: r %d: the block's %d bytes changed while it was live", i, o.id, len(b))
			}
			nb, err := h.Realloc(b, int(o.size))
			if err != nil {
				return peakLive, checkErr, fmt.Errorf("op %d: r %d %d: %w", i, o.id, o.size, err)
			}
			if len(nb) > len(b) {
				fill(nb, tg, len(b))
			}
			blocks[o.id] = nb
			live += uint64(len(nb)) - uint64(len(b))
		}
		if i >= corruptAt && corruptAt >= 0 && len(blocks[o.id]) > 0 {
			nb := blocks[o.id]
			nb[len(nb)/2] ^= 0xff
			corruptAt = -1
		}
		if live > peakLive {
			peakLive = live
			if live >= nextMark {
				s.Mark("")
				nextMark = live + max(live/32, 16<<10)
			}
		}
		if i&63 == 0 {
			s.Tick()
		}
	}
	return peakLive, checkErr, nil
}

// tag is the 8-byte pattern that fills block id: distinct for every id
// (an odd multiplier is a bijection), so a block overwritten by another
// one fails its check.
func tag(id int32) uint64 { return (uint64(id) + 1) * 0x9e3779b97f4a7c15 }

// fill writes b[from:] with the repeated tag, each byte at its place in
// the pattern as if the whole block had been filled from its start.
func fill(b []byte, tg uint64, from int) {
	i := from
	for ; i < len(b) && i%8 != 0; i++ {
		b[i] = byte(tg >> (8 * (i % 8)))
	}
	start, end := i, min(len(b), i+64)
	for ; i+8 <= end; i += 8 {
		binary.LittleEndian.PutUint64(b[i:], tg)
	}
	for ; i < end; i++ {
		b[i] = byte(tg >> (8 * (i % 8)))
	}
	for i < len(b) { // double what is filled: memmove speed
		i += copy(b[i:], b[start:i])
	}
}

// check reports whether b holds the repeated tag from its start: the first
// 64 bytes word by word, then the rest against the block shifted by 64
// bytes (one memcmp, so a large block checks at memory speed).
func check(b []byte, tg uint64) bool {
	i := 0
	for ; i+8 <= len(b) && i < 64; i += 8 {
		if binary.LittleEndian.Uint64(b[i:]) != tg {
			return false
		}
	}
	if len(b) < 64 {
		for ; i < len(b); i++ {
			if b[i] != byte(tg>>(8*(i%8))) {
				return false
			}
		}
		return true
	}
	return bytes.Equal(b[64:], b[:len(b)-64])
}

// finish fills in the figures measured at the end of a run from the
// instance and the sampler's series.
func finish(res *result, in *instance, s *sampler.Sampler) {
	end := s.Samples[len(s.Samples)-1]
	if in.a != nil {
		res.PeakResidentBytes = s.Peak().Resident
		res.FinalResidentBytes = end.Resident
		res.TrappedBytes = end.Trapped
		res.MinorFaults = end.MinorFaults - s.Samples[0].MinorFaults
	} else {
		res.PeakResidentBytes = sat(end.PeakRSS, in.baseRSS)
		res.FinalResidentBytes = end.Resident
		res.MinorFaults = end.MinorFaults - s.Samples[0].MinorFaults
	}
	res.PeakRSSGrowthBytes = sat(end.PeakRSS, in.baseRSS)
	if res.PeakLiveBytes > 0 {
		res.Fragmentation = float64(res.PeakResidentBytes) / float64(res.PeakLiveBytes)
	}
	res.MmapCalls, res.MunmapCalls, res.MadviseCalls, res.MprotectCalls = in.callCounts()
	res.Series = s.Samples
}
