//go:build race

package alloc_test

// raceBuild: the allocator changes block states with compare-and-swap in
// race builds, so a double free racing with itself is caught exactly once.
const raceBuild = true
