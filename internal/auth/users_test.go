package auth

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// countingKDF is real argon2id (cheap parameters) counting its invocations.
type countingKDF struct{ n atomic.Int64 }

func (c *countingKDF) kdf(password, salt []byte, time, memory uint32, threads uint8, keyLen uint32) []byte {
	c.n.Add(1)
	return argonKDF(password, salt, time, memory, threads, keyLen)
}

func openTest(t *testing.T, path string, opts ...Option) *Users {
	t.Helper()
	u, err := Open(path, append([]Option{WithParams(cheap)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

const pw = "correct horse battery"

func TestUsersRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "users.json")
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	u := openTest(t, path, WithClock(func() time.Time { return now }))
	if len(u.List()) != 0 {
		t.Fatal("new store not empty")
	}
	if err := u.Add("nurse.amy", RoleClinician, pw); err != nil {
		t.Fatal(err)
	}
	if err := u.Add("hub", RoleService, "another password!"); err != nil {
		t.Fatal(err)
	}
	if err := u.Add("nurse.amy", RoleAdmin, pw); !errors.Is(err, ErrUserExists) {
		t.Fatalf("duplicate Add = %v, want ErrUserExists", err)
	}
	got, err := u.Verify("nurse.amy", pw)
	if err != nil || got != (User{Name: "nurse.amy", Role: RoleClinician, Created: now, Updated: now}) {
		t.Fatalf("Verify = %+v, %v", got, err)
	}
	for _, c := range []struct{ name, pw string }{
		{"nurse.amy", "correct horse batterY"}, {"nurse.amy", ""}, {"nobody", pw}, {"", pw},
		{"NURSE.AMY", pw}, {"nurse.amy ", pw}, {"+", pw}, {"nurse.amy", pw + strings.Repeat("x", MaxPasswordLen)},
	} {
		if _, err := u.Verify(c.name, c.pw); !errors.Is(err, ErrInvalidCredentials) {
			t.Errorf("Verify(%q, %q) = %v, want ErrInvalidCredentials", c.name, c.pw, err)
		}
	}
	now = now.Add(time.Hour)
	if err := u.SetPassword("nurse.amy", "a brand new password"); err != nil {
		t.Fatal(err)
	}
	if _, err := u.Verify("nurse.amy", pw); err == nil {
		t.Fatal("old password still valid after SetPassword")
	}
	if got, err := u.Verify("nurse.amy", "a brand new password"); err != nil || !got.Updated.Equal(now) || got.Created.Equal(now) {
		t.Fatalf("after SetPassword: %+v, %v", got, err)
	}
	if err := u.SetPassword("nobody", pw); !errors.Is(err, ErrUnknownUser) {
		t.Fatalf("SetPassword(unknown) = %v", err)
	}
	list := u.List()
	if len(list) != 2 || list[0].Name != "hub" || list[1].Name != "nurse.amy" {
		t.Fatalf("List = %+v", list)
	}
	if g, ok := u.Get("hub"); !ok || g.Role != RoleService {
		t.Fatalf("Get(hub) = %+v, %v", g, ok)
	}
	if err := u.Remove("hub"); err != nil {
		t.Fatal(err)
	}
	if err := u.Remove("hub"); !errors.Is(err, ErrUnknownUser) {
		t.Fatalf("second Remove = %v", err)
	}
	if _, err := u.Verify("hub", "another password!"); err == nil {
		t.Fatal("removed user still verifies")
	}
	// A fresh Open sees the same file.
	u2 := openTest(t, path)
	if l := u2.List(); len(l) != 1 || l[0].Name != "nurse.amy" {
		t.Fatalf("reopened List = %+v", l)
	}
	if _, err := u2.Verify("nurse.amy", "a brand new password"); err != nil {
		t.Fatal(err)
	}
}

func TestUserNameRules(t *testing.T) {
	u := openTest(t, filepath.Join(t.TempDir(), "users.json"))
	good := []string{"a", "0", "nurse.amy", "svc_hub-2", strings.Repeat("z", 64), "a..b", "a-"}
	bad := []string{"", "+", "#", "a+b", "a#", "a/b", "/", "a\x00b", "\x00", "Admin", "a b", "ü", "$SYS",
		".hidden", "-flag", "_x", strings.Repeat("z", 65), "a:b", "a*b", "a\nb", "a\tb", "%c", "{username}"}
	for _, n := range good {
		if !ValidName(n) {
			t.Errorf("ValidName(%q) = false", n)
		}
	}
	for _, n := range bad {
		if ValidName(n) {
			t.Errorf("ValidName(%q) = true", n)
		}
		if err := u.Add(n, RoleClinician, pw); !errors.Is(err, ErrInvalidName) {
			t.Errorf("Add(%q) = %v, want ErrInvalidName", n, err)
		}
	}
	for _, r := range []string{"", RoleDevice, "root", "Admin", "admin "} {
		if err := u.Add("someone", r, pw); !errors.Is(err, ErrInvalidRole) {
			t.Errorf("Add with role %q = %v, want ErrInvalidRole", r, err)
		}
	}
	if len(u.List()) != 0 {
		t.Fatal("a refused Add stored a user")
	}
}

func TestPasswordRules(t *testing.T) {
	u := openTest(t, filepath.Join(t.TempDir(), "users.json"))
	for i, c := range []struct {
		pw   string
		want error
	}{
		{"", ErrPasswordTooShort},
		{"elevenchars", ErrPasswordTooShort},
		{"twelve chars", nil},
		{"ééééééééééé", ErrPasswordTooShort}, // 11 characters, 22 bytes
		{"éééééééééééé", nil},                // 12 characters
		{strings.Repeat("x", MaxPasswordLen), nil},
		{strings.Repeat("x", MaxPasswordLen+1), ErrPasswordTooLong},
		{"valid prefix \xff\xfe invalid", ErrPasswordInvalid},
	} {
		if err := CheckPassword(c.pw); !errors.Is(err, c.want) && !(err == nil && c.want == nil) {
			t.Errorf("CheckPassword(#%d) = %v, want %v", i, err, c.want)
		}
		err := u.Add(fmt.Sprint("u", i), RoleClinician, c.pw)
		if c.want == nil && err != nil || c.want != nil && !errors.Is(err, c.want) {
			t.Errorf("Add(#%d) = %v, want %v", i, err, c.want)
		}
		if err != nil && c.pw != "" && strings.Contains(err.Error(), c.pw) {
			t.Errorf("error %q contains the password", err)
		}
	}
}

// TestVerifyEqualWork: "unknown user" and "wrong password" do the same work, counted as key
// derivations with the same parameters (CASES T31).
func TestVerifyEqualWork(t *testing.T) {
	var c countingKDF
	var params []Params
	var mu sync.Mutex
	kdf := func(password, salt []byte, tm, memory uint32, threads uint8, keyLen uint32) []byte {
		mu.Lock()
		params = append(params, Params{Memory: memory, Time: tm, Threads: threads, SaltLen: uint32(len(salt)), KeyLen: keyLen})
		mu.Unlock()
		return c.kdf(password, salt, tm, memory, threads, keyLen)
	}
	u := openTest(t, filepath.Join(t.TempDir(), "users.json"), WithKDF(kdf))
	if err := u.Add("nurse.amy", RoleClinician, pw); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, pw string
		ok       bool
	}{
		{"nurse.amy", pw, true},
		{"nurse.amy", "wrong password!", false},
		{"nobody", "wrong password!", false},
		{"nobody", pw, false},
		{"Not/A+Valid#Name", pw, false},
		{"", "", false},
		{"nurse.amy", strings.Repeat("x", MaxPasswordLen+1), false},
	} {
		c.n.Store(0)
		params = params[:0]
		_, err := u.Verify(tc.name, tc.pw)
		if (err == nil) != tc.ok {
			t.Errorf("Verify(%q) error = %v", tc.name, err)
		}
		if n := c.n.Load(); n != 1 {
			t.Errorf("Verify(%q, ...) derived %d keys, want exactly 1", tc.name, n)
		}
		if len(params) == 1 && params[0] != cheap {
			t.Errorf("Verify(%q, ...) derived with %+v, want the store's %+v", tc.name, params[0], cheap)
		}
		if err != nil && err != ErrInvalidCredentials {
			t.Errorf("Verify(%q) = %v: every failure must be the same error", tc.name, err)
		}
	}
}

func TestBootstrapAdmin(t *testing.T) {
	path := filepath.Join(t.TempDir(), "users.json")
	u := openTest(t, path)
	p1, err := u.BootstrapAdmin()
	if err != nil {
		t.Fatal(err)
	}
	if len(p1) != BootstrapPasswordLen || CheckPassword(p1) != nil {
		t.Fatalf("bootstrap password has length %d", len(p1))
	}
	for _, r := range p1 {
		if !strings.ContainsRune(passwordAlphabet, r) {
			t.Fatalf("bootstrap password has %q, outside the alphabet", r)
		}
	}
	if got, err := u.Verify("admin", p1); err != nil || got.Role != RoleAdmin {
		t.Fatalf("Verify(admin) = %+v, %v", got, err)
	}
	if p, err := u.BootstrapAdmin(); !errors.Is(err, ErrNotEmpty) || p != "" {
		t.Fatalf("second BootstrapAdmin = %q, %v; want ErrNotEmpty", p, err)
	}
	// A store with another user is not empty either, even through a stale instance.
	path2 := filepath.Join(t.TempDir(), "users.json")
	a, b := openTest(t, path2), openTest(t, path2)
	if err := a.Add("hub", RoleService, pw); err != nil {
		t.Fatal(err)
	}
	if _, err := b.BootstrapAdmin(); !errors.Is(err, ErrNotEmpty) {
		t.Fatalf("BootstrapAdmin on a non-empty file via a stale instance = %v", err)
	}
	// Every start calls it: with users present it hashes nothing (argon2id costs 19 MiB).
	var c countingKDF
	u3 := openTest(t, path, WithKDF(c.kdf))
	if _, err := u3.BootstrapAdmin(); !errors.Is(err, ErrNotEmpty) || c.n.Load() != 0 {
		t.Fatalf("BootstrapAdmin with users: %v after %d key derivations, want ErrNotEmpty after none", err, c.n.Load())
	}
	p2, _ := randomPassword(BootstrapPasswordLen)
	if p2 == p1 {
		t.Fatal("random passwords repeat")
	}
}

func TestFilePermissions(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no Unix permissions")
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "users.json")
	u := openTest(t, path)
	if err := u.Add("nurse.amy", RoleClinician, pw); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{path, path + ".lock"} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %04o, want 0600", p, fi.Mode().Perm())
		}
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".tmp-") {
			t.Errorf("temporary file %s left behind", e.Name())
		}
	}
	data, _ := os.ReadFile(path)
	if strings.Contains(string(data), pw) || !strings.Contains(string(data), "$argon2id$v=19$m=8,t=1,p=1$") {
		t.Fatalf("users.json content unexpected:\n%s", data)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(path, WithParams(cheap)); !errors.Is(err, ErrInsecurePermissions) {
		t.Fatalf("Open of a 0644 users.json = %v, want ErrInsecurePermissions", err)
	}
	if err := u.Reload(); !errors.Is(err, ErrInsecurePermissions) {
		t.Fatalf("Reload of a 0644 users.json = %v, want ErrInsecurePermissions", err)
	}
	if _, err := u.Verify("nurse.amy", pw); err != nil {
		t.Fatal("a failed Reload dropped the users")
	}
}

func TestReload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "users.json")
	broker := openTest(t, path) // no file yet
	if err := broker.Reload(); err != nil {
		t.Fatalf("Reload with no file = %v", err)
	}
	cli := openTest(t, path)
	if err := cli.Add("nurse.amy", RoleClinician, pw); err != nil {
		t.Fatal(err)
	}
	if _, err := broker.Verify("nurse.amy", pw); err == nil {
		t.Fatal("saw the change before Reload")
	}
	gen := broker.Generation()
	if err := broker.Reload(); err != nil {
		t.Fatal(err)
	}
	if _, err := broker.Verify("nurse.amy", pw); err != nil {
		t.Fatalf("after Reload: %v", err)
	}
	if broker.Generation() == gen {
		t.Fatal("Generation unchanged by a Reload that found a change")
	}
	gen = broker.Generation()
	if err := broker.Reload(); err != nil { // unchanged: only a stat
		t.Fatal(err)
	}
	if broker.Generation() != gen {
		t.Fatal("Generation changed by a Reload that found nothing new")
	}
	// The CLI changes the password and removes nobody; then removes the user.
	if err := cli.SetPassword("nurse.amy", "a brand new password"); err != nil {
		t.Fatal(err)
	}
	if err := broker.Reload(); err != nil {
		t.Fatal(err)
	}
	if _, err := broker.Verify("nurse.amy", pw); err == nil {
		t.Fatal("old password still valid after the CLI changed it and Reload")
	}
	// The broker's own write must not lose the CLI's changes (it re-reads under the lock).
	if err := cli.Add("hub", RoleService, pw); err != nil {
		t.Fatal(err)
	}
	gen = broker.Generation()
	if err := broker.Add("ops", RoleAdmin, pw); err != nil { // broker has not reloaded
		t.Fatal(err)
	}
	if broker.Generation() == gen {
		t.Fatal("Generation unchanged by the broker's own write")
	}
	if l := broker.List(); len(l) != 3 {
		t.Fatalf("broker List after its own write = %+v, want 3 users", l)
	}
	// A corrupt file, an unparsable hash or a deleted file keep the previous users. [T91]
	for name, content := range map[string]string{
		"not json":     "{",
		"bad hash":     `{"version":1,"users":[{"name":"x","role":"admin","hash":"$argon2id$v=19$m=1,t=1,p=1$AAAA$AAAA"}]}`,
		"bad role":     `{"version":1,"users":[{"name":"x","role":"device","hash":""}]}`,
		"bad version":  `{"version":2,"users":[]}`,
		"unknown key":  `{"version":1,"users":[],"anonymous":true}`,
		"invalid name": `{"version":1,"users":[{"name":"+","role":"admin","hash":""}]}`,
	} {
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		err := broker.Reload()
		if err == nil {
			t.Errorf("%s: Reload succeeded", name)
		}
		if _, err := broker.Verify("hub", pw); err != nil {
			t.Errorf("%s: failed Reload dropped the users", name)
		}
		if err := broker.Add("x2", RoleAdmin, pw); err == nil {
			t.Errorf("%s: a write over a corrupt file succeeded", name)
		}
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := broker.Reload(); err == nil {
		t.Error("Reload after the file was removed succeeded")
	}
	if _, err := broker.Verify("hub", pw); err != nil {
		t.Error("removing the file dropped the users")
	}
}

func TestConcurrentWritersTwoInstances(t *testing.T) {
	path := filepath.Join(t.TempDir(), "users.json")
	a, b := openTest(t, path), openTest(t, path)
	var wg sync.WaitGroup
	for i := range 10 {
		wg.Add(2)
		go func() { defer wg.Done(); _ = a.Add(fmt.Sprint("a", i), RoleClinician, pw) }()
		go func() { defer wg.Done(); _ = b.Add(fmt.Sprint("b", i), RoleService, pw) }()
	}
	wg.Wait()
	c := openTest(t, path)
	if n := len(c.List()); n != 20 {
		t.Fatalf("%d users after 20 concurrent Adds from two instances, want 20 (lost updates)", n)
	}
}

func TestConcurrentVerify(t *testing.T) {
	path := filepath.Join(t.TempDir(), "users.json")
	u := openTest(t, path)
	for i := range 4 {
		if err := u.Add(fmt.Sprint("u", i), RoleClinician, pw); err != nil {
			t.Fatal(err)
		}
	}
	cli := openTest(t, path)
	var wg sync.WaitGroup
	var bad atomic.Int64
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				name := fmt.Sprint("u", (g+i)%4)
				if _, err := u.Verify(name, pw); err != nil {
					bad.Add(1)
				}
				if _, err := u.Verify(name, "wrong password!"); err == nil {
					bad.Add(1)
				}
				_ = u.List()
			}
		}()
	}
	wg.Add(2)
	go func() {
		defer wg.Done()
		for i := range 10 {
			_ = cli.Add(fmt.Sprint("new", i), RoleService, pw)
			_ = u.Reload()
		}
	}()
	go func() {
		defer wg.Done()
		for range 5 {
			_ = u.SetPassword("u0", pw) // same password: Verify must keep succeeding
		}
	}()
	wg.Wait()
	if bad.Load() != 0 {
		t.Fatalf("%d wrong Verify results under concurrency", bad.Load())
	}
	if err := u.Reload(); err != nil {
		t.Fatal(err)
	}
	if n := len(u.List()); n != 14 {
		t.Fatalf("List has %d users, want 14", n)
	}
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := Open(filepath.Join(dir, "missing-dir", "users.json"), WithParams(cheap)); err != nil {
		t.Fatalf("Open in a missing directory = %v (empty store expected; writing fails later)", err)
	}
	if _, err := Open(filepath.Join(dir, "users.json"), WithParams(Params{})); !errors.Is(err, ErrBadHash) {
		t.Fatalf("Open with zero params = %v", err)
	}
	path := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(path, []byte("[]"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(path, WithParams(cheap)); !errors.Is(err, ErrBadUsersFile) {
		t.Fatalf("Open of a bad file = %v", err)
	}
}
