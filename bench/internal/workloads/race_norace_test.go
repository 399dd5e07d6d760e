//go:build !race

package workloads

// raceEnabled: see race_race_test.go.
const raceEnabled = false
