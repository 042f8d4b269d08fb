// Package archtest fails when a package imports what the architecture forbids.
package archtest

import (
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
)

type pkg struct {
	ImportPath string
	Imports    []string
}

// rules: packages matching the first pattern must not import packages matching the second.
// A pattern ending in "/" matches that prefix.
var rules = []struct{ pkg, forbidden string }{
	{"vitalmq/internal/packet", "vitalmq/"}, {"vitalmq/internal/packet", "log/slog"}, {"vitalmq/internal/packet", "net/http"},
	{"vitalmq/internal/topic", "vitalmq/"}, {"vitalmq/internal/topic", "log/slog"}, {"vitalmq/internal/topic", "net/http"},
	{"vitalmq/internal/session", "vitalmq/internal/broker"}, {"vitalmq/internal/session", "net"},
	{"vitalmq/internal/broker", "vitalmq/internal/state"}, {"vitalmq/internal/broker", "vitalmq/internal/store"},
	{"vitalmq/internal/broker", "vitalmq/internal/rpm"}, {"vitalmq/internal/broker", "vitalmq/internal/api"},
	{"vitalmq/internal/broker", "vitalmq/internal/config"}, {"vitalmq/internal/broker", "net/http"},
	{"vitalmq/internal/rpm", "vitalmq/internal/broker"}, {"vitalmq/internal/rpm", "vitalmq/internal/store"},
	{"vitalmq/internal/", "vitalmq/cmd/"},
}

func matches(path, pattern string) bool {
	return path == pattern || strings.HasSuffix(pattern, "/") && strings.HasPrefix(path, pattern)
}

func TestMatches(t *testing.T) {
	for _, c := range []struct {
		path, pattern string
		want          bool
	}{
		{"vitalmq/internal/topic", "vitalmq/", true}, {"net/http", "net/http", true}, {"net/http/httptest", "net/http", false},
		{"vitalmq/cmd/vitalmq", "vitalmq/cmd/", true}, {"vitalmq/internal/brokerx", "vitalmq/internal/broker", false},
	} {
		if got := matches(c.path, c.pattern); got != c.want {
			t.Errorf("matches(%q, %q) = %v, want %v", c.path, c.pattern, got, c.want)
		}
	}
}

func TestImports(t *testing.T) {
	out, err := exec.Command("go", "list", "-json", "vitalmq/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	n := 0
	for dec.More() {
		var p pkg
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		n++
		for _, r := range rules {
			if !matches(p.ImportPath, r.pkg) {
				continue
			}
			for _, imp := range p.Imports {
				if matches(imp, r.forbidden) {
					t.Errorf("%s imports %s: forbidden by the architecture", p.ImportPath, imp)
				}
			}
		}
	}
	if n < 5 {
		t.Fatalf("go list saw %d packages, want the whole module", n)
	}
}
