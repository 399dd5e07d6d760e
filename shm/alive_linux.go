package shm

import (
	"os"

	"golang.org/x/sys/unix"
)

// alive reports whether process pid is still running. A pidfd becomes
// readable when its process exits — even before its parent reaps it, so a
// zombie that held the lock counts as dead at once. Without pidfd_open
// (kernels before 5.3), kill(pid, 0) answers, and a zombie counts as alive
// until it is reaped.
func alive(pid int) bool {
	fd, err := unix.PidfdOpen(pid, 0)
	if err == unix.ESRCH {
		return false
	}
	if err != nil {
		return unix.Kill(pid, 0) != unix.ESRCH
	}
	defer unix.Close(fd)
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	n, err := unix.Poll(fds, 0)
	return err != nil || n == 0 || fds[0].Revents&unix.POLLIN == 0
}

// memfd makes an anonymous memory file (memfd_create), closed on exec
// unless handed on in ExtraFiles.
func memfd(name string) (*os.File, error) {
	fd, err := unix.MemfdCreate(name, unix.MFD_CLOEXEC)
	if err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(fd), "memfd:"+name), nil
}

// bootID identifies this boot of the machine, so that Open can tell a lock
// held by a process of an earlier boot (a pid that may now be anyone's).
func bootID() (id [16]byte) {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return id
	}
	j := 0
	for _, c := range b {
		var v byte
		switch {
		case c >= '0' && c <= '9':
			v = c - '0'
		case c >= 'a' && c <= 'f':
			v = c - 'a' + 10
		default:
			continue
		}
		if j < 32 {
			id[j/2] |= v << (4 * (1 - j%2))
		}
		j++
	}
	return id
}
