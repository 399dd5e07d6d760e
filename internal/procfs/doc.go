// Package procfs reads what the kernel publishes about this process and
// its memory in /proc and /sys — files, not system calls, so they live
// apart from internal/sys, the counted system-call wrapper:
//
//   - thp.go: the transparent huge page mode and size (sysfs), read once
//     when an allocator is made;
//   - smaps.go: /proc/self/smaps, per mapping (AnonHugePages, VmFlags), for
//     Snapshot.HugeResident;
//   - status.go: /proc/self/status (VmRSS, VmHWM) and resetting the peak,
//     for the benchmarks' process-wide figures;
//   - maps.go: the number of mappings (/proc/self/maps) and the kernel's cap
//     on it (vm.max_map_count).
//
// The parsers are written by hand rather than taken from
// github.com/prometheus/procfs: that module reads smaps only as a rollup
// (no per-mapping AnonHugePages or VmFlags, which HugeResident needs) and
// has no reader of the THP sysfs files, and the parsers here reuse one
// buffer so that Allocator.Stats does not allocate a new one every call.
//
// The paths are variables so that a test can point them at a file of its
// own and see how the allocator behaves on another kernel.
package procfs
