//go:build !unix

package atomicfile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"
)

// Lock takes an exclusive lock on path. Without flock, the lock is the existence of
// path+".excl" (created with O_EXCL); a lock left by a crashed process makes writers fail
// after 10 s with an error that names the file to remove.
func Lock(path string, perm fs.FileMode) (unlock func(), err error) {
	const wait = 10 * time.Second
	excl := path + ".excl"
	deadline := time.Now().Add(wait)
	for {
		f, err := os.OpenFile(excl, os.O_RDWR|os.O_CREATE|os.O_EXCL, perm)
		if err == nil {
			f.Close()
			return func() { os.Remove(excl) }, nil
		}
		if !errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("lock %s: %w", excl, err)
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("lock %s: held for over %v (remove it if no vitalmq process is running)", excl, wait)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
