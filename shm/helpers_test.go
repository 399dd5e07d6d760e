package shm

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// Child processes: the test binary re-execs itself with childEnv naming
// what to do (a key of children); the pool's file is descriptor 3
// (ExtraFiles[0]), and more arguments come in the environment.
const childEnv = "BRKMAP_SHM_CHILD"

// children are the child processes' mains, registered by the tests'
// files. A child's exit status is its verdict: 0 fine, else it printed
// why on stderr.
var children = map[string]func() error{}

func TestMain(m *testing.M) {
	if name := os.Getenv(childEnv); name != "" {
		f, ok := children[name]
		if !ok {
			fmt.Fprintf(os.Stderr, "no child %q\n", name)
			os.Exit(2)
		}
		if err := f(); err != nil {
			fmt.Fprintf(os.Stderr, "child %s: %v\n", name, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// childPool attaches to the pool a parent handed over as descriptor 3.
func childPool() (*Pool, error) { return Attach(os.NewFile(3, "pool")) }

// child returns a command running child name of this test binary with
// the pool's file as descriptor 3 and env added to its environment.
func child(p *Pool, name string, env ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(append(os.Environ(), childEnv+"="+name), env...)
	cmd.ExtraFiles = []*os.File{p.File()}
	cmd.Stderr = os.Stderr
	return cmd
}

// childByPath is child for a pool the child opens by path (in env).
func childByPath(name string, env ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(append(os.Environ(), childEnv+"="+name), env...)
	cmd.Stderr = os.Stderr
	return cmd
}

// crashAt sets a hook that kills this process with SIGKILL at the n-th
// step of its pool operations (n from the environment variable name, if
// set).
func crashAt(p *Pool, name string) {
	n, err := strconv.Atoi(os.Getenv(name))
	if err != nil || n <= 0 {
		return
	}
	steps := 0
	p.hook = func() {
		if steps++; steps == n {
			syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {}
		}
	}
}

// killedBySIGKILL reports whether err is the exit of a child killed by
// SIGKILL.
func killedBySIGKILL(err error) bool {
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return false
	}
	ws, ok := ee.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL
}

// newTestPool makes a pool for a test: a memfd on Linux, a file in the
// test's directory elsewhere; closed at the end of the test.
func newTestPool(t testing.TB, size int) *Pool {
	t.Helper()
	var p *Pool
	var err error
	if runtime.GOOS == "linux" {
		p, err = Create(size)
	} else {
		p, err = CreateFile(filepath.Join(t.TempDir(), "pool"), size)
	}
	require.NoError(t, err)
	t.Cleanup(func() { p.Close() })
	return p
}

// mustCheck runs the verifier and fails the test if the pool is not
// consistent.
func mustCheck(t testing.TB, p *Pool) Report {
	t.Helper()
	rep, err := p.Check()
	require.NoError(t, err)
	return rep
}

// socketPair returns the two ends of a connected pair of Unix stream
// sockets, for passing descriptors.
func socketPair(t testing.TB) (a, b *net.UnixConn) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM, 0)
	require.NoError(t, err)
	conn := func(fd int) *net.UnixConn {
		f := os.NewFile(uintptr(fd), "socket")
		defer f.Close()
		c, err := net.FileConn(f)
		require.NoError(t, err)
		return c.(*net.UnixConn)
	}
	return conn(fds[0]), conn(fds[1])
}
