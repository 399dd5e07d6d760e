//go:build !brkmap_nochecks

package alloctest

// Checks says whether the always-on checks (a freed address must start a
// live block; a free-list link must decode to a free block) are compiled
// in. They are in every build but -tags brkmap_nochecks.
const Checks = true
