//go:build race

package workloads

// raceEnabled: the race detector's shadow memory needs mappings of its own,
// so a workload that drives the process to vm.max_map_count (mmap-wall)
// leaves it none and the detector dies with ENOMEM.
const raceEnabled = true
