//go:build !unix

package auth

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"
)

// lockFile takes the exclusive writer lock of the users file. Without flock, the lock is the
// existence of path+".excl" (created with O_EXCL); a lock left by a crashed process makes writers
// fail after lockWait with an error that names the file to remove.
func lockFile(path string) (unlock func(), err error) {
	const lockWait = 10 * time.Second
	path += ".excl"
	deadline := time.Now().Add(lockWait)
	for {
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, secretPerm)
		if err == nil {
			f.Close()
			return func() { os.Remove(path) }, nil
		}
		if !errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("auth: lock %s: %w", path, err)
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("auth: lock %s: held for over %v (remove it if no vitalmq process is running)", path, lockWait)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
