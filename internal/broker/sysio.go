//go:build !race && !msan && !asan

package broker

import (
	"syscall"
	"unsafe"
)

// sysRead and sysWrite are a sock's read(2) and write(2): raw system calls (see rawRead).
// b is not empty. n is meaningful only when errno is 0.
func sysRead(fd uintptr, b []byte) (n int, errno syscall.Errno) {
	r, _, errno := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
	return int(r), errno
}

func sysWrite(fd uintptr, b []byte) (n int, errno syscall.Errno) {
	r, _, errno := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
	return int(r), errno
}
