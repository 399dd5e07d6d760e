package shm

import (
	"bytes"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/brkmap/alloc/internal/alloctest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

var blocksFlag = flag.Int("shm.blocks", 0, "blocks each process allocates and frees in TestTwoProcesses (0: 100k, 20k with -short)")

const (
	blocksEnv = "BRKMAP_SHM_BLOCKS"
	window    = 1024 // live blocks each process keeps
)

// workload allocates and frees n blocks of 16–512 bytes in p, keeping the
// last window blocks live: each block is filled with a pattern seeded by
// this process's pid and the block's number, and checked before it is
// freed, so a block handed to two processes at once (or written through
// the pool's own metadata) shows as corruption. It returns the time the
// loop took.
func workload(p *Pool, n int) (time.Duration, error) {
	type blk struct {
		r    Ref
		b    []byte
		seed uint32
	}
	pid := uint32(os.Getpid())
	rng := rand.New(rand.NewPCG(uint64(pid), 1))
	ring := make([]blk, window)
	check := func(x blk) error {
		if i := alloctest.Intact(x.b, x.seed); i >= 0 {
			return fmt.Errorf("pid %d: block %v (%d bytes) corrupt at byte %d", pid, x.r, len(x.b), i)
		}
		return p.Free(x.r)
	}
	start := time.Now()
	for i := range n {
		x := &ring[i%window]
		if x.r != 0 {
			if err := check(*x); err != nil {
				return 0, err
			}
		}
		r, b, err := p.Alloc(16 + rng.IntN(497))
		if err != nil {
			return 0, err
		}
		x.r, x.b, x.seed = r, b, pid<<12^uint32(i)
		alloctest.Fill(b, x.seed)
	}
	for _, x := range ring {
		if x.r != 0 {
			if err := check(x); err != nil {
				return 0, err
			}
		}
	}
	return time.Since(start), nil
}

func init() {
	children["workload"] = func() error {
		p, err := childPool()
		if err != nil {
			return err
		}
		n, err := strconv.Atoi(os.Getenv(blocksEnv))
		if err != nil {
			return err
		}
		cpu0 := cpuTime()
		d, err := workload(p, n)
		if err != nil {
			return err
		}
		fmt.Println(d.Nanoseconds(), (cpuTime() - cpu0).Nanoseconds())
		return p.Close()
	}
}

// cpuTime is the CPU time this process has used (user and system).
func cpuTime() time.Duration {
	var ru unix.Rusage
	if unix.Getrusage(unix.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// run is one child's figures: the loop's wall time and its CPU time.
type run struct{ wall, cpu time.Duration }

// runWorkloads runs procs children at once, each allocating and freeing n
// blocks of the pool, and returns each one's loop time.
func runWorkloads(p *Pool, procs, n int) ([]run, error) {
	cmds := make([]*exec.Cmd, procs)
	outs := make([]bytes.Buffer, procs)
	for i := range cmds {
		cmds[i] = child(p, "workload", fmt.Sprintf("%s=%d", blocksEnv, n))
		cmds[i].Stdout = &outs[i]
		if err := cmds[i].Start(); err != nil {
			return nil, err
		}
	}
	var rs []run
	for i, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			return nil, fmt.Errorf("child %d: %w", i, err)
		}
		var r run
		if _, err := fmt.Sscan(outs[i].String(), &r.wall, &r.cpu); err != nil {
			return nil, fmt.Errorf("child %d printed %q", i, outs[i].String())
		}
		rs = append(rs, r)
	}
	return rs, nil
}

// TestTwoProcesses: two processes allocating and freeing from one pool at
// once, each checking its blocks' contents before freeing them, then the
// verifier; and the same workload in one process alone, for the speed
// ratio (logged; BenchmarkProcesses measures it with benchstat).
func TestTwoProcesses(t *testing.T) {
	n := *blocksFlag
	if n == 0 {
		n = 100_000
		if testing.Short() {
			n = 20_000
		}
	}
	p := newTestPool(t, 64<<20)
	one, err := runWorkloads(p, 1, n)
	require.NoError(t, err)
	rep := mustCheck(t, p)
	assert.Zero(t, rep.LiveBlocks)

	two, err := runWorkloads(p, 2, n)
	require.NoError(t, err, "no corruption in either process")
	rep = mustCheck(t, p)
	assert.Zero(t, rep.LiveBlocks)
	assert.False(t, rep.Recovered)

	perPair := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / float64(n) }
	slow := max(two[0].wall, two[1].wall)
	t.Logf("%d blocks a process: one process alone %.0f ns/pair (CPU %.0f); two at once %.0f and %.0f ns/pair (CPU %.0f and %.0f); "+
		"speed of each of two / alone = %.2f (wall), %.2f (CPU)",
		n, perPair(one[0].wall), perPair(one[0].cpu), perPair(two[0].wall), perPair(two[1].wall),
		perPair(two[0].cpu), perPair(two[1].cpu),
		float64(one[0].wall)/float64(slow), float64(one[0].cpu)/float64(max(two[0].cpu, two[1].cpu)))
}

// BenchmarkProcesses: ns per Alloc+Free pair (block filled and checked)
// in each of 1 or 2 processes sharing a pool. Run with
// -benchtime=1000000x for the 1M blocks a process.
func BenchmarkProcesses(b *testing.B) {
	for _, procs := range []int{1, 2} {
		b.Run(fmt.Sprintf("procs=%d", procs), func(b *testing.B) {
			p := newTestPool(b, 64<<20)
			rs, err := runWorkloads(p, procs, b.N)
			require.NoError(b, err)
			var slow, cpu time.Duration
			for _, r := range rs {
				slow, cpu = max(slow, r.wall), max(cpu, r.cpu)
			}
			b.ReportMetric(float64(slow.Nanoseconds())/float64(b.N), "ns/pair")
			b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/pair")
			b.ReportMetric(0, "ns/op")
			rep := mustCheck(b, p)
			require.Zero(b, rep.LiveBlocks)
		})
	}
}

// BenchmarkPair: Alloc+Free of a small block in this process alone, the
// cost of the pool's lock and undo log without the fill and check.
func BenchmarkPair(b *testing.B) {
	p := newTestPool(b, 16<<20)
	for b.Loop() {
		r, _, err := p.Alloc(64)
		if err != nil {
			b.Fatal(err)
		}
		if err := p.Free(r); err != nil {
			b.Fatal(err)
		}
	}
}
