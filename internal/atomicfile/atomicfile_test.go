package atomicfile

import (
	"os"
	"path/filepath"
	"sync"
	"testing"
)

func TestWriteFileReplacesWhole(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "f.json")
	for _, content := range []string{"first", "second, longer"} {
		if err := WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(path)
		if err != nil || string(b) != content {
			t.Fatalf("read %q, %v; want %q", b, err, content)
		}
	}
	st, _ := os.Stat(path)
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, want 0600", st.Mode().Perm())
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("temporary files left behind: %v", entries)
	}
	if err := WriteFile(filepath.Join(dir, "missing", "f"), nil, 0o600); err == nil {
		t.Fatal("write into a missing directory succeeded")
	}
}

// Lock serializes read-modify-write cycles: no increment is lost.
func TestLockSerializes(t *testing.T) {
	dir := t.TempDir()
	lock, counter := filepath.Join(dir, ".lock"), filepath.Join(dir, "n")
	WriteFile(counter, []byte{0}, 0o600)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 10 {
				unlock, err := Lock(lock, 0o600)
				if err != nil {
					t.Error(err)
					return
				}
				b, _ := os.ReadFile(counter)
				WriteFile(counter, []byte{b[0] + 1}, 0o600)
				unlock()
			}
		})
	}
	wg.Wait()
	if b, _ := os.ReadFile(counter); b[0] != 80 {
		t.Fatalf("counter = %d, want 80", b[0])
	}
}
