package topic

import (
	"errors"
	"strings"
	"testing"
)

func TestCheckName(t *testing.T) {
	tests := []struct {
		name   string
		limits Limits
		in     string
		want   error
	}{
		{"simple", Limits{}, "a", nil},
		{"levels", Limits{}, "ward/7/bed/3/hr", nil},
		{"only separator", Limits{}, "/", nil},
		{"empty levels", Limits{}, "//", nil},
		{"dollar", Limits{}, "$SYS/broker/uptime", nil},
		{"space", Limits{}, "a b", nil},
		{"unicode", Limits{}, "é/ü/日本", nil},
		{"empty", Limits{}, "", ErrEmpty},
		{"plus", Limits{}, "a/+", ErrWildcardInName},
		{"hash", Limits{}, "#", ErrWildcardInName},
		{"plus inside level", Limits{}, "a+b", ErrWildcardInName},
		{"hash inside level", Limits{}, "a/b#", ErrWildcardInName},
		{"null", Limits{}, "a\x00b", ErrNullChar},
		{"invalid utf8", Limits{}, "a\xff", ErrInvalidUTF8},
		{"truncated utf8", Limits{}, "a\xc3", ErrInvalidUTF8},
		{"surrogate", Limits{}, "\xed\xa0\x80", ErrInvalidUTF8},
		{"max length", Limits{}, strings.Repeat("a", 65535), nil},
		{"too long", Limits{}, strings.Repeat("a", 65536), ErrTooLong},
		{"too long before null", Limits{}, strings.Repeat("\x00", 65536), ErrTooLong},
		{"custom too long", Limits{MaxLength: 4}, "abcde", ErrTooLong},
		{"max levels", Limits{}, strings.Repeat("/", 127), nil},
		{"too deep", Limits{}, strings.Repeat("/", 128), ErrTooDeep},
		{"custom too deep", Limits{MaxLevels: 2}, "a/b/c", ErrTooDeep},
		{"custom depth ok", Limits{MaxLevels: 2}, "a/b", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.limits.CheckName(tt.in); !errors.Is(got, tt.want) {
				t.Errorf("CheckName(%.40q) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
}

func TestCheckFilter(t *testing.T) {
	tests := []struct {
		name   string
		limits Limits
		in     string
		want   error
	}{
		{"hash", Limits{}, "#", nil},
		{"plus", Limits{}, "+", nil},
		{"trailing hash", Limits{}, "a/#", nil},
		{"inner plus", Limits{}, "rpm/+/hr", nil},
		{"plus plus", Limits{}, "+/+", nil},
		{"leading empty", Limits{}, "/+", nil},
		{"trailing empty", Limits{}, "+/", nil},
		{"slash hash", Limits{}, "/#", nil},
		{"plus hash", Limits{}, "+/#", nil},
		{"dollar", Limits{}, "$SYS/#", nil},
		{"literal", Limits{}, "a/b", nil},
		{"share", Limits{}, "$share/g/a/#", nil},
		{"share hash", Limits{}, "$share/g/#", nil},
		{"share plus", Limits{}, "$share/g/+", nil},
		{"share unicode group", Limits{}, "$share/é/x", nil},
		{"share without slash is literal", Limits{}, "$share", nil},
		{"sharex is literal", Limits{}, "$sharex/#", nil},
		{"empty", Limits{}, "", ErrEmpty},
		{"hash in middle", Limits{}, "rpm/#/hr", ErrInvalidWildcard},
		{"hash not last", Limits{}, "a/#/b", ErrInvalidWildcard},
		{"plus suffix", Limits{}, "a+", ErrInvalidWildcard},
		{"plus prefix", Limits{}, "+a", ErrInvalidWildcard},
		{"hash suffix", Limits{}, "#a", ErrInvalidWildcard},
		{"hash prefix", Limits{}, "a#", ErrInvalidWildcard},
		{"hash in level", Limits{}, "a/b#", ErrInvalidWildcard},
		{"double plus", Limits{}, "++", ErrInvalidWildcard},
		{"double hash", Limits{}, "##", ErrInvalidWildcard},
		{"hash then slash", Limits{}, "#/", ErrInvalidWildcard},
		{"share inner hash", Limits{}, "$share/g/a/#/b", ErrInvalidWildcard},
		{"share inner plus", Limits{}, "$share/g/a+", ErrInvalidWildcard},
		{"share no filter", Limits{}, "$share/g", ErrBadShare},
		{"share empty group", Limits{}, "$share//x", ErrBadShare},
		{"share group plus", Limits{}, "$share/g+/x", ErrBadShare},
		{"share empty filter", Limits{}, "$share/g/", ErrBadShare},
		{"share group hash", Limits{}, "$share/#/x", ErrBadShare},
		{"share group only plus", Limits{}, "$share/+/x", ErrBadShare},
		{"share nothing", Limits{}, "$share/", ErrBadShare},
		{"share group hash inside", Limits{}, "$share/a#b/x", ErrBadShare},
		{"null", Limits{}, "a/\x00", ErrNullChar},
		{"null in group", Limits{}, "$share/g\x00/x", ErrNullChar},
		{"null in inner", Limits{}, "$share/g/\x00", ErrNullChar},
		{"invalid utf8", Limits{}, "a\xff/#", ErrInvalidUTF8},
		{"surrogate", Limits{}, "\xed\xa0\x80/#", ErrInvalidUTF8},
		{"invalid utf8 group", Limits{}, "$share/\xff/x", ErrInvalidUTF8},
		{"too long", Limits{}, strings.Repeat("a", 65536), ErrTooLong},
		{"too long hashes", Limits{}, strings.Repeat("#", 65536), ErrTooLong},
		{"custom too long share", Limits{MaxLength: 10}, "$share/g/ab", ErrTooLong},
		{"max levels", Limits{}, strings.Repeat("+/", 127) + "#", nil},
		{"too deep", Limits{}, strings.Repeat("+/", 128) + "#", ErrTooDeep},
		{"share depth counts inner", Limits{MaxLevels: 2}, "$share/g/a/b", nil},
		{"share too deep", Limits{MaxLevels: 2}, "$share/g/a/b/c", ErrTooDeep},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.limits.CheckFilter(tt.in); !errors.Is(got, tt.want) {
				t.Errorf("CheckFilter(%.40q) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
}

func TestParseShared(t *testing.T) {
	tests := []struct {
		in           string
		group, inner string
		ok           bool
		err          error
	}{
		{"$share/g/a/b", "g", "a/b", true, nil},
		{"$share/g/#", "g", "#", true, nil},
		{"$share/g/$share/h/x", "g", "$share/h/x", true, nil},
		{"a/b", "", "", false, nil},
		{"$share", "", "", false, nil},
		{"$SHARE/g/x", "", "", false, nil},
		{"$share/g", "", "", true, ErrBadShare},
		{"$share//x", "", "", true, ErrBadShare},
		{"$share/g+/x", "", "", true, ErrBadShare},
		{"$share/g/", "", "", true, ErrBadShare},
		{"$share/#/x", "", "", true, ErrBadShare},
		{"$share/", "", "", true, ErrBadShare},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			group, inner, ok, err := ParseShared(tt.in)
			if group != tt.group || inner != tt.inner || ok != tt.ok || !errors.Is(err, tt.err) {
				t.Errorf("ParseShared(%q) = %q, %q, %v, %v, want %q, %q, %v, %v",
					tt.in, group, inner, ok, err, tt.group, tt.inner, tt.ok, tt.err)
			}
		})
	}
}

func TestMatch(t *testing.T) {
	tests := []struct {
		filter, name string
		want         bool
	}{
		{"a/b", "a/b", true},
		{"a/b", "a/c", false},
		{"a", "a/b", false},
		{"a/b", "a", false},
		{"#", "a/b", true},
		{"#", "/", true},
		{"#", "$SYS/x", false},
		{"#", "$", false},
		{"+/x", "$SYS/x", false},
		{"+", "$SYS", false},
		{"+/#", "$SYS", false},
		{"$SYS/#", "$SYS/x", true},
		{"$SYS/+", "$SYS/x", true},
		{"$SYS/#", "$SYS", true},
		{"$SYS", "$SYS", true},
		{"a/$x/+", "a/$x/y", true},
		{"a/+", "a/$x", true},
		{"a/#", "a", true},
		{"a/#", "a/b/c", true},
		{"a/#", "ab", false},
		{"a/#", "b/a", false},
		{"+/+", "/", true},
		{"+", "/", false},
		{"/+", "/", true},
		{"+/", "/", true},
		{"a/+", "a/", true},
		{"a/+", "a", false},
		{"a/+/c", "a//c", true},
		{"+/#", "a", true},
		{"a/+/#", "a", false},
		{"a/+/#", "a/b", true},
		{"a/+/#", "a/b/c/d", true},
		{"+/b/+", "a/b/c", true},
		{"+/b/+", "a/c/c", false},
		{"sport/tennis/+", "sport/tennis/player1", true},
		{"sport/tennis/+", "sport/tennis/player1/ranking", false},
		{"sport/#", "sport", true},
		{"", "a", false},
	}
	for _, tt := range tests {
		t.Run(tt.filter+" "+tt.name, func(t *testing.T) {
			if got := Match(tt.filter, tt.name); got != tt.want {
				t.Errorf("Match(%q, %q) = %v, want %v", tt.filter, tt.name, got, tt.want)
			}
		})
	}
}

func TestCovers(t *testing.T) {
	tests := []struct {
		outer, inner string
		want         bool
	}{
		{"a/#", "a/b/+", true},
		{"a/+", "a/#", false},
		{"#", "$SYS/x", false},
		{"#", "a/b", true},
		{"#", "#", true},
		{"#", "+/#", true},
		{"+/#", "#", true},
		{"+/+/#", "#", false},
		{"+", "#", false},
		{"#", "$SYS/#", false},
		{"$SYS/#", "$SYS/x", true},
		{"$SYS/#", "$SYS/#", true},
		{"+/x", "$SYS/x", false},
		{"+/x", "a/x", true},
		{"a/#", "a", true},
		{"a/#", "a/#", true},
		{"a", "a/#", false},
		{"a/+", "a/b", true},
		{"a/+", "a/+", true},
		{"a/b", "a/+", false},
		{"a/+/#", "a/#", false},
		{"a/+/#", "a/b/#", true},
		{"a/+/#", "a/b", true},
		{"a/+", "a", false},
		{"a/b", "a/b", true},
		{"a/b", "a/c", false},
		{"a/b", "a/b/c", false},
		{"+", "a", true},
		{"+", "+", true},
		{"+/+", "/", true},
		{"a/#", "b/#", false},
		{"", "a", false},
		{"a", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.outer+" "+tt.inner, func(t *testing.T) {
			if got := Covers(tt.outer, tt.inner); got != tt.want {
				t.Errorf("Covers(%q, %q) = %v, want %v", tt.outer, tt.inner, got, tt.want)
			}
		})
	}
}

// levelStrings returns every string of 1..depth levels drawn from levels, joined by '/'.
func levelStrings(levels []string, depth int) []string {
	var out, prev []string
	prev = []string{""}
	for d := 1; d <= depth; d++ {
		var cur []string
		for _, p := range prev {
			for _, l := range levels {
				if d == 1 {
					cur = append(cur, l)
				} else {
					cur = append(cur, p+"/"+l)
				}
			}
		}
		out = append(out, cur...)
		prev = cur
	}
	return out
}

// TestCoversExhaustive checks Covers against its definition over a small universe: the
// names have one level more than any filter and use a literal no filter names, so any
// name that tells two filters apart has a representative here.
func TestCoversExhaustive(t *testing.T) {
	var filters []string
	for _, f := range levelStrings([]string{"a", "b", "", "$s", "+", "#"}, 4) {
		if (Limits{}).CheckFilter(f) == nil {
			filters = append(filters, f)
		}
	}
	var names []string
	for _, n := range levelStrings([]string{"a", "b", "", "$s", "c"}, 5) {
		if (Limits{}).CheckName(n) == nil {
			names = append(names, n)
		}
	}
	words := (len(names) + 63) / 64
	sets := make([][]uint64, len(filters))
	for i, f := range filters {
		sets[i] = make([]uint64, words)
		for j, n := range names {
			if Match(f, n) {
				sets[i][j/64] |= 1 << (j % 64)
			}
		}
	}
	bad := 0
	for o, outer := range filters {
		for i, inner := range filters {
			want := true
			for w := range words {
				if sets[i][w]&^sets[o][w] != 0 {
					want = false
					break
				}
			}
			if got := Covers(outer, inner); got != want {
				t.Errorf("Covers(%q, %q) = %v, want %v", outer, inner, got, want)
				if bad++; bad > 20 {
					t.FailNow()
				}
			}
		}
	}
}
