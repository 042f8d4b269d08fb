package auth

import (
	"errors"
	"strings"
	"testing"

	"vitalmq/internal/pki"
)

func TestResolveClientID(t *testing.T) {
	for _, c := range []struct {
		name      string
		id        Identity
		requested string
		want      string // "" with err
		err       error
	}{
		{"device own id", dev1, "bed-12-hr", "bed-12-hr", nil},
		{"device assigned", dev1, "", "bed-12-hr", nil},
		{"T26 device takes another device's id", dev1, "bed-13-spo2", "", ErrClientIDMismatch},
		{"device takes a user's id", dev1, "nurse.amy:tablet", "", ErrClientIDMismatch},
		{"device id with suffix", dev1, "bed-12-hr-2", "", ErrClientIDMismatch},
		{"device id case", dev1, "BED-12-HR", "", ErrClientIDMismatch},
		{"T25 device +", Identity{Role: RoleDevice, Device: "+"}, "+", "", ErrInvalidIdentity},
		{"device without id", Identity{Role: RoleDevice}, "", "", ErrInvalidIdentity},
		{"device id with /", Identity{Role: RoleDevice, Device: "a/b"}, "a/b", "", ErrInvalidIdentity},
		{"user own prefix", clin, "nurse.amy:tablet", "nurse.amy:tablet", nil},
		{"user unicode suffix", clin, "nurse.amy:station-ü", "nurse.amy:station-ü", nil},
		{"T26 user takes a device's id", clin, "bed-12-hr", "", ErrClientIDNotAllowed},
		{"T26 user takes another user's id", clin, "hub:1", "", ErrClientIDNotAllowed},
		{"user prefix of another user", Identity{Role: RoleService, Username: "nurse"}, "nurse.amy:tablet", "", ErrClientIDNotAllowed},
		{"user bare name", clin, "nurse.amy", "", ErrClientIDNotAllowed},
		{"user empty suffix", clin, "nurse.amy:", "", ErrClientIDNotAllowed},
		{"T25 user suffix +", clin, "nurse.amy:+", "", ErrClientIDNotAllowed},
		{"T25 user suffix #", clin, "nurse.amy:#", "", ErrClientIDNotAllowed},
		{"T25 user suffix /", clin, "nurse.amy:../p2", "", ErrClientIDNotAllowed},
		{"user suffix NUL", clin, "nurse.amy:a\x00", "", ErrClientIDNotAllowed},
		{"user suffix bad UTF-8", clin, "nurse.amy:\xff", "", ErrClientIDNotAllowed},
		{"T25 client id +", clin, "+", "", ErrClientIDNotAllowed},
		{"T25 client id #", clin, "#", "", ErrClientIDNotAllowed},
		{"T25 user with + name", Identity{Role: RoleClinician, Username: "+"}, "+:x", "", ErrInvalidIdentity},
		{"anonymous user", Identity{Role: RoleClinician}, "", "", ErrInvalidIdentity},
		{"unknown role", unknown, "x", "", ErrInvalidIdentity},
		{"no role", Identity{Device: "bed-12-hr"}, "bed-12-hr", "", ErrInvalidIdentity},
	} {
		got, err := ResolveClientID(c.id, c.requested)
		if got != c.want || !errors.Is(err, c.err) || (err == nil) != (c.err == nil) {
			t.Errorf("%s: ResolveClientID(%+v, %q) = %q, %v; want %q, %v", c.name, c.id, c.requested, got, err, c.want, c.err)
		}
		if cerr := CheckClientID(c.id, c.requested); (cerr == nil) != (c.err == nil) {
			t.Errorf("%s: CheckClientID = %v", c.name, cerr)
		}
	}
	// Assigned user client ids are namespaced, random, and never a device id.
	a, err := ResolveClientID(clin, "")
	if err != nil || !strings.HasPrefix(a, "nurse.amy:") || len(a) <= len("nurse.amy:") {
		t.Fatalf("assigned %q, %v", a, err)
	}
	b, _ := ResolveClientID(clin, "")
	if a == b {
		t.Fatal("assigned client ids repeat")
	}
	if pki.ValidDeviceID(a) || CheckClientID(clin, a) != nil || CheckClientID(svc, a) == nil {
		t.Fatal("assigned client id not in the user's own namespace")
	}
}
