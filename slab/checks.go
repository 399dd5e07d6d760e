//go:build !brkmap_nochecks

package slab

// checks is true in every real build: the always-on checks (a freed
// address must be the start of a live block; a free-list link must decode
// to a free block of its slab) run. Building with -tags brkmap_nochecks
// compiles them out, only to measure what they cost:
//
//	go test ./bench -run '^$' -bench 'Pair/size=64/peer=brkmap$' -count 10 > on.txt
//	go test ./bench -run '^$' -bench 'Pair/size=64/peer=brkmap$' -count 10 -tags brkmap_nochecks > off.txt
//	benchstat off.txt on.txt
const checks = true
