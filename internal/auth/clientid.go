package auth

import (
	"crypto/rand"
	"errors"
	"strings"
	"unicode/utf8"

	"vitalmq/internal/pki"
)

// ClientIDSeparator separates a user's name from the rest of the user's client ids
// ("nurse.amy:tablet-3"). It never occurs in a device id or a user name, so a user's client id can
// never equal a device's, nor another user's.
const ClientIDSeparator = ":"

// Errors of ResolveClientID.
var (
	ErrInvalidIdentity    = errors.New("auth: invalid identity (unknown role, or missing or malformed device id or user name)")
	ErrClientIDMismatch   = errors.New("auth: a device's client id must be its device id")
	ErrClientIDNotAllowed = errors.New("auth: a user's client id must be \"<user name>:<suffix>\" (suffix without + # / or U+0000)")
)

// ResolveClientID checks the client id a connection of id asked for and returns the one it gets:
//
//   - A device (RoleDevice) must use its device id (pki.ValidDeviceID) as client id; an empty
//     client id is assigned the device id. Anything else is ErrClientIDMismatch.
//   - A user (admin, clinician, service) must use "<user name>:<suffix>" with a non-empty suffix
//     of valid UTF-8 without '+', '#', '/' or U+0000; an empty client id is assigned
//     "<user name>:<random>". Anything else is ErrClientIDNotAllowed.
//
// So no identity can take over (or resume the session of) a client id that belongs to another
// identity: device ids and user names contain no ':', user names contain none either, so the
// namespaces are disjoint. [CASES T25, T26, T27]
func ResolveClientID(id Identity, requested string) (string, error) {
	switch id.Role {
	case RoleDevice:
		if !pki.ValidDeviceID(id.Device) {
			return "", ErrInvalidIdentity
		}
		if requested == "" {
			return id.Device, nil
		}
		if requested != id.Device {
			return "", ErrClientIDMismatch
		}
		return requested, nil
	case RoleAdmin, RoleClinician, RoleService:
		if !ValidName(id.Username) {
			return "", ErrInvalidIdentity
		}
		prefix := id.Username + ClientIDSeparator
		if requested == "" {
			return prefix + strings.ToLower(rand.Text()), nil
		}
		suffix, ok := strings.CutPrefix(requested, prefix)
		if !ok || suffix == "" || !utf8.ValidString(suffix) || strings.ContainsAny(suffix, "+#/\x00") {
			return "", ErrClientIDNotAllowed
		}
		return requested, nil
	}
	return "", ErrInvalidIdentity
}

// CheckClientID reports whether a connection of id may use clientID (see ResolveClientID; an
// empty clientID is allowed: it will be assigned).
func CheckClientID(id Identity, clientID string) error {
	_, err := ResolveClientID(id, clientID)
	return err
}
