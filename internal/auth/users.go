package auth

import (
	"vitalmq/internal/atomicfile"

	"bytes"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"
)

// Roles. Users (password holders) are admin, clinician or service; RoleDevice is the role of an
// identity taken from a device certificate and cannot be given to a user.
const (
	RoleAdmin     = "admin"
	RoleClinician = "clinician"
	RoleService   = "service"
	RoleDevice    = "device"
)

// Password and name bounds (see the package documentation for the reasons).
const (
	MinPasswordLen = 12   // characters (Unicode code points)
	MaxPasswordLen = 1024 // bytes
	MaxNameLen     = 64   // bytes
	// BootstrapPasswordLen is the length of the password BootstrapAdmin generates.
	BootstrapPasswordLen = 24
)

// Errors of the user store. None of them ever carries a password or a hash.
var (
	ErrInvalidName         = errors.New("auth: invalid user name (1-64 characters of a-z 0-9 . _ -, starting with a letter or digit)")
	ErrInvalidRole         = errors.New("auth: invalid role (want admin, clinician or service)")
	ErrPasswordTooShort    = fmt.Errorf("auth: password shorter than %d characters", MinPasswordLen)
	ErrPasswordTooLong     = fmt.Errorf("auth: password longer than %d bytes", MaxPasswordLen)
	ErrPasswordInvalid     = errors.New("auth: password is not valid UTF-8")
	ErrUserExists          = errors.New("auth: user already exists")
	ErrUnknownUser         = errors.New("auth: no such user")
	ErrInvalidCredentials  = errors.New("auth: invalid user name or password")
	ErrNotEmpty            = errors.New("auth: the user store is not empty")
	ErrInsecurePermissions = errors.New("auth: insecure file permissions")
	ErrBadUsersFile        = errors.New("auth: invalid users file")
)

// ValidName reports whether name is a valid user name: 1 to 64 characters of [a-z0-9._-], the
// first one a letter or a digit. Names never contain '+', '#', '/', U+0000 or upper case, so a
// name is safe in a {username} topic template and cannot impersonate another by case.
func ValidName(name string) bool {
	if len(name) == 0 || len(name) > MaxNameLen {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case (c == '.' || c == '_' || c == '-') && i > 0:
		default:
			return false
		}
	}
	return true
}

// ValidUserRole reports whether role may be given to a user (admin, clinician, service).
func ValidUserRole(role string) bool {
	return role == RoleAdmin || role == RoleClinician || role == RoleService
}

// CheckPassword reports whether password is acceptable for a new credential: valid UTF-8, at least
// MinPasswordLen characters and at most MaxPasswordLen bytes. There are no composition rules.
func CheckPassword(password string) error {
	switch {
	case len(password) > MaxPasswordLen:
		return ErrPasswordTooLong
	case !utf8.ValidString(password):
		return ErrPasswordInvalid
	case utf8.RuneCountInString(password) < MinPasswordLen:
		return ErrPasswordTooShort
	}
	return nil
}

// User is a user as the store reports it; it never carries the password hash.
type User struct {
	Name    string
	Role    string
	Created time.Time
	Updated time.Time
}

// usersFile is the content of users.json.
type usersFile struct {
	Version int         `json:"version"`
	Users   []userEntry `json:"users"`
}

type userEntry struct {
	Name    string    `json:"name"`
	Role    string    `json:"role"`
	Hash    string    `json:"hash"` // argon2id PHC string
	Created time.Time `json:"created"`
	Updated time.Time `json:"updated"`
}

const (
	usersVersion = 1
	maxUsersFile = 16 << 20 // bytes; far beyond any real user list
)

type record struct {
	user User
	cred credential
}

// usersSnap is an immutable, validated copy of users.json.
type usersSnap struct {
	file   usersFile
	byName map[string]*record
	fi     os.FileInfo // nil when the file did not exist
}

func newUsersSnap(f usersFile, fi os.FileInfo) (*usersSnap, error) {
	if f.Version != usersVersion {
		return nil, fmt.Errorf("unsupported version %d", f.Version)
	}
	s := &usersSnap{file: f, byName: make(map[string]*record, len(f.Users)), fi: fi}
	for i, e := range f.Users {
		switch {
		case !ValidName(e.Name):
			return nil, fmt.Errorf("entry %d: invalid user name", i)
		case !ValidUserRole(e.Role):
			return nil, fmt.Errorf("entry %d (%s): invalid role", i, e.Name)
		case s.byName[e.Name] != nil:
			return nil, fmt.Errorf("entry %d (%s): duplicate user name", i, e.Name)
		}
		c, err := parsePHC(e.Hash)
		if err != nil {
			return nil, fmt.Errorf("entry %d (%s): %w", i, e.Name, err)
		}
		s.byName[e.Name] = &record{user: User{Name: e.Name, Role: e.Role, Created: e.Created, Updated: e.Updated}, cred: c}
	}
	return s, nil
}

// Users is the file-backed user store. Readers (Verify, Get, List) use an immutable snapshot and
// never block on writers. Writers (Add, SetPassword, Remove, BootstrapAdmin) hold this process's
// mutex and an exclusive flock on "<path>.lock", re-read the file, change it and replace it
// atomically, so the broker and the `vitalmq user` CLI may write at the same time without losing
// each other's changes. Reload picks up changes made by another process. Users is safe for
// concurrent use.
type Users struct {
	path     string
	lockPath string
	params   Params
	kdf      KDF
	now      func() time.Time
	dummy    credential // verified against for unknown users, so they cost the same work

	wmu  sync.Mutex // serializes this process's writers
	rmu  sync.Mutex // serializes installs of a new snapshot
	snap atomic.Pointer[usersSnap]
	gen  atomic.Uint64 // counts installed snapshots (Generation)
}

// Option configures Open.
type Option func(*Users)

// WithParams sets the argon2id parameters of new hashes (and of the work done for unknown users).
// Tests use cheap ones; production uses DefaultParams.
func WithParams(p Params) Option { return func(u *Users) { u.params = p } }

// WithKDF replaces argon2.IDKey, for tests (to count invocations).
func WithKDF(k KDF) Option {
	return func(u *Users) {
		if k != nil {
			u.kdf = k
		}
	}
}

// WithClock replaces time.Now (for the created and updated times).
func WithClock(now func() time.Time) Option {
	return func(u *Users) {
		if now != nil {
			u.now = now
		}
	}
}

// Open opens the user store kept in the file path (conventionally "<data>/users.json"); its
// directory must exist. A missing file is an empty store (the first write creates it, mode 0600).
// An existing file must be valid and, on Unix, not accessible by group or others.
func Open(path string, opts ...Option) (*Users, error) {
	u := &Users{path: path, lockPath: path + ".lock", params: DefaultParams, kdf: argonKDF, now: time.Now}
	for _, o := range opts {
		o(u)
	}
	if err := u.params.Validate(); err != nil {
		return nil, err
	}
	u.dummy = credential{p: u.params, salt: make([]byte, u.params.SaltLen), key: make([]byte, u.params.KeyLen)}
	if _, err := rand.Read(u.dummy.salt); err != nil {
		return nil, fmt.Errorf("auth: random: %w", err)
	}
	if _, err := rand.Read(u.dummy.key); err != nil {
		return nil, fmt.Errorf("auth: random: %w", err)
	}
	s, err := u.read()
	if err != nil {
		return nil, err
	}
	u.install(s)
	return u, nil
}

// Path returns the users file's path.
func (u *Users) Path() string { return u.path }

// read reads and validates the users file; a missing file is an empty store.
func (u *Users) read() (*usersSnap, error) {
	f, err := os.Open(u.path)
	if errors.Is(err, fs.ErrNotExist) {
		return newUsersSnap(usersFile{Version: usersVersion}, nil)
	}
	if err != nil {
		return nil, fmt.Errorf("auth: read %s: %w", u.path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("auth: read %s: %w", u.path, err)
	}
	if err := checkPerm(fi, u.path); err != nil {
		return nil, err
	}
	data, err := io.ReadAll(io.LimitReader(f, maxUsersFile+1))
	if err != nil {
		return nil, fmt.Errorf("auth: read %s: %w", u.path, err)
	}
	if len(data) > maxUsersFile {
		return nil, fmt.Errorf("%w: %s is larger than %d bytes", ErrBadUsersFile, u.path, maxUsersFile)
	}
	var uf usersFile
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&uf); err != nil {
		// json errors quote offsets and types, never values.
		return nil, fmt.Errorf("%w: %s: %v", ErrBadUsersFile, u.path, err)
	}
	s, err := newUsersSnap(uf, fi)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrBadUsersFile, u.path, err)
	}
	return s, nil
}

func (u *Users) store(s *usersSnap) {
	u.rmu.Lock()
	u.install(s)
	u.rmu.Unlock()
}

func (u *Users) install(s *usersSnap) {
	u.snap.Store(s)
	u.gen.Add(1)
}

// Generation changes whenever the users in effect may have changed (a write, or a reload
// that found the file changed), so a caller can skip work while it stays the same.
func (u *Users) Generation() uint64 { return u.gen.Load() }

// Reload re-reads the users file if it changed since it was last read or written (it only stats
// it otherwise), so that changes made by another process, such as the `vitalmq user` CLI, take
// effect. On any error (unreadable, invalid, deleted after having existed) the previous users are
// kept and the error returned.
func (u *Users) Reload() error {
	u.rmu.Lock()
	defer u.rmu.Unlock()
	cur := u.snap.Load()
	fi, err := os.Stat(u.path)
	switch {
	case errors.Is(err, fs.ErrNotExist) && cur.fi == nil:
		return nil // still no file
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("auth: %s was removed; keeping the previous users", u.path)
	case err != nil:
		return fmt.Errorf("auth: reload %s: %w", u.path, err)
	case cur.fi != nil && os.SameFile(cur.fi, fi) && fi.ModTime().Equal(cur.fi.ModTime()) && fi.Size() == cur.fi.Size() && fi.Mode() == cur.fi.Mode():
		return nil
	}
	s, err := u.read()
	if err != nil {
		return err
	}
	u.install(s)
	return nil
}

// mutate applies fn to a fresh copy of the users file, read under the writer locks, and writes the
// result back atomically (mode 0600).
func (u *Users) mutate(fn func(f *usersFile) error) error {
	u.wmu.Lock()
	defer u.wmu.Unlock()
	unlock, err := atomicfile.Lock(u.lockPath, secretPerm)
	if err != nil {
		return err
	}
	defer unlock()
	cur, err := u.read()
	if err != nil {
		return err
	}
	f := usersFile{Version: usersVersion, Users: slices.Clone(cur.file.Users)}
	if err := fn(&f); err != nil {
		return err
	}
	data, err := json.MarshalIndent(&f, "", "  ")
	if err != nil {
		return fmt.Errorf("auth: encode users: %w", err)
	}
	if err := atomicfile.WriteFile(u.path, append(data, '\n'), secretPerm); err != nil {
		return err
	}
	fi, err := os.Stat(u.path)
	if err != nil {
		return fmt.Errorf("auth: stat %s: %w", u.path, err)
	}
	s, err := newUsersSnap(f, fi)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrBadUsersFile, err) // cannot happen: fn keeps entries valid
	}
	u.store(s)
	return nil
}

func findUser(f *usersFile, name string) int {
	return slices.IndexFunc(f.Users, func(e userEntry) bool { return e.Name == name })
}

// Add creates the user name with role and password. The name must satisfy ValidName, the role
// ValidUserRole and the password CheckPassword.
func (u *Users) Add(name, role, password string) error {
	if !ValidName(name) {
		return ErrInvalidName
	}
	if !ValidUserRole(role) {
		return ErrInvalidRole
	}
	if err := CheckPassword(password); err != nil {
		return err
	}
	hash, err := hashPassword(u.kdf, password, u.params) // outside the locks: it takes a while
	if err != nil {
		return err
	}
	return u.mutate(func(f *usersFile) error {
		if findUser(f, name) >= 0 {
			return fmt.Errorf("%w: %s", ErrUserExists, name)
		}
		now := u.now().UTC()
		f.Users = append(f.Users, userEntry{Name: name, Role: role, Hash: hash, Created: now, Updated: now})
		return nil
	})
}

// SetPassword replaces name's password (rehashing it with the current parameters).
func (u *Users) SetPassword(name, password string) error {
	if !ValidName(name) {
		return ErrInvalidName
	}
	if err := CheckPassword(password); err != nil {
		return err
	}
	hash, err := hashPassword(u.kdf, password, u.params)
	if err != nil {
		return err
	}
	return u.mutate(func(f *usersFile) error {
		i := findUser(f, name)
		if i < 0 {
			return fmt.Errorf("%w: %s", ErrUnknownUser, name)
		}
		f.Users[i].Hash = hash
		f.Users[i].Updated = u.now().UTC()
		return nil
	})
}

// Remove deletes the user name.
func (u *Users) Remove(name string) error {
	if !ValidName(name) {
		return ErrInvalidName
	}
	return u.mutate(func(f *usersFile) error {
		i := findUser(f, name)
		if i < 0 {
			return fmt.Errorf("%w: %s", ErrUnknownUser, name)
		}
		f.Users = slices.Delete(f.Users, i, i+1)
		return nil
	})
}

// List returns the users, sorted by name, as of the last Reload or change made through u.
func (u *Users) List() []User {
	s := u.snap.Load()
	out := make([]User, 0, len(s.byName))
	for _, r := range s.byName {
		out = append(out, r.user)
	}
	slices.SortFunc(out, func(a, b User) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Get returns the user name, as of the last Reload or change made through u.
func (u *Users) Get(name string) (User, bool) {
	if r := u.snap.Load().byName[name]; r != nil {
		return r.user, true
	}
	return User{}, false
}

// Verify checks name's password and returns the user. Every failure is ErrInvalidCredentials,
// whether the user is unknown, the name invalid or the password wrong, and every call derives
// exactly one key: for a name that matches no user, the password is hashed against a dummy
// credential with the store's current parameters, so an unknown user costs the same work as a
// known one (a user whose hash predates a parameter change costs its own parameters until the
// password is set again). The derived key is compared in constant time. Verify does no I/O.
func (u *Users) Verify(name, password string) (User, error) {
	r := u.snap.Load().byName[name] // invalid names are never in the map
	c := &u.dummy
	if r != nil && len(password) <= MaxPasswordLen {
		c = &r.cred
	}
	ok := c.verify(u.kdf, password)
	if !ok || c == &u.dummy {
		return User{}, ErrInvalidCredentials
	}
	return r.user, nil
}

// BootstrapAdmin creates the user "admin" with role admin and a random password of
// BootstrapPasswordLen characters when the store has no user at all, and returns that password
// (to be shown once). When the store already has users it changes nothing and returns ErrNotEmpty.
func (u *Users) BootstrapAdmin() (string, error) {
	if len(u.snap.Load().byName) > 0 { // the usual case at every start: no password to hash (19 MiB, 50 ms)
		return "", ErrNotEmpty
	}
	password, err := randomPassword(BootstrapPasswordLen)
	if err != nil {
		return "", err
	}
	hash, err := hashPassword(u.kdf, password, u.params)
	if err != nil {
		return "", err
	}
	err = u.mutate(func(f *usersFile) error {
		if len(f.Users) > 0 {
			return ErrNotEmpty
		}
		now := u.now().UTC()
		f.Users = append(f.Users, userEntry{Name: "admin", Role: RoleAdmin, Hash: hash, Created: now, Updated: now})
		return nil
	})
	if err != nil {
		return "", err
	}
	return password, nil
}

// passwordAlphabet has no look-alike characters (0 O 1 l I), so a password read off a screen is
// typed right: 57 symbols, 24 of them give about 140 bits.
const passwordAlphabet = "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789"

func randomPassword(n int) (string, error) {
	out := make([]byte, 0, n)
	buf := make([]byte, 64)
	limit := 256 - 256%len(passwordAlphabet) // rejection sampling: no modulo bias
	for len(out) < n {
		if _, err := rand.Read(buf); err != nil {
			return "", fmt.Errorf("auth: random: %w", err)
		}
		for _, b := range buf {
			if int(b) < limit && len(out) < n {
				out = append(out, passwordAlphabet[int(b)%len(passwordAlphabet)])
			}
		}
	}
	return string(out), nil
}
