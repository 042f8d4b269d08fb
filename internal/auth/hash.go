package auth

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/crypto/argon2"
)

// Params are the argon2id cost parameters of new password hashes. A stored hash carries its own
// parameters (in its PHC string) and is always verified with them.
type Params struct {
	Memory  uint32 // KiB
	Time    uint32 // passes over memory
	Threads uint8  // lanes
	SaltLen uint32 // bytes of random salt
	KeyLen  uint32 // bytes of derived key
}

// DefaultParams: argon2id with m=19 MiB, t=2, p=1, a 16-byte salt and a 32-byte key; the first
// configuration OWASP's Password Storage Cheat Sheet recommends. See the package documentation for
// why not more.
var DefaultParams = Params{Memory: 19 * 1024, Time: 2, Threads: 1, SaltLen: 16, KeyLen: 32}

// Bounds on parameters, both for new hashes and for stored ones: a hash string in users.json is
// input too, and one asking for 64 GiB must not take the broker down on the next CONNECT.
const (
	minMemory  = 8       // KiB per thread: argon2's own minimum
	maxMemory  = 1 << 20 // KiB, 1 GiB
	maxTime    = 64      // passes
	minSaltLen = 8       // bytes (RFC 9106 recommends 16, which new hashes use)
	maxSaltLen = 64      // bytes
	minKeyLen  = 16      // bytes
	maxKeyLen  = 64      // bytes
	maxPHCLen  = 256     // characters of a stored hash string
	argonV     = argon2.Version
)

// KDF derives a key from a password; it has the signature of argon2.IDKey, which is the default.
// Tests inject a counting or cheap one.
type KDF func(password, salt []byte, time, memory uint32, threads uint8, keyLen uint32) []byte

// ErrBadHash reports a malformed or out-of-bounds argon2id PHC string. Its message never includes
// the hash itself.
var ErrBadHash = errors.New("auth: malformed argon2id hash")

// Validate reports whether p is within the accepted bounds.
func (p Params) Validate() error {
	switch {
	case p.Threads < 1:
		return fmt.Errorf("%w: threads must be at least 1", ErrBadHash)
	case p.Memory < minMemory*uint32(p.Threads) || p.Memory > maxMemory:
		return fmt.Errorf("%w: memory must be %d..%d KiB (at least 8 per thread)", ErrBadHash, minMemory*uint32(p.Threads), maxMemory)
	case p.Time < 1 || p.Time > maxTime:
		return fmt.Errorf("%w: time must be 1..%d", ErrBadHash, maxTime)
	case p.SaltLen < minSaltLen || p.SaltLen > maxSaltLen:
		return fmt.Errorf("%w: salt length must be %d..%d bytes", ErrBadHash, minSaltLen, maxSaltLen)
	case p.KeyLen < minKeyLen || p.KeyLen > maxKeyLen:
		return fmt.Errorf("%w: key length must be %d..%d bytes", ErrBadHash, minKeyLen, maxKeyLen)
	}
	return nil
}

var b64 = base64.RawStdEncoding

// hashPassword returns the PHC string of password under p with a fresh random salt.
func hashPassword(kdf KDF, password string, p Params) (string, error) {
	if err := p.Validate(); err != nil {
		return "", err
	}
	salt := make([]byte, p.SaltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("auth: random salt: %w", err)
	}
	key := kdf([]byte(password), salt, p.Time, p.Memory, p.Threads, p.KeyLen)
	return encodePHC(p, salt, key), nil
}

// encodePHC formats "$argon2id$v=19$m=<KiB>,t=<time>,p=<threads>$<salt>$<key>" (unpadded standard
// base64, as the reference implementation and libsodium write it).
func encodePHC(p Params, salt, key []byte) string {
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argonV, p.Memory, p.Time, p.Threads,
		b64.EncodeToString(salt), b64.EncodeToString(key))
}

// credential is a parsed PHC string.
type credential struct {
	p    Params
	salt []byte
	key  []byte
}

// ParsePHC parses an argon2id PHC string as written by this package (and by the argon2 reference
// implementation): version 19, parameters in the order m, t, p, unpadded base64 salt and key. It
// returns the parameters (SaltLen and KeyLen taken from the decoded salt and key). Every error
// wraps ErrBadHash.
func ParsePHC(s string) (Params, error) {
	c, err := parsePHC(s)
	return c.p, err
}

func parsePHC(s string) (credential, error) {
	bad := func(why string) (credential, error) {
		return credential{}, fmt.Errorf("%w: %s", ErrBadHash, why)
	}
	if len(s) > maxPHCLen {
		return bad("too long")
	}
	parts := strings.Split(s, "$")
	// "", "argon2id", "v=19", "m=..,t=..,p=..", salt, key
	if len(parts) != 6 || parts[0] != "" {
		return bad("want $argon2id$v=19$m=M,t=T,p=P$salt$hash")
	}
	if parts[1] != "argon2id" {
		return bad("algorithm is not argon2id")
	}
	if parts[2] != "v="+strconv.Itoa(argonV) {
		return bad("unsupported version")
	}
	kv := strings.Split(parts[3], ",")
	if len(kv) != 3 {
		return bad("want parameters m=M,t=T,p=P")
	}
	var vals [3]uint64
	for i, name := range []string{"m", "t", "p"} {
		v, ok := strings.CutPrefix(kv[i], name+"=")
		if !ok {
			return bad("want parameters m=M,t=T,p=P")
		}
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil || v != strconv.FormatUint(n, 10) { // no "+1", "01"
			return bad("parameter " + name + " is not a number")
		}
		vals[i] = n
	}
	if vals[2] > 255 {
		return bad("parameter p out of range")
	}
	salt, err := b64.Strict().DecodeString(parts[4])
	if err != nil {
		return bad("salt is not unpadded base64")
	}
	key, err := b64.Strict().DecodeString(parts[5])
	if err != nil {
		return bad("hash is not unpadded base64")
	}
	c := credential{
		p:    Params{Memory: uint32(vals[0]), Time: uint32(vals[1]), Threads: uint8(vals[2]), SaltLen: uint32(len(salt)), KeyLen: uint32(len(key))},
		salt: salt,
		key:  key,
	}
	if err := c.p.Validate(); err != nil {
		return credential{}, err
	}
	return c, nil
}

// verify recomputes password's key under c's parameters and compares it in constant time.
func (c *credential) verify(kdf KDF, password string) bool {
	got := kdf([]byte(password), c.salt, c.p.Time, c.p.Memory, c.p.Threads, c.p.KeyLen)
	return subtle.ConstantTimeCompare(got, c.key) == 1
}

// argonKDF is argon2.IDKey as a KDF.
func argonKDF(password, salt []byte, time, memory uint32, threads uint8, keyLen uint32) []byte {
	return argon2.IDKey(password, salt, time, memory, threads, keyLen)
}
