//go:build brkmap_nochecks

package slab

// checks is false: a build for measuring the checks' cost only (see the
// build variants in doc.go). Never use it for anything else: bad frees
// corrupt the pool.
const checks = false
