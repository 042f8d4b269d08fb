//go:build !unix

package pki

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// lockDir takes the exclusive writer lock of the CA directory dir. Without flock, the lock is the
// existence of dir/.lock.excl (created with O_EXCL); a lock left by a crashed process makes writers fail
// after lockWait with an error that names the file to remove.
func lockDir(dir string) (unlock func(), err error) {
	const lockWait = 10 * time.Second
	path := filepath.Join(dir, lockFileName+".excl")
	deadline := time.Now().Add(lockWait)
	for {
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, secretPerm)
		if err == nil {
			f.Close()
			return func() { os.Remove(path) }, nil
		}
		if !errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("pki: lock %s: %w", path, err)
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("pki: lock %s: held for over %v (remove it if no vitalmq process is running)", path, lockWait)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
