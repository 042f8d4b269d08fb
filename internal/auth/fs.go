package auth

import (
	"fmt"
	"io/fs"
	"runtime"
)

const secretPerm fs.FileMode = 0o600 // users.json and its lock file

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
