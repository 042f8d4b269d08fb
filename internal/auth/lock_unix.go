//go:build unix

package auth

import (
	"fmt"
	"os"
	"syscall"
)

// lockFile takes the exclusive writer lock of the users file (flock on path), blocking until it
// is free. The lock is released by the returned function, or by the kernel if the process dies.
func lockFile(path string) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE, secretPerm)
	if err != nil {
		return nil, fmt.Errorf("auth: lock %s: %w", path, err)
	}
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX)
		if err != syscall.EINTR {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("auth: lock %s: %w", path, err)
	}
	return func() { f.Close() }, nil // closing the descriptor releases the flock
}
