package child

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// echo is the test's one kind of job: it prints the job back, ok unless
// its Target is "bad", an error if it is "error".
func echo(j Job) (any, bool, error) {
	if j.Target == "error" {
		return nil, false, errors.New("echo: asked to fail")
	}
	return map[string]any{"target": j.Target, "scale": j.Scale, "tunable": os.Getenv("ECHO_EXTRA")}, j.Target != "bad", nil
}

// TestMain serves a child's job first, as bench's main does.
func TestMain(m *testing.M) {
	ServeIfChild(map[string]Handler{"echo": echo})
	os.Exit(m.Run())
}

// A job goes to the child and its result line comes back, with the extra
// environment set in the child only.
func TestRun(t *testing.T) {
	var out map[string]any
	require.NoError(t, Run(Job{Kind: "echo", Target: "x", Scale: 0.5, Environ: []string{"ECHO_EXTRA=1"}}, &out))
	assert.Equal(t, map[string]any{"target": "x", "scale": 0.5, "tunable": "1"}, out)
	assert.Empty(t, os.Getenv("ECHO_EXTRA"))
}

// A run that is not ok still prints its line (no error from Run) and
// exits with status 3.
func TestRunNotOK(t *testing.T) {
	var out map[string]any
	require.NoError(t, Run(Job{Kind: "echo", Target: "bad"}, &out))
	assert.Equal(t, "bad", out["target"])

	cmd, err := Command(Job{Kind: "echo", Target: "bad"})
	require.NoError(t, err)
	line, err := cmd.Output()
	var exit *exec.ExitError
	require.ErrorAs(t, err, &exit)
	assert.Equal(t, 3, exit.ExitCode())
	assert.True(t, json.Valid(line))
}

// A job that cannot run, or of an unknown kind, gives no line: Run's
// error wraps ErrNoResult and carries the child's stderr.
func TestRunNoResult(t *testing.T) {
	var out map[string]any
	err := Run(Job{Kind: "echo", Target: "error"}, &out)
	require.ErrorIs(t, err, ErrNoResult)
	assert.Contains(t, err.Error(), "asked to fail")

	err = Run(Job{Kind: "nosuch"}, &out)
	require.ErrorIs(t, err, ErrNoResult)
	assert.Contains(t, err.Error(), `unknown kind "nosuch"`)
}

// Lookup finds no job in a parent, and reports a job that does not
// decode as found (the process must not go on as a parent) with an error.
func TestLookup(t *testing.T) {
	_, found, err := Lookup()
	assert.False(t, found)
	assert.NoError(t, err)

	t.Setenv(Env, `{"kind":"echo","target":"t","threshold":4096}`)
	j, found, err := Lookup()
	require.NoError(t, err)
	assert.True(t, found)
	assert.Equal(t, Job{Kind: "echo", Target: "t", Threshold: 4096}, j)

	t.Setenv(Env, "not json")
	_, found, err = Lookup()
	assert.True(t, found)
	assert.Error(t, err)
	assert.Equal(t, 2, Serve(Job{}, err, nil), "a job that does not decode is exit status 2")
}
