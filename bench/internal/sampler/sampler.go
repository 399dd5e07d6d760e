// Package sampler records a time series of memory figures during one
// benchmark run: the process's RSS and peak (from /proc) and whatever the
// run's Probe fills in (the allocator's Stats, or glibc's counted bytes).
package sampler

import (
	"time"
)

// Sample is one point of a time series: an allocator (or, for the glibc
// baseline, the process) measured at one moment of a run.
type Sample struct {
	// At is the run's own time at this sample: wall time since Start minus
	// the time spent taking earlier samples.
	At    time.Duration `json:"at_ns"`
	Label string        `json:"label,omitempty"` // the moment's name, for marked samples

	Resident    uint64 `json:"resident"`      // this allocator's memory in RAM (mincore), or RSS growth for glibc
	RSS         uint64 `json:"rss"`           // the process's VmRSS
	PeakRSS     uint64 `json:"peak_rss"`      // the process's VmHWM
	LiveBytes   uint64 `json:"live_bytes"`    // requested by live blocks
	ArenaBytes  uint64 `json:"arena_bytes"`   // region, base to break
	MmapBytes   uint64 `json:"mmap_bytes"`    // live large mappings
	Trapped     uint64 `json:"trapped_bytes"` // free pages below the break still resident
	Syscalls    uint64 `json:"syscalls"`      // memory-management calls so far
	MinorFaults uint64 `json:"minor_faults"`  // the process's minor faults so far

	// glibc's heap as glibc counts it (mallinfo2: arena + hblkhd), for the
	// libc policy; 0 for the others.
	LibcHeap uint64 `json:"libc_heap,omitempty"`
	// The thresholds in effect (Stats; this allocator only).
	MmapThreshold uint64 `json:"mmap_threshold,omitempty"`
	TrimThreshold uint64 `json:"trim_threshold,omitempty"`
	// The process's mappings (lines of /proc/self/maps), when the run
	// counts them (Sampler.CountMaps).
	Mappings int `json:"mappings,omitempty"`
}

// Probe fills in the allocator's side of a sample (everything but At,
// Label, RSS and PeakRSS, which the Sampler fills in first).
type Probe func(s *Sample)

// Sampler records a time series during a run. The run calls Tick often
// (every few dozen operations); Tick takes a sample only when one is due,
// so it costs a clock read otherwise. Mark takes one at once, with a
// name. The time spent sampling is kept out of the run's clock (Elapsed),
// so a run measured with a sampler reports its own time, not the
// sampler's.
//
// A Sampler belongs to one goroutine: it has no lock.
type Sampler struct {
	// Samples holds the series, in order.
	Samples []Sample

	// Now is the sampler's clock; nil means time.Now. Tests set it to a
	// clock they move by hand, so that which Tick samples is exact.
	Now func() time.Time

	// CountMaps makes every sample count the process's mappings.
	CountMaps bool

	probe Probe
	every time.Duration
	start time.Time
	next  time.Time
	spent time.Duration

	lastEnd  time.Time     // when the last sample ended
	lastCost time.Duration // and how long it took
}

// New returns a sampler that samples at most about once per every
// (and less often when a sample itself is slow: never more than a fifth
// of the run's wall time goes to sampling).
func New(every time.Duration, probe Probe) *Sampler {
	return &Sampler{probe: probe, every: every}
}

// Reserve gives the series room for n samples now, every page of it
// written, so that sampling a run allocates nothing and faults no page in
// (the libc policy measures the process's RSS: the sampler must not add
// to it).
func (s *Sampler) Reserve(n int) {
	if cap(s.Samples) < n {
		s.Samples = make([]Sample, n)
	}
	all := s.Samples[:cap(s.Samples)]
	for i := range all {
		all[i] = Sample{Label: "x"}
	}
	s.Samples = all[:0]
}

// Start starts the clock and takes the first sample, named "start".
func (s *Sampler) Start() {
	s.Samples = s.Samples[:0]
	s.spent = 0
	s.start = s.now()
	s.take(s.start, "start")
}

// Tick takes a sample if one is due.
func (s *Sampler) Tick() {
	if now := s.now(); !now.Before(s.next) {
		s.take(now, "")
	}
}

// Mark takes a sample now, named label.
func (s *Sampler) Mark(label string) { s.take(s.now(), label) }

func (s *Sampler) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// Event takes a sample now, unnamed: the run calls it after each
// operation that changed its memory by many pages (a large block
// allocated and written, or freed), so that every such cycle shows. So
// that sampling never takes more than about nine tenths of the wall time
// (its time is not the run's: Elapsed leaves it out), it skips an event
// that comes sooner after the last sample than an eighth of what that
// sample took;
// past MaxEvents samples it only takes those that are due, as Tick does.
func (s *Sampler) Event() {
	now := s.now()
	if len(s.Samples) >= MaxEvents || now.Sub(s.lastEnd) < s.lastCost/8 {
		s.Tick()
		return
	}
	s.take(now, "")
}

// MaxEvents bounds the series Event makes.
const MaxEvents = 1 << 14

func (s *Sampler) take(now time.Time, label string) {
	// The sample is filled in place: a local passed to the probe would
	// escape, and a sample must not allocate.
	s.Samples = append(s.Samples, Sample{At: now.Sub(s.start) - s.spent, Label: label})
	p := &s.Samples[len(s.Samples)-1]
	p.RSS, p.PeakRSS, _ = ReadStatus()
	if s.CountMaps {
		p.Mappings = CountMaps()
	}
	if s.probe != nil {
		s.probe(p)
	}
	end := s.now()
	d := end.Sub(now)
	s.lastEnd, s.lastCost = end, d
	s.spent += d
	s.next = end.Add(max(s.every, 4*d))
}

// Elapsed returns the wall time since Start minus the time spent sampling.
func (s *Sampler) Elapsed() time.Duration { return s.now().Sub(s.start) - s.spent }

// Spent returns the time spent sampling since Start.
func (s *Sampler) Spent() time.Duration { return s.spent }

// Peak returns the sample with the highest Resident (the first of equals),
// or a zero Sample if there are none.
func (s *Sampler) Peak() Sample {
	var best Sample
	for i, p := range s.Samples {
		if i == 0 || p.Resident > best.Resident {
			best = p
		}
	}
	return best
}

// Max returns the highest value of field over the series.
func (s *Sampler) Max(field func(Sample) uint64) uint64 {
	var m uint64
	for _, p := range s.Samples {
		m = max(m, field(p))
	}
	return m
}
