package main

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestBadArgumentsFailFirst: every bad input is one error, returned before
// any work starts (issue 11, item 17: NaN, Inf and absurd scales, zero or
// negative runs and a NaN share were accepted, an unwritable -out was
// noticed only after every run, and a trace id past the header's count
// made the child allocate a 48 GiB table).
func TestBadArgumentsFailFirst(t *testing.T) {
	dir := t.TempDir()
	badTrace := filepath.Join(dir, "bad.rep")
	require.NoError(t, os.WriteFile(badTrace, []byte("20000\n3\n5\n1\na 0 1\na 2147483000 8\n"), 0o644))
	notDir := filepath.Join(dir, "file")
	require.NoError(t, os.WriteFile(notDir, nil, 0o644))
	tests := map[string]func() error{
		"scale NaN":          func() error { return run([]string{"-scale", "NaN"}) },
		"scale Inf":          func() error { return run([]string{"-scale", "Inf"}) },
		"scale 1e300":        func() error { return run([]string{"-scale", "1e300"}) },
		"scale 1e-300":       func() error { return run([]string{"-scale", "1e-300"}) },
		"out not writable":   func() error { return run([]string{"-out", filepath.Join(notDir, "report"), "-traces", ""}) },
		"a bad trace in run": func() error { return run([]string{"-out", dir, "-traces", dir}) },
		"replay a bad trace": func() error { return replayCommand([]string{badTrace}) },
		"gc runs 0":          func() error { return gcCommand([]string{"-runs", "0"}) },
		"gc runs -1":         func() error { return gcCommand([]string{"-runs", "-1"}) },
		"gc get NaN":         func() error { return gcCommand([]string{"-get", "NaN"}) },
		"gc set NaN":         func() error { return gcCommand([]string{"-set", "NaN"}) },
	}
	for name, fn := range tests {
		t.Run(name, func(t *testing.T) {
			done := make(chan error, 1)
			go func() { done <- fn() }()
			select {
			case err := <-done:
				require.Error(t, err)
				t.Log(err)
			case <-time.After(5 * time.Second):
				t.Fatal("no error within 5 s: the work started")
			}
		})
	}
}
