package alloc_test

import (
	"bytes"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/google/pprof/profile"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/brkmap/alloc"
	"github.com/brkmap/alloc/stats"
)

// withProfileRate makes an allocator sampling at rate.
func withProfileRate(t *testing.T, rate int, cfg alloc.Config) *alloc.Allocator {
	t.Helper()
	old := alloc.ProfileRate
	alloc.ProfileRate = rate
	defer func() { alloc.ProfileRate = old }()
	return newAlloc(t, cfg)
}

func parseProfile(t *testing.T, a *alloc.Allocator) *profile.Profile {
	t.Helper()
	var buf bytes.Buffer
	require.NoError(t, a.HeapProfile().Write(&buf))
	p, err := profile.Parse(&buf)
	require.NoError(t, err)
	return p
}

// site sums the samples whose leaf is the function named by suffix:
// alloc_objects, alloc_space, inuse_objects, inuse_space.
func site(p *profile.Profile, suffix string) (v [4]int64, found bool) {
	for _, s := range p.Sample {
		l := s.Location[0].Line
		if strings.HasSuffix(l[len(l)-1].Function.Name, suffix) {
			for i := range v {
				v[i] += s.Value[i]
			}
			found = true
		}
	}
	return v, found
}

//go:noinline
func allocateForProfile(a *alloc.Allocator, n, size int) [][]byte {
	bs := make([][]byte, n)
	for i := range bs {
		var err error
		if bs[i], err = a.Malloc(size); err != nil {
			panic(err)
		}
	}
	return bs
}

//go:noinline
func makeSliceForProfile(a *alloc.Allocator) []uint64 {
	s, err := alloc.MakeSlice[uint64](a, 100)
	if err != nil {
		panic(err)
	}
	return s
}

// With every allocation recorded, the profile parsed back names the
// allocating function at its leaf and counts exactly what it allocated
// and freed — small blocks, page runs and mappings alike.
func TestHeapProfileRecordsEveryAllocation(t *testing.T) {
	for _, size := range []int{4096, 64 << 10, 1 << 20} {
		a := withProfileRate(t, 1, alloc.Config{})
		bs := allocateForProfile(a, 10, size)
		for _, b := range bs[:4] {
			require.NoError(t, a.Free(b))
		}
		p := parseProfile(t, a)
		v, found := site(p, ".allocateForProfile")
		require.True(t, found, "size %d: no sample names the allocating function", size)
		assert.Equal(t, [4]int64{10, int64(10 * size), 6, int64(6 * size)}, v, "size %d", size)
		for _, f := range p.Function {
			assert.NotContains(t, f.Name, "(*Allocator)", "the allocator's own frames are cut")
		}
		for _, b := range bs[4:] {
			require.NoError(t, a.Free(b))
		}
		v, _ = site(parseProfile(t, a), ".allocateForProfile")
		assert.Equal(t, [4]int64{10, int64(10 * size), 0, 0}, v, "size %d: all freed", size)
	}
}

//go:noinline
func localAllocateForProfile(l *alloc.Local, n, size int) [][]byte {
	bs := make([][]byte, n)
	for i := range bs {
		var err error
		if bs[i], err = l.Malloc(size); err != nil {
			panic(err)
		}
	}
	return bs
}

// A Local's allocations are sampled as the Allocator's (its bins leave
// the sample to their slow path), with the Local's frames cut, and its
// frees of sampled blocks are counted.
func TestHeapProfileLocal(t *testing.T) {
	for _, size := range []int{64, 4096, 64 << 10} {
		a := withProfileRate(t, 1, alloc.Config{})
		l := a.NewLocal()
		bs := localAllocateForProfile(l, 10, size)
		for _, b := range bs[:4] {
			require.NoError(t, l.Free(b))
		}
		p := parseProfile(t, a)
		v, found := site(p, ".localAllocateForProfile")
		require.True(t, found, "size %d: no sample names the allocating function", size)
		assert.Equal(t, [4]int64{10, int64(10 * size), 6, int64(6 * size)}, v, "size %d", size)
		for _, f := range p.Function {
			assert.NotContains(t, f.Name, "(*Local)", "the Local's own frames are cut")
		}
		for _, b := range bs[4:] {
			require.NoError(t, a.Free(b))
		}
		require.NoError(t, l.Close())
	}
}

// The typed helpers are cut too: the leaf is their caller.
func TestHeapProfileTypedHelper(t *testing.T) {
	a := withProfileRate(t, 1, alloc.Config{})
	s := makeSliceForProfile(a)
	v, found := site(parseProfile(t, a), ".makeSliceForProfile")
	require.True(t, found)
	assert.Equal(t, [4]int64{1, 800, 1, 800}, v)
	require.NoError(t, alloc.FreeSlice(a, s))
}

// At the default rate, the scaled estimates are unbiased: 256 MiB
// allocated in 4 KiB blocks is about 512 samples, so the estimate falls
// within 20% (4.5 standard deviations) of the truth.
func TestHeapProfileSampledEstimate(t *testing.T) {
	a := withProfileRate(t, stats.DefaultProfileRate, alloc.Config{})
	const total, size = 256 << 20, 4096
	for range total / size / 1024 {
		for _, b := range allocateForProfile(a, 1024, size) {
			require.NoError(t, a.Free(b))
		}
	}
	v, found := site(parseProfile(t, a), ".allocateForProfile")
	require.True(t, found)
	assert.InEpsilon(t, total, v[1], 0.20, "alloc_space estimate")
	assert.InEpsilon(t, total/size, v[0], 0.20, "alloc_objects estimate")
	assert.Zero(t, v[3], "everything was freed")
}

// ProfileRate 0 records nothing.
func TestHeapProfileOff(t *testing.T) {
	a := withProfileRate(t, 0, alloc.Config{})
	for _, b := range allocateForProfile(a, 100, 1<<20) {
		require.NoError(t, a.Free(b))
	}
	h := a.HeapProfile()
	assert.Empty(t, h.Records)
	assert.Zero(t, h.Rate)
	var buf bytes.Buffer
	require.NoError(t, h.Write(&buf), "an empty profile is still a valid one")
}

// A mapping moved by Realloc stays recorded under its new address, and
// its Free is counted.
func TestHeapProfileRealloc(t *testing.T) {
	a := withProfileRate(t, 1, alloc.Config{})
	b := allocateForProfile(a, 1, 1<<20)[0]
	var err error
	for _, n := range []int{4 << 20, 64 << 20, 100} {
		b, err = a.Realloc(b, n)
		require.NoError(t, err)
	}
	// sums adds up every sample's values: alloc_objects, alloc_space,
	// inuse_objects, inuse_space.
	sums := func() (v [4]int64) {
		for _, s := range parseProfile(t, a).Sample {
			for i := range v {
				v[i] += s.Value[i]
			}
		}
		return v
	}
	live := sums()
	require.Positive(t, live[0], "the allocation was recorded")
	assert.EqualValues(t, 1, live[2], "one block in use, under its last address")
	assert.Positive(t, live[3])
	require.NoError(t, a.Free(b))
	freed := sums()
	assert.Equal(t, live[0], freed[0], "allocations stay in the profile")
	assert.Zero(t, freed[2], "every block, moved or not, was freed")
	assert.Zero(t, freed[3])
}

// Close frees everything, and the profile says so.
func TestHeapProfileClose(t *testing.T) {
	a := withProfileRate(t, 1, alloc.Config{})
	allocateForProfile(a, 5, 100)
	allocateForProfile(a, 5, 1<<20)
	require.NoError(t, a.Close())
	v, _ := site(a.HeapProfile().Profile(), ".allocateForProfile")
	assert.Equal(t, int64(10), v[0])
	assert.Zero(t, v[2])
}

// Concurrent allocations and frees keep the records consistent.
func TestHeapProfileConcurrent(t *testing.T) {
	a := withProfileRate(t, 1, alloc.Config{})
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				for _, b := range allocateForProfile(a, 8, 16+(g*997+i*131)%(200<<10)) {
					if err := a.Free(b); err != nil {
						panic(err)
					}
				}
			}
		}()
	}
	wg.Wait()
	v, found := site(parseProfile(t, a), ".allocateForProfile")
	require.True(t, found)
	assert.Equal(t, int64(4*200*8), v[0])
	assert.Zero(t, v[2])
}

// BenchmarkPairProfiling is the small Malloc+Free pair with heap profiling
// off and at its default rate; compare with
//
//	go test -run XXX -bench PairProfiling -count 10 . | tee out.txt
//	benchstat -col /profile out.txt
func BenchmarkPairProfiling(b *testing.B) {
	for _, rate := range []struct {
		name string
		rate int
	}{{"off", 0}, {"on", stats.DefaultProfileRate}} {
		for _, n := range []int{16, 64, 1024} {
			b.Run(fmt.Sprintf("profile=%s/size=%d", rate.name, n), func(b *testing.B) {
				old := alloc.ProfileRate
				alloc.ProfileRate = rate.rate
				a, err := alloc.New(alloc.Config{})
				alloc.ProfileRate = old
				require.NoError(b, err)
				defer a.Close()
				b.ReportAllocs()
				for b.Loop() {
					p, err := a.Malloc(n)
					if err != nil {
						b.Fatal(err)
					}
					p[0] = 1
					if err := a.Free(p); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
