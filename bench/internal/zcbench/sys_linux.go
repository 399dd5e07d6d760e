package zcbench

import (
	"fmt"
	"os"
	"unsafe"

	"github.com/brkmap/alloc/internal/sys"

	"golang.org/x/sys/unix"
)

// fsType names the filesystem of dir, and whether it is tmpfs.
func fsType(dir string) (string, bool) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return "unknown", false
	}
	names := map[int64]string{
		unix.EXT4_SUPER_MAGIC: "ext4", unix.XFS_SUPER_MAGIC: "xfs", unix.BTRFS_SUPER_MAGIC: "btrfs",
		unix.TMPFS_MAGIC: "tmpfs", unix.OVERLAYFS_SUPER_MAGIC: "overlayfs", unix.NFS_SUPER_MAGIC: "nfs",
	}
	name, ok := names[int64(st.Type)]
	if !ok {
		name = fmt.Sprintf("%#x", st.Type)
	}
	return name, st.Type == unix.TMPFS_MAGIC
}

// cachedFraction is the share of the file's pages in the page cache
// (mincore over a mapping of it), or -1 if it cannot tell.
func cachedFraction(name string) float64 {
	f, err := os.Open(name)
	if err != nil {
		return -1
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || st.Size() == 0 {
		return -1
	}
	m, err := unix.Mmap(int(f.Fd()), 0, int(st.Size()), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return -1
	}
	defer unix.Munmap(m)
	var vec []byte
	v, err := (&sys.OS{}).ResidentPages(unsafe.Pointer(unsafe.SliceData(m)), uintptr(len(m)), &vec)
	if err != nil {
		return -1
	}
	in := 0
	for _, b := range v {
		in += int(b & 1)
	}
	return float64(in) / float64(len(v))
}

// threadCPU is the calling thread's CPU time, user + system.
func threadCPU() float64 {
	var ru unix.Rusage
	if unix.Getrusage(unix.RUSAGE_THREAD, &ru) != nil {
		return 0
	}
	return tv(ru.Utime) + tv(ru.Stime)
}
