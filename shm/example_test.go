package shm_test

import (
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/brkmap/alloc/shm"
)

// The worker's half of Example_worker: this test binary, started again
// with workerEnv set, runs worker instead of the tests (this init runs
// before them).
const workerEnv = "SHM_EXAMPLE_WORKER"

func init() {
	if os.Getenv(workerEnv) != "" {
		if err := worker(); err != nil {
			fmt.Fprintln(os.Stderr, "worker:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
}

// worker attaches to the pool its parent handed it as descriptor 3, reads
// the payload named by the Ref in its environment — in place: no copy went
// through a pipe or socket — and answers with a block of its own, whose
// Ref it prints.
func worker() error {
	pool, err := shm.Attach(os.NewFile(3, "pool"))
	if err != nil {
		return err
	}
	defer pool.Close()
	ref, _ := strconv.ParseUint(os.Getenv("PAYLOAD_REF"), 10, 64)
	n, _ := strconv.Atoi(os.Getenv("PAYLOAD_LEN"))
	payload, err := pool.Bytes(shm.Ref(ref))
	if err != nil {
		return err
	}
	answer := fmt.Sprintf("%d bytes, crc32 %08x", n, crc32.ChecksumIEEE(payload[:n]))
	r, b, err := pool.Alloc(len(answer))
	if err != nil {
		return err
	}
	copy(b, answer)
	fmt.Println(uint64(r), len(answer))
	return nil
}

// A service hands a large payload to a worker process without copying it
// through a socket: it writes the payload into a shared pool once, starts
// the worker with the pool's file as descriptor 3 (exec.Cmd.ExtraFiles)
// and the payload's Ref in its environment; the worker reads the payload
// in place and answers with a block of its own, which the service reads
// by its Ref and frees.
func Example_worker() {
	pool, err := shm.Create(64 << 20) // a memfd (Linux)
	if errors.Is(err, errors.ErrUnsupported) {
		// No memfd here: a pool in a temporary file, removed when done
		// (the worker inherits its descriptor all the same).
		dir, _ := os.MkdirTemp("", "pool")
		defer os.RemoveAll(dir)
		pool, err = shm.CreateFile(filepath.Join(dir, "pool"), 64<<20)
	}
	if err != nil {
		fmt.Println(err)
		return
	}
	defer pool.Close()

	const n = 8 << 20
	ref, payload, err := pool.Alloc(n)
	if err != nil {
		fmt.Println(err)
		return
	}
	for i := range payload {
		payload[i] = byte(i * 7)
	}

	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), workerEnv+"=1",
		fmt.Sprintf("PAYLOAD_REF=%d", ref), fmt.Sprintf("PAYLOAD_LEN=%d", n))
	cmd.ExtraFiles = []*os.File{pool.File()}
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		fmt.Println(err)
		return
	}
	var answer uint64
	var length int
	fmt.Sscan(strings.TrimSpace(string(out)), &answer, &length)
	b, err := pool.Bytes(shm.Ref(answer))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("worker says:", string(b[:length]))
	fmt.Println(pool.Free(ref), pool.Free(shm.Ref(answer)))
	// Output:
	// worker says: 8388608 bytes, crc32 4db8402c
	// <nil> <nil>
}
