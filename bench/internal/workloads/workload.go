// Package workloads holds bench's built-in lessons: programs that allocate
// from a heap, the same under every policy, each with a paragraph saying
// what to look at (lessons.go, hugepages.go). Measure runs one under one
// policy in this process; the bench command runs it in a child process
// per (workload, policy) and puts the results in its table and report.
package workloads

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/brkmap/alloc"
	"github.com/brkmap/alloc/bench/internal/harness"
	"github.com/brkmap/alloc/bench/internal/sampler"
)

// Workload is one lesson: a program that allocates from a heap, the same
// under every policy, and a paragraph saying what to look at.
//
// To add a lesson, add one to List: the command runs it under every
// policy in its own child process, puts it in the table, plots its
// resident memory over time and its region map, and prints its lesson on
// the report page. A lesson that needs a different configuration (huge
// pages, say) sets Configure.
type Workload struct {
	Name   string
	Title  string // one line, for the terminal
	Lesson string // a paragraph, for the report page
	Run    func(h harness.Heap, m *Meter) error
	// Configure, when set, adjusts every policy's Config for this
	// workload (not the libc policy's, which has none).
	Configure func(*alloc.Config)
}

// List is every built-in workload, in the order of the table and the
// report.
var List = append(append(lessons(), spikeLesson()), hugePagesLessons()...)

// Find returns the workload called name.
func Find(name string) (Workload, bool) {
	for _, w := range List {
		if w.Name == name {
			return w, true
		}
	}
	return Workload{}, false
}

// Meter is what a workload gets besides its heap: the sampler to Tick
// (every few dozen operations) and Mark (at its named moments), a scale
// (1 for the real run; tests shrink workloads), and notes for the report.
type Meter struct {
	*sampler.Sampler
	Scale float64
	Notes []string
}

// n scales a count, never below 1.
func (m *Meter) n(x int) int { return max(1, int(float64(x)*m.Scale)) }

func (m *Meter) note(format string, args ...any) {
	m.Notes = append(m.Notes, fmt.Sprintf(format, args...))
}

// Measure runs one workload under one policy, in this process.
func Measure(name string, p harness.Policy, scale float64) *harness.Result {
	res := &harness.Result{Trace: name, Policy: p.Name, ResidentFrom: "mincore"}
	w, ok := Find(name)
	if !ok {
		res.Error = "unknown workload " + name
		return res
	}
	in, err := res.Instance(p, 0, w.Configure)
	if err != nil {
		return res
	}
	defer in.Close()
	in.Maps = true
	s := sampler.New(2*time.Millisecond, in.Probe)
	m := &Meter{Sampler: s, Scale: scale}
	if err := in.Start(s); err != nil {
		res.Error = err.Error()
		return res
	}
	s.Start()
	counted := &harness.CountingHeap{Heap: in.Heap, S: s}
	err = w.Run(counted, m)
	elapsed := s.Elapsed()
	s.Mark("end")
	res.Seconds = elapsed.Seconds()
	res.PeakLiveBytes = counted.Peak
	in.Finish(res, s)
	if in.A != nil {
		res.PeakMap, res.Moments = &in.PeakMap, in.Moments
	}
	res.Note = strings.Join(m.Notes, " ")
	res.OK = err == nil
	if err != nil {
		res.Error = err.Error()
	}
	return res
}

// touch writes one byte in every page of b (and its last byte).
func touch(b []byte) {
	for i := 0; i < len(b); i += 4096 {
		b[i] = 1
	}
	if len(b) > 0 {
		b[len(b)-1] = 1
	}
}

// logUniform returns a size between lo and hi whose logarithm is uniform.
func logUniform(r *rand.Rand, lo, hi int) int {
	return int(math.Exp(math.Log(float64(lo)) + r.Float64()*(math.Log(float64(hi))-math.Log(float64(lo)))))
}
