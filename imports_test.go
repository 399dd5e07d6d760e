package alloc_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// goTool returns the go command (on PATH, as `go test` and CI have it).
func goTool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("go")
	require.NoError(t, err, "these tests run the go command")
	return p
}

// heavyImports are what a library must not bring into a program by being
// imported: an HTTP server and its TLS stack, and expvar, which registers
// /debug/vars on http.DefaultServeMux as it is initialised.
var heavyImports = []string{"net/http", "expvar", "crypto/tls"}

func requireNoHeavyImports(t *testing.T, deps string) {
	t.Helper()
	for _, line := range strings.Fields(deps) {
		for _, bad := range heavyImports {
			require.NotEqual(t, bad, line, "the root package links %s", bad)
		}
	}
}

// The root package imports neither net/http nor expvar, directly or not.
func TestRootImportsNoHTTP(t *testing.T) {
	out, err := exec.Command(goTool(t), "list", "-deps", ".").CombinedOutput()
	require.NoError(t, err, "%s", out)
	require.Contains(t, string(out), "github.com/brkmap/alloc\n")
	requireNoHeavyImports(t, string(out))
}

// A program that imports only the root package, built as a consumer
// module would build it (a module of its own, requiring this one through a
// replace): net/http and expvar are not linked, and http.DefaultServeMux
// has no /debug/vars (checked by a second program that imports net/http
// itself, only to look).
func TestConsumerModule(t *testing.T) {
	if testing.Short() {
		t.Skip("builds two programs")
	}
	repo, err := filepath.Abs(".")
	require.NoError(t, err)
	goSum, err := os.ReadFile(filepath.Join(repo, "go.sum"))
	require.NoError(t, err)
	dir := t.TempDir()
	write := func(name, text string) {
		require.NoError(t, os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644))
	}
	write("go.mod", "module example.com/consumer\n\ngo 1.26.0\n\nrequire github.com/brkmap/alloc v0.0.0\n\n"+
		"replace github.com/brkmap/alloc => "+filepath.ToSlash(repo)+"\n")
	write("go.sum", string(goSum)) // the consumer needs what the library needs
	write("main.go", `package main

import (
	"fmt"

	"github.com/brkmap/alloc"
)

func main() {
	a, err := alloc.New(alloc.Config{})
	if err != nil {
		panic(err)
	}
	b, err := a.Malloc(10)
	fmt.Println(len(b), err, a.Free(b), a.Close())
}
`)
	write("muxcheck/main.go", `package main

import (
	"fmt"
	"net/http"
	"net/http/httptest"

	_ "github.com/brkmap/alloc"
)

func main() {
	_, pattern := http.DefaultServeMux.Handler(httptest.NewRequest("GET", "/debug/vars", nil))
	fmt.Printf("pattern=%q\n", pattern)
}
`)
	run := func(args ...string) string {
		cmd := exec.Command(goTool(t), args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "CGO_ENABLED=0")
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "go %v:\n%s", args, out)
		return string(out)
	}
	deps := run("list", "-deps", ".")
	require.Contains(t, deps, "github.com/brkmap/alloc\n")
	requireNoHeavyImports(t, deps)
	require.Equal(t, "10 <nil> <nil> <nil>\n", run("run", "."))
	require.Equal(t, "pattern=\"\"\n", run("run", "./muxcheck"), "nothing registered /debug/vars")
}
