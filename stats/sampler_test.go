package stats

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

func TestReadProcMemory(t *testing.T) {
	before, err := ReadProcMemory()
	require.NoError(t, err)
	require.Positive(t, before.RSS)
	assert.GreaterOrEqual(t, before.PeakRSS, before.RSS)

	// Map and touch 32 MiB, check that VmRSS and VmHWM saw it; unmap it
	// and check that ResetPeakRSS forgets it.
	b, err := unix.Mmap(-1, 0, 32<<20, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	require.NoError(t, err)
	for i := 0; i < len(b); i += 4096 {
		b[i] = 1
	}
	during, err := ReadProcMemory()
	require.NoError(t, err)
	assert.GreaterOrEqual(t, during.RSS, before.RSS+30<<20)
	assert.GreaterOrEqual(t, during.PeakRSS, during.RSS)
	require.NoError(t, unix.Munmap(b))
	require.NoError(t, ResetPeakRSS())
	after, err := ReadProcMemory()
	require.NoError(t, err)
	assert.Less(t, after.PeakRSS, during.PeakRSS-16<<20)
}

// The sampler takes a sample when one is due, names marked samples, keeps
// its own time out of Elapsed, and finds the peak. Its clock is one the
// test moves by hand, so every figure is exact.
func TestSampler(t *testing.T) {
	clock := time.Unix(1e9, 0)
	live := uint64(0)
	calls := 0
	s := NewSampler(time.Millisecond, func(p *Sample) {
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

func TestRegionMapAdd(t *testing.T) {
	var m RegionMap
	m.Add(4096, PageLive)
	m.Add(8192, PageLive)
	m.Add(0, PageTrapped)
	m.Add(4096, PageTrapped)
	m.Add(4096, PageReleased)
	m.Add(4096, PageLive)
	assert.Equal(t, []Extent{
		{0, 12288, PageLive}, {12288, 4096, PageTrapped}, {16384, 4096, PageReleased}, {20480, 4096, PageLive},
	}, m.Extents)
	assert.Equal(t, uint64(24576), m.Break)
	assert.Equal(t, uint64(16384), m.Bytes(PageLive))
	assert.Equal(t, uint64(4096), m.Trapped())
	assert.Equal(t, "trapped", PageTrapped.String())
}
