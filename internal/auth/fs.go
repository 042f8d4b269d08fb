package auth

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
)

const secretPerm fs.FileMode = 0o600 // users.json and its lock file

// writeFileAtomic writes data to path through a temporary file in the same directory, synced and
// renamed over path, so a reader (the broker's Reload) sees the old or the new file, never a mix.
func writeFileAtomic(path string, data []byte, perm fs.FileMode) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, ".tmp-"+filepath.Base(path)+"-*")
	if err != nil {
		return fmt.Errorf("auth: write %s: %w", path, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
			err = fmt.Errorf("auth: write %s: %w", path, err)
		}
	}()
	if err = f.Chmod(perm); err != nil && runtime.GOOS != "windows" {
		return err
	}
	if _, err = f.Write(data); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = os.Rename(tmp, path); err != nil {
		return err
	}
	if d, err := os.Open(dir); err == nil { // make the rename durable (best effort)
		_ = d.Sync()
		d.Close()
	}
	return nil
}

// checkPerm refuses a file that group or others may access (Unix only): users.json holds password
// hashes, which an attacker could attack offline.
func checkPerm(fi fs.FileInfo, path string) error {
	if runtime.GOOS == "windows" || runtime.GOOS == "plan9" {
		return nil
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("%w: %s has mode %04o, want 0600 (chmod 600 %s)", ErrInsecurePermissions, path, fi.Mode().Perm(), path)
	}
	return nil
}
