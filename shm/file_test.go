package shm

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/brkmap/alloc/internal/alloctest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

const (
	pathEnv   = "BRKMAP_SHM_PATH"
	persisted = 2000 // blocks the writer makes live before its Sync
)

// The root block of the writer's pool: a count, then (Ref, size) pairs.
func readTable(p *Pool) (refs []Ref, sizes []int, err error) {
	root, err := p.Root()
	if err != nil || root == 0 {
		return nil, nil, fmt.Errorf("root %v: %w", root, err)
	}
	t, err := p.Bytes(root)
	if err != nil {
		return nil, nil, err
	}
	n := binary.LittleEndian.Uint64(t)
	for i := range n {
		refs = append(refs, Ref(binary.LittleEndian.Uint64(t[8+16*i:])))
		sizes = append(sizes, int(binary.LittleEndian.Uint64(t[16+16*i:])))
	}
	return refs, sizes, nil
}

func init() {
	// The writer opens the pool file, makes persisted blocks live with
	// their patterns and a root table of them, Syncs, says so on stdout,
	// and then allocates and frees other blocks until it is killed.
	children["writer"] = func() error {
		p, err := Open(os.Getenv(pathEnv))
		if err != nil {
			return err
		}
		crashAt(p, crashEnv)
		rng := rand.New(rand.NewPCG(7, 7))
		table, tb, err := p.Alloc(8 + 16*persisted)
		if err != nil {
			return err
		}
		binary.LittleEndian.PutUint64(tb, persisted)
		for i := range persisted {
			n := 1 + rng.IntN(2000)
			if i%100 == 0 {
				n = 20000 + rng.IntN(50000)
			}
			r, b, err := p.Alloc(n)
			if err != nil {
				return err
			}
			alloctest.Fill(b, uint32(i))
			binary.LittleEndian.PutUint64(tb[8+16*i:], uint64(r))
			binary.LittleEndian.PutUint64(tb[16+16*i:], uint64(n))
		}
		if err := p.SetRoot(table); err != nil {
			return err
		}
		if err := p.Sync(); err != nil {
			return err
		}
		fmt.Println("synced")
		var live []Ref
		for i := 0; ; i++ {
			if len(live) > 100 || (len(live) > 0 && rng.IntN(2) == 0) {
				j := rng.IntN(len(live))
				if err := p.Free(live[j]); err != nil {
					return err
				}
				live[j] = live[len(live)-1]
				live = live[:len(live)-1]
			} else {
				r, _, err := p.Alloc(1 + rng.IntN(9000))
				if err != nil {
					return err
				}
				live = append(live, r)
			}
		}
	}
}

// TestReopenAfterKill: the writer of a file-backed pool is killed with
// SIGKILL — from outside, while it allocates and frees, or by itself at a
// chosen step of an operation — and Open finds the pool consistent (rolled
// back if need be) with every block live at its Sync, contents intact.
func TestReopenAfterKill(t *testing.T) {
	for _, how := range []string{"kill -9", "crash at step 40", "crash at step 41", "crash at step 42"} {
		t.Run(how, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "pool")
			p, err := CreateFile(path, 32<<20)
			require.NoError(t, err)
			require.NoError(t, p.Close())

			cmd := childByPath("writer", pathEnv+"="+path)
			var step int
			if _, err := fmt.Sscanf(how, "crash at step %d", &step); err == nil {
				// Past the persisted blocks' steps: the crash falls in the loop.
				cmd.Env = append(cmd.Env, crashEnv+"="+strconv.Itoa(step+stepsToSync(t)))
			}
			out, err := cmd.StdoutPipe()
			require.NoError(t, err)
			require.NoError(t, cmd.Start())
			line, err := bufio.NewReader(out).ReadString('\n')
			require.NoError(t, err)
			require.Equal(t, "synced\n", line)
			if step == 0 {
				time.Sleep(30 * time.Millisecond)
				require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
			}
			require.True(t, killedBySIGKILL(cmd.Wait()))

			q, err := Open(path)
			require.NoError(t, err)
			defer q.Close()
			refs, sizes, err := readTable(q)
			require.NoError(t, err)
			require.Len(t, refs, persisted)
			for i, r := range refs {
				b, err := q.Bytes(r)
				require.NoError(t, err, "block %d", i)
				require.Equal(t, -1, alloctest.Intact(b[:sizes[i]], uint32(i)), "block %d", i)
			}
			st, err := q.Stats()
			require.NoError(t, err)
			t.Logf("%d blocks found intact; %d live in all; %d operations rolled back", persisted, st.LiveBlocks, st.Recoveries)
			if step > 0 {
				assert.Equal(t, uint64(1), st.Recoveries, "the crash fell inside an operation")
			}
			// Carry on.
			r, b, err := q.Alloc(5000)
			require.NoError(t, err)
			alloctest.Fill(b, 1)
			require.NoError(t, q.Free(r))
			mustCheck(t, q)
		})
	}
}

// stepsToSync counts the steps the writer takes up to its Sync, by doing
// what it does in this process on a scratch pool.
func stepsToSync(t *testing.T) int {
	p := newTestPool(t, 32<<20)
	steps := 0
	p.hook = func() { steps++ }
	rng := rand.New(rand.NewPCG(7, 7))
	_, _, err := p.Alloc(8 + 16*persisted)
	require.NoError(t, err)
	for i := range persisted {
		n := 1 + rng.IntN(2000)
		if i%100 == 0 {
			n = 20000 + rng.IntN(50000)
		}
		_, _, err := p.Alloc(n)
		require.NoError(t, err)
	}
	return steps
}

// A file truncated under the pool: every access past the new end faults
// (SIGBUS), and comes back as ErrFault, never a crash; what is still
// inside the file works.
func TestTruncatedFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pool")
	p, err := CreateFile(path, 1<<20)
	require.NoError(t, err)
	defer p.Close()
	small, sb, err := p.Alloc(100)
	require.NoError(t, err)
	copy(sb, "small")
	var large Ref
	for { // a large block near the end of the pool
		r, _, err := p.Alloc(64 << 10)
		if err != nil {
			break
		}
		large = r
	}
	require.NotZero(t, large)

	require.NoError(t, os.Truncate(path, int64(large.Offset())))
	buf := make([]byte, 10)
	_, err = p.Read(large, 0, buf)
	assert.ErrorIs(t, err, ErrFault)
	_, err = p.Write(large, 0, buf)
	assert.ErrorIs(t, err, ErrFault)
	n, err := p.Read(small, 0, buf[:5])
	require.NoError(t, err, "the start of the file is still there")
	assert.Equal(t, "small", string(buf[:n]))

	require.NoError(t, os.Truncate(path, 0))
	_, _, err = p.Alloc(100)
	assert.ErrorIs(t, err, ErrFault)
	assert.ErrorIs(t, p.Free(small), ErrFault)
	_, err = p.Read(small, 0, buf)
	assert.ErrorIs(t, err, ErrFault)
	_, err = p.Stats()
	assert.ErrorIs(t, err, ErrFault)
	_, err = p.Check()
	assert.ErrorIs(t, err, ErrFault)
	_, err = Open(path)
	assert.ErrorIs(t, err, ErrTooSmall)
	assert.Zero(t, inLock.Load(), "a fault while waiting for the lock or holding it leaves no count behind")
}

// The pool's descriptor passed over a Unix socket (SCM_RIGHTS): the
// receiver's attachment sees the sender's blocks.
func TestSendReceive(t *testing.T) {
	a, b := socketPair(t)
	defer a.Close()
	defer b.Close()

	p := newTestPool(t, 1<<20)
	r, buf, err := p.Alloc(5000)
	require.NoError(t, err)
	copy(buf, "payload")
	require.NoError(t, p.Send(a))
	q, err := Receive(b)
	require.NoError(t, err)
	defer q.Close()
	got, err := q.Bytes(r)
	require.NoError(t, err)
	assert.Equal(t, "payload", string(got[:7]))
	require.NoError(t, q.Free(r))
	mustCheck(t, p)

	_, err = a.Write([]byte("no descriptor"))
	require.NoError(t, err)
	_, _, err = RecvFile(b)
	assert.ErrorIs(t, err, ErrNotPool)
}

func init() {
	// The receiver gets the pool's descriptor over the Unix socket that is
	// its descriptor 3, attaches, checks the parent's block and answers
	// with one of its own, whose Ref it sends back in a message.
	children["receiver"] = func() error {
		f := os.NewFile(3, "socket")
		c, err := net.FileConn(f)
		if err != nil {
			return err
		}
		uc := c.(*net.UnixConn)
		p, err := Receive(uc)
		if err != nil {
			return err
		}
		defer p.Close()
		root, err := p.Root()
		if err != nil {
			return err
		}
		b, err := p.Bytes(root)
		if err != nil {
			return err
		}
		if string(b[:6]) != "parent" {
			return fmt.Errorf("the parent's block holds %q", b[:6])
		}
		r, nb, err := p.Alloc(100)
		if err != nil {
			return err
		}
		copy(nb, "child "+strconv.Itoa(os.Getpid()))
		_, err = uc.Write([]byte(strconv.FormatUint(uint64(r), 10)))
		return err
	}
}

// The descriptor passed to another process over a Unix socket.
func TestSendToChild(t *testing.T) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM, 0)
	require.NoError(t, err)
	mine := os.NewFile(uintptr(fds[0]), "socket")
	theirs := os.NewFile(uintptr(fds[1]), "socket")
	c, err := net.FileConn(mine)
	require.NoError(t, err)
	mine.Close()
	uc := c.(*net.UnixConn)
	defer uc.Close()

	p := newTestPool(t, 1<<20)
	r, b, err := p.Alloc(64)
	require.NoError(t, err)
	copy(b, "parent")
	require.NoError(t, p.SetRoot(r))

	cmd := childByPath("receiver")
	cmd.ExtraFiles = []*os.File{theirs}
	require.NoError(t, cmd.Start())
	theirs.Close()
	require.NoError(t, p.Send(uc))
	msg := make([]byte, 64)
	n, err := uc.Read(msg)
	require.NoError(t, err)
	require.NoError(t, cmd.Wait())
	v, err := strconv.ParseUint(string(msg[:n]), 10, 64)
	require.NoError(t, err)
	got, err := p.Bytes(Ref(v))
	require.NoError(t, err)
	assert.Equal(t, "child "+strconv.Itoa(cmd.Process.Pid), string(got[:len("child ")+len(strconv.Itoa(cmd.Process.Pid))]))
	require.NoError(t, p.Free(Ref(v)))
	require.NoError(t, p.Free(r))
	assert.Zero(t, mustCheck(t, p).LiveBlocks)
}

// A named pool under /dev/shm: a second attachment opens it by name.
func TestDevShm(t *testing.T) {
	if _, err := os.Stat("/dev/shm"); err != nil {
		t.Skip("no /dev/shm")
	}
	path := filepath.Join("/dev/shm", fmt.Sprintf("brkmap-shm-test-%d", os.Getpid()))
	p, err := CreateFile(path, 1<<20)
	require.NoError(t, err)
	defer os.Remove(path)
	defer p.Close()
	r, b, err := p.Alloc(10)
	require.NoError(t, err)
	copy(b, "by name")
	q, err := Open(path)
	require.NoError(t, err)
	defer q.Close()
	got, err := q.Bytes(r)
	require.NoError(t, err)
	assert.Equal(t, "by name", string(got[:7]))
}
