package audit

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
)

// KeySize is the length of the installation key.
const KeySize = 32

// Errors about the files around the log.
var (
	ErrKeyMissing     = errors.New("audit: key file missing")
	ErrKeyPermissions = errors.New("audit: key file is accessible to group or others")
	ErrKey            = errors.New("audit: bad key file")
)

// HeadPath is the head file kept next to the log at path.
func HeadPath(path string) string { return path + ".head" }

// readKey reads the installation key, refusing one that others may read.
func readKey(keyPath string) ([]byte, error) {
	f, err := os.Open(keyPath)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s", ErrKeyMissing, keyPath)
	}
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	if runtime.GOOS != "windows" && st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%w: %s has mode %v, want 0600", ErrKeyPermissions, keyPath, st.Mode().Perm())
	}
	key, err := io.ReadAll(io.LimitReader(f, KeySize+1))
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	if len(key) != KeySize {
		return nil, fmt.Errorf("%w: %s holds %d bytes, want %d", ErrKey, keyPath, len(key), KeySize)
	}
	return key, nil
}

// createKey writes a new random key, failing if the file exists.
func createKey(keyPath string) ([]byte, error) {
	key := make([]byte, KeySize)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	f, err := os.OpenFile(keyPath, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("audit: creating key: %w", err)
	}
	_, err = f.Write(key)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = syncDir(filepath.Dir(keyPath))
	}
	if err != nil {
		os.Remove(keyPath)
		return nil, fmt.Errorf("audit: creating key: %w", err)
	}
	return key, nil
}

func syncDir(dir string) error {
	if runtime.GOOS == "windows" {
		return nil
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

func exists(path string) (bool, error) {
	_, err := os.Lstat(path)
	if err == nil {
		return true, nil
	}
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	return false, fmt.Errorf("audit: %w", err)
}

// head is the content of the head file: which log, and the seq and MAC of its last record.
type head struct {
	LogID string `json:"log_id"`
	Seq   uint64 `json:"seq"`
	Last  string `json:"last"`
}

func (h head) body() []byte {
	b := []byte(`{"log_id":`)
	b = appendJSONString(b, h.LogID)
	b = append(b, `,"seq":`...)
	b = strconv.AppendUint(b, h.Seq, 10)
	b = append(b, `,"last":`...)
	b = appendJSONString(b, h.Last)
	return append(b, '}')
}

// writeHead replaces the head file atomically: a synced temporary file renamed over it. A crash
// leaves the old head or the new one, both consistent with the synced log (the old one lags).
func writeHead(path string, key []byte, h head) error {
	line, _ := seal(nil, key, domHead, h.body())
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(line)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	return err
}

// errHeadMissing and errHeadForged distinguish why readHead found no usable head.
var (
	errHeadMissing = errors.New("head file missing")
	errHeadForged  = errors.New("mac mismatch (head file edited, or wrong key)")
)

func readHead(path string, key []byte) (head, error) {
	var h head
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return h, errHeadMissing
	}
	if err != nil {
		return h, err
	}
	if len(b) > 1024 {
		return h, errors.New("head file too large")
	}
	line, ok := bytes.CutSuffix(b, []byte("\n"))
	if !ok {
		return h, errors.New("head file malformed (no final newline)")
	}
	body, _, good, err := unseal(key, domHead, line)
	if err != nil {
		return h, fmt.Errorf("head file malformed: %v", err)
	}
	if !good {
		return h, errHeadForged
	}
	d := json.NewDecoder(bytes.NewReader(body))
	d.DisallowUnknownFields()
	if err := d.Decode(&h); err != nil || !bytes.Equal(h.body(), body) {
		return h, errors.New("head file malformed (not canonical)")
	}
	return h, nil
}

func newLogID() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("audit: %w", err)
	}
	return hex.EncodeToString(b), nil
}
