package pki

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"runtime"
)

// File names inside a CA directory.
const (
	caCertFile     = "ca.crt"
	caKeyFile      = "ca.key"
	serverCertFile = "server.crt"
	serverKeyFile  = "server.key"
	indexFileName  = "devices.json"
	crlFileName    = "crl.pem"
	lockFileName   = ".lock"
)

// File permissions.
const (
	dirPerm    fs.FileMode = 0o700
	secretPerm fs.FileMode = 0o600 // private keys, devices.json, the lock file
	publicPerm fs.FileMode = 0o644 // certificates, the CRL
)

// checkKeyPerm refuses a private key file that group or others may access (Unix only).
func checkKeyPerm(path string) error {
	if runtime.GOOS == "windows" || runtime.GOOS == "plan9" {
		return nil
	}
	st, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("pki: %s: %w", path, err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("%w: %s has mode %04o, want 0600 (chmod 600 %s)", ErrInsecurePermissions, path, st.Mode().Perm(), path)
	}
	return nil
}

// readFile reads one CA file; the error names the file and says whether it is missing.
func readFile(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("pki: %s is missing: %w", path, err)
	}
	if err != nil {
		return nil, fmt.Errorf("pki: read %s: %w", path, err)
	}
	return b, nil
}
