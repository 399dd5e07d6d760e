//go:build brkmap_nochecks

package slab

// checks is false: a build for measuring the checks' cost only (see
// checks.go). Never use it for anything else: bad frees corrupt the heap.
const checks = false
