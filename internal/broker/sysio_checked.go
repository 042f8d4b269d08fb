//go:build race || msan || asan

package broker

import "syscall"

// sysRead and sysWrite go through package syscall in builds with the race detector or a
// sanitizer: its Read and Write tell them what a read(2) wrote, and order every write
// before the reads that may take its bytes (the race detector sees no other edge through
// a socket). A test may change what the broker's fixtures answer, then send a packet with
// package net for the broker to read; raw calls would hide that order and report races
// that are not there.
func sysRead(fd uintptr, b []byte) (n int, errno syscall.Errno) {
	n, err := syscall.Read(int(fd), b)
	return n, errnoOf(err)
}

func sysWrite(fd uintptr, b []byte) (n int, errno syscall.Errno) {
	n, err := syscall.Write(int(fd), b)
	return n, errnoOf(err)
}

// errnoOf is err's Errno: package syscall's Read and Write return nothing else on Linux.
func errnoOf(err error) syscall.Errno {
	if e, ok := err.(syscall.Errno); ok || err == nil {
		return e
	}
	return syscall.EIO
}
