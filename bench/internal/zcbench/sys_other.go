//go:build !linux

package zcbench

// fsType: not told apart off Linux.
func fsType(string) (string, bool) { return "unknown", false }

// cachedFraction: not measured off Linux.
func cachedFraction(string) float64 { return -1 }

// threadCPU: no per-thread rusage off Linux; the receiver's CPU reads 0.
func threadCPU() float64 { return 0 }
