package sampler

import (
	"testing"
	"time"

	"github.com/brkmap/alloc/internal/procfs"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The sampler takes a sample when one is due, names marked samples, keeps
// its own time out of Elapsed, and finds the peak. Its clock is one the
// test moves by hand, so every figure is exact.
func TestSampler(t *testing.T) {
	clock := time.Unix(1e9, 0)
	live := uint64(0)
	calls := 0
	s := New(time.Millisecond, func(p *Sample) {
		calls++
		p.LiveBytes = live
		p.Resident = live * 2
		clock = clock.Add(2 * time.Millisecond) // a slow probe: its time must not count
	})
	s.Now = func() time.Time { return clock }
	wall := clock
	s.Start()
	require.Len(t, s.Samples, 1)
	assert.Equal(t, "start", s.Samples[0].Label)
	assert.Zero(t, s.Samples[0].At)

	s.Tick() // not due yet: the last sample just ended
	assert.Len(t, s.Samples, 1)
	clock = clock.Add(8*time.Millisecond - time.Nanosecond)
	s.Tick() // due at max(every, 4×probe time) = 8 ms after the sample ended
	assert.Len(t, s.Samples, 1, "one nanosecond early")

	for i := 1; i <= 3; i++ {
		live = uint64(i) << 20
		clock = clock.Add(40 * time.Millisecond)
		s.Tick()
		require.Len(t, s.Samples, 1+i)
		s.Tick() // due again only 8 ms after this one
		require.Len(t, s.Samples, 1+i)
	}
	live = 1 << 20
	clock = clock.Add(time.Millisecond)
	s.Mark("end") // a mark is taken whenever it is asked for
	require.Len(t, s.Samples, 5)
	assert.Equal(t, calls, len(s.Samples))
	assert.Equal(t, "end", s.Samples[4].Label)

	// The run's own time: 8 ms - 1 ns, then 40 ms three times, then 1 ms,
	// with the four earlier probes' 2 ms each left out.
	run := 8*time.Millisecond - time.Nanosecond
	for i, want := range []time.Duration{0, run + 40*time.Millisecond, run + 80*time.Millisecond, run + 120*time.Millisecond,
		run + 121*time.Millisecond} {
		assert.Equal(t, want, s.Samples[i].At, "sample %d", i)
	}
	assert.Equal(t, 10*time.Millisecond, s.Spent(), "five probes of 2 ms")
	assert.Equal(t, clock.Sub(wall)-s.Spent(), s.Elapsed(), "Elapsed leaves the probes out")
	assert.Equal(t, run+121*time.Millisecond, s.Elapsed())
	assert.Equal(t, uint64(6<<20), s.Peak().Resident)
	assert.Equal(t, uint64(3<<20), s.Max(func(p Sample) uint64 { return p.LiveBytes }))
	assert.Positive(t, s.Samples[0].RSS, "the sampler reads the process's RSS")
}

// The /proc readers agree with the project's procfs reader and count the
// mappings, and a sample of a reserved series allocates nothing.
func TestProcReaders(t *testing.T) {
	rss, hwm, err := ReadStatus()
	require.NoError(t, err)
	m, err := procfs.ReadProcMemory()
	require.NoError(t, err)
	assert.InDelta(t, float64(m.RSS), float64(rss), float64(4<<20), "VmRSS")
	assert.GreaterOrEqual(t, hwm, rss, "VmHWM is at least VmRSS")
	assert.InDelta(t, float64(procfs.MapCount()), float64(CountMaps()), 8, "the lines of /proc/self/maps")

	v, ok := statusKB([]byte("Name:\tx\nVmRSS:\t    1234 kB\n"), "\nVmRSS:")
	assert.True(t, ok)
	assert.Equal(t, uint64(1234<<10), v)
	_, ok = statusKB([]byte("Name:\tx\n"), "\nVmRSS:")
	assert.False(t, ok)

	s := New(time.Nanosecond, func(p *Sample) { p.Resident = p.RSS })
	s.CountMaps = true
	s.Reserve(64)
	s.Start()
	allocs := testing.AllocsPerRun(20, func() { s.Mark("m") })
	assert.Zero(t, allocs, "a sample allocates nothing")
	assert.Positive(t, s.Samples[1].Mappings)
}

// Event samples at once, unless the last sample took more than eight
// times the time since it ended, and up to MaxEvents samples, then only when due.
func TestEvent(t *testing.T) {
	slow := false
	s := New(time.Hour, func(*Sample) {
		if slow {
			time.Sleep(20 * time.Millisecond)
		}
	})
	s.Reserve(MaxEvents + 1)
	s.Start()
	time.Sleep(time.Millisecond)
	s.Event()
	assert.Len(t, s.Samples, 2, "a fast sample before: taken")
	slow = true
	time.Sleep(time.Millisecond)
	s.Event()
	require.Len(t, s.Samples, 3)
	s.Event()
	assert.Len(t, s.Samples, 3, "just after a 20 ms sample: skipped")
	time.Sleep(5 * time.Millisecond)
	slow = false
	s.Event()
	assert.Len(t, s.Samples, 4, "longer after it than it took: taken")
	s.Samples = s.Samples[:MaxEvents]
	time.Sleep(time.Millisecond)
	s.Event()
	assert.Len(t, s.Samples, MaxEvents, "past the bound: not due for an hour")
}
