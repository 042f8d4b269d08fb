// Package atomicfile writes small state files so that a reader sees the old or the new
// content, never a mixture, and serializes writers across processes (the broker and the
// vitalmq CLI edit the same files): WriteFile and Lock.
package atomicfile

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
)

// Sync makes WriteFile fsync the file and its directory. Tests may turn it off for speed.
var Sync = true

// WriteFile writes data to path through a temporary file in the same directory, synced and
// renamed over path. The error names path.
func WriteFile(path string, data []byte, perm fs.FileMode) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, ".tmp-"+filepath.Base(path)+"-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
			err = fmt.Errorf("write %s: %w", path, err)
		}
	}()
	if err = f.Chmod(perm); err != nil && runtime.GOOS != "windows" {
		return err
	}
	if _, err = f.Write(data); err != nil {
		return err
	}
	if Sync {
		if err = f.Sync(); err != nil {
			return err
		}
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = os.Rename(tmp, path); err != nil {
		return err
	}
	if Sync {
		SyncDir(dir)
	}
	return nil
}

// SyncDir makes a rename in dir durable where the platform allows it (best effort).
func SyncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
}
