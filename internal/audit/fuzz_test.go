package audit

import (
	"bytes"
	"os"
	"testing"
)

// FuzzVerify feeds Verify's reader arbitrary logs next to a fixed head. It must not panic, and
// no log other than the genuine one may verify: without the key, no change goes unnoticed.
func FuzzVerify(f *testing.F) {
	path, keyPath := paths(f)
	writeLog(f, path, keyPath, 4)
	genuine, err := os.ReadFile(path)
	if err != nil {
		f.Fatal(err)
	}
	key, err := readKey(keyPath)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(genuine)
	f.Add(genuine[:len(genuine)-1])
	f.Add(append(bytes.Clone(genuine), genuine...))
	f.Add([]byte("{}\n\n\x00"))
	f.Fuzz(func(t *testing.T, log []byte) {
		c, err := check(bytes.NewReader(log), key, HeadPath(path))
		if err != nil {
			t.Fatal(err)
		}
		if ok := c.rep.OK(); ok != bytes.Equal(log, genuine) {
			t.Fatalf("OK = %v for a log that is %s the genuine one; problems %v", ok, map[bool]string{true: "", false: "not"}[!ok], c.rep.Problems)
		}
	})
}
