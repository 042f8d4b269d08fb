package adminsock

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCallAndErrors(t *testing.T) {
	path := filepath.Join(t.TempDir(), "admin.sock")
	var got string
	s, err := Listen(path, map[string]Handler{
		"echo": func(_ context.Context, arg string) error { got = arg; return nil },
		"fail": func(context.Context, string) error { return errors.New("disk\nfull") },
	})
	if err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("socket mode = %v, %v; want 0600", st.Mode().Perm(), err)
	}
	if err := Call(path, "echo", "/tmp/x y"); err != nil || got != "/tmp/x y" {
		t.Fatalf("Call(echo) = %v, handler got %q", err, got)
	}
	if err := Call(path, "fail", ""); err == nil || err.Error() != "disk full" {
		t.Fatalf("Call(fail) = %v, want the handler's error on one line", err)
	}
	if err := Call(path, "nope", ""); err == nil || !strings.Contains(err.Error(), "unknown command") {
		t.Fatalf("Call(nope) = %v, want unknown command", err)
	}
	if _, err := Listen(path, nil); err == nil {
		t.Fatal("second Listen on a live socket succeeded")
	}
	s.Close()
	if err := Call(path, "echo", ""); !errors.Is(err, ErrNotRunning) {
		t.Fatalf("Call after Close = %v, want ErrNotRunning", err)
	}
	// A stale socket file left by a killed process is replaced.
	os.WriteFile(path, nil, 0o600)
	s2, err := Listen(path, map[string]Handler{})
	if err != nil {
		t.Fatalf("Listen over a stale socket: %v", err)
	}
	s2.Close()
}
