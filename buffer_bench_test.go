package alloc_test

import (
	"bytes"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"testing"

	"github.com/brkmap/alloc"
	"github.com/brkmap/alloc/internal/procfs"
)

// BenchmarkBuffer builds a response body of 4 KiB, 1 MiB and 64 MiB in
// 1 KiB writes, drains it with WriteTo and lets the buffer go, in a fresh
// bytes.Buffer (left to the garbage collector) and in a fresh alloc.Buffer
// (freed). Besides time it reports, per operation, the garbage collector's
// cycles (GCs/op) and, for the whole run, the peak resident memory above
// the RSS it started from after a forced GC and scavenge (peak-RSS-MiB,
// Linux only: VmHWM reset through /proc/self/clear_refs).
//
//	go test -run '^$' -bench BenchmarkBuffer -count 6 . | tee new.txt
//	go run golang.org/x/perf/cmd/benchstat@latest -col /impl new.txt
func BenchmarkBuffer(b *testing.B) {
	chunk := bytes.Repeat([]byte("0123456789abcdef"), 64) // 1 KiB
	for _, size := range []int{4 << 10, 1 << 20, 64 << 20} {
		name := fmt.Sprintf("body=%dKiB", size>>10)
		if size >= 1<<20 {
			name = fmt.Sprintf("body=%dMiB", size>>20)
		}
		b.Run(name+"/impl=bytes.Buffer", func(b *testing.B) {
			measureBuild(b, size, func() {
				buf := new(bytes.Buffer)
				build(b, buf, chunk, size)
				if _, err := buf.WriteTo(io.Discard); err != nil {
					b.Fatal(err)
				}
			})
		})
		b.Run(name+"/impl=alloc.Buffer", func(b *testing.B) {
			a, err := alloc.New(alloc.Config{})
			if err != nil {
				b.Fatal(err)
			}
			defer a.Close()
			measureBuild(b, size, func() {
				buf, err := a.NewBuffer(0)
				if err != nil {
					b.Fatal(err)
				}
				build(b, buf, chunk, size)
				if _, err := buf.WriteTo(io.Discard); err != nil {
					b.Fatal(err)
				}
				if err := buf.Free(); err != nil {
					b.Fatal(err)
				}
			})
		})
	}
}

// build writes size bytes to w in chunks.
func build(b *testing.B, w io.Writer, chunk []byte, size int) {
	for n := 0; n < size; n += len(chunk) {
		if _, err := w.Write(chunk); err != nil {
			b.Fatal(err)
		}
	}
}

// measureBuild runs op in b.Loop and reports GC cycles per op and the
// peak RSS growth over the run.
func measureBuild(b *testing.B, size int, op func()) {
	b.SetBytes(int64(size))
	b.ReportAllocs()
	runtime.GC()
	debug.FreeOSMemory()
	start, rssErr := procfs.ReadProcMemory()
	if rssErr == nil {
		rssErr = procfs.ResetPeakRSS()
	}
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	n := 0
	for b.Loop() {
		op()
		n++
	}
	runtime.ReadMemStats(&m1)
	b.ReportMetric(float64(m1.NumGC-m0.NumGC)/float64(n), "GCs/op")
	if rssErr != nil {
		return // no /proc (not Linux): no peak to report
	}
	if end, err := procfs.ReadProcMemory(); err == nil && end.PeakRSS >= start.RSS {
		b.ReportMetric(float64(end.PeakRSS-start.RSS)/(1<<20), "peak-RSS-MiB")
	}
}
