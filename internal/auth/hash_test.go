package auth

import (
	"encoding/hex"
	"errors"
	"strings"
	"testing"
)

// cheap are argon2id parameters for tests: real argon2id, minimal cost.
var cheap = Params{Memory: 8, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}

// TestReferenceVector checks the KDF and the PHC encoding against the argon2 reference
// implementation (phc-winner-argon2 src/test.c): argon2id v=19, password "password", salt "somesalt".
func TestReferenceVector(t *testing.T) {
	key := argonKDF([]byte("password"), []byte("somesalt"), 2, 256, 1, 32)
	if got := hex.EncodeToString(key); got != "9dfeb910e80bad0311fee20f9c0e2b12c17987b4cac90c2ef54d5b3021c68bfe" {
		t.Fatalf("argon2id m=256 t=2 p=1 = %s", got)
	}
	// The reference CLI's PHC string for m=65536 (64 MiB): parse it and verify with it.
	const ref = "$argon2id$v=19$m=65536,t=2,p=1$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc"
	c, err := parsePHC(ref)
	if err != nil {
		t.Fatal(err)
	}
	if c.p != (Params{Memory: 65536, Time: 2, Threads: 1, SaltLen: 8, KeyLen: 32}) || string(c.salt) != "somesalt" {
		t.Fatalf("parsed %+v salt %q", c.p, c.salt)
	}
	if !c.verify(argonKDF, "password") || c.verify(argonKDF, "passwore") {
		t.Fatal("reference hash does not verify exactly the reference password")
	}
	if got := encodePHC(c.p, c.salt, c.key); got != ref {
		t.Fatalf("encodePHC = %s, want the reference %s", got, ref)
	}
}

func TestHashRoundTrip(t *testing.T) {
	for _, p := range []Params{cheap, DefaultParams} {
		h, err := hashPassword(argonKDF, "correct horse battery", p)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(h, "$argon2id$v=19$") {
			t.Fatalf("hash %q is not an argon2id PHC string", h)
		}
		got, err := ParsePHC(h)
		if err != nil || got != p {
			t.Fatalf("ParsePHC = %+v, %v; want %+v", got, err, p)
		}
		c, _ := parsePHC(h)
		if !c.verify(argonKDF, "correct horse battery") || c.verify(argonKDF, "correct horse batterY") {
			t.Fatal("round trip failed")
		}
		h2, _ := hashPassword(argonKDF, "correct horse battery", p)
		if h2 == h {
			t.Fatal("two hashes of one password are equal: salt not random")
		}
	}
	if !strings.Contains(mustHash(t, DefaultParams), "$m=19456,t=2,p=1$") {
		t.Fatal("DefaultParams are not m=19 MiB, t=2, p=1")
	}
}

func mustHash(t *testing.T, p Params) string {
	t.Helper()
	h, err := hashPassword(argonKDF, "some long password", p)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestParsePHCErrors(t *testing.T) {
	salt, key := "c29tZXNhbHRzb21lc2FsdA", "CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc"
	ok := "$argon2id$v=19$m=19456,t=2,p=1$" + salt + "$" + key
	if _, err := ParsePHC(ok); err != nil {
		t.Fatalf("valid string refused: %v", err)
	}
	for name, s := range map[string]string{
		"empty":           "",
		"argon2i":         "$argon2i$v=19$m=19456,t=2,p=1$" + salt + "$" + key,
		"argon2d":         "$argon2d$v=19$m=19456,t=2,p=1$" + salt + "$" + key,
		"bcrypt":          "$2b$12$abcdefghijklmnopqrstuuABCDEFGHIJKLMNOPQRSTUVWXYZ01234",
		"version 16":      "$argon2id$v=16$m=19456,t=2,p=1$" + salt + "$" + key,
		"no version":      "$argon2id$m=19456,t=2,p=1$" + salt + "$" + key,
		"order":           "$argon2id$v=19$t=2,m=19456,p=1$" + salt + "$" + key,
		"missing p":       "$argon2id$v=19$m=19456,t=2$" + salt + "$" + key,
		"extra param":     "$argon2id$v=19$m=19456,t=2,p=1,x=1$" + salt + "$" + key,
		"not a number":    "$argon2id$v=19$m=lots,t=2,p=1$" + salt + "$" + key,
		"sign":            "$argon2id$v=19$m=+19456,t=2,p=1$" + salt + "$" + key,
		"leading zero":    "$argon2id$v=19$m=019456,t=2,p=1$" + salt + "$" + key,
		"negative":        "$argon2id$v=19$m=-1,t=2,p=1$" + salt + "$" + key,
		"overflow":        "$argon2id$v=19$m=4294967296,t=2,p=1$" + salt + "$" + key,
		"p 256":           "$argon2id$v=19$m=19456,t=2,p=256$" + salt + "$" + key,
		"p 0":             "$argon2id$v=19$m=19456,t=2,p=0$" + salt + "$" + key,
		"t 0":             "$argon2id$v=19$m=19456,t=0,p=1$" + salt + "$" + key,
		"t huge":          "$argon2id$v=19$m=19456,t=100000,p=1$" + salt + "$" + key,
		"m 64 GiB":        "$argon2id$v=19$m=67108864,t=2,p=1$" + salt + "$" + key,
		"m below 8/lane":  "$argon2id$v=19$m=15,t=2,p=2$" + salt + "$" + key,
		"padded salt":     "$argon2id$v=19$m=19456,t=2,p=1$" + salt + "==$" + key,
		"bad base64 salt": "$argon2id$v=19$m=19456,t=2,p=1$!!!!$" + key,
		"bad base64 key":  "$argon2id$v=19$m=19456,t=2,p=1$" + salt + "$***",
		"short salt":      "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$" + key,
		"short key":       "$argon2id$v=19$m=19456,t=2,p=1$" + salt + "$AAAA",
		"no salt":         "$argon2id$v=19$m=19456,t=2,p=1$$" + key,
		"trailing":        ok + "$",
		"no leading $":    strings.TrimPrefix(ok, "$"),
		"too long":        ok + strings.Repeat("A", 300),
	} {
		_, err := ParsePHC(s)
		if !errors.Is(err, ErrBadHash) {
			t.Errorf("%s: ParsePHC(%q) = %v, want ErrBadHash", name, s, err)
			continue
		}
		if strings.Contains(err.Error(), key) || strings.Contains(err.Error(), salt) {
			t.Errorf("%s: error %q quotes the hash", name, err)
		}
	}
}

func TestParamsValidate(t *testing.T) {
	if err := DefaultParams.Validate(); err != nil {
		t.Fatal(err)
	}
	if err := cheap.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, p := range []Params{
		{Memory: 19456, Time: 2, Threads: 1, SaltLen: 4, KeyLen: 32},
		{Memory: 19456, Time: 2, Threads: 1, SaltLen: 16, KeyLen: 8},
		{Memory: 1<<20 + 1, Time: 2, Threads: 1, SaltLen: 16, KeyLen: 32},
		{Memory: 19456, Time: 0, Threads: 1, SaltLen: 16, KeyLen: 32},
		{Memory: 19456, Time: 2, Threads: 0, SaltLen: 16, KeyLen: 32},
	} {
		if p.Validate() == nil {
			t.Errorf("%+v accepted", p)
		}
		if _, err := hashPassword(argonKDF, "x", p); err == nil {
			t.Errorf("hashPassword with %+v succeeded", p)
		}
	}
}
