//go:build !brkmap_nochecks

package slab

// checks is true in every real build: the always-on checks (a freed
// address must be the start of a live block; a free-list link must decode
// to a free block of its slab) run. See the build variants in doc.go.
const checks = true
