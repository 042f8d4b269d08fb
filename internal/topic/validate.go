package topic

import (
	"errors"
	"strings"
	"unicode/utf8"
)

// Default limits, used where a Limits field is zero (or negative).
const (
	DefaultMaxLength = 65535 // [MQTT-4.7.3-3] [MQTT-1.5.4-1]: a UTF-8 Encoded String holds at most 65,535 bytes
	DefaultMaxLevels = 128
)

// Sentinel errors returned by CheckName, CheckFilter and ParseShared.
var (
	ErrEmpty           = errors.New("topic: empty topic")
	ErrTooLong         = errors.New("topic: topic too long")
	ErrTooDeep         = errors.New("topic: too many topic levels")
	ErrWildcardInName  = errors.New("topic: wildcard in topic name")
	ErrInvalidWildcard = errors.New("topic: misplaced wildcard in topic filter")
	ErrNullChar        = errors.New("topic: null character in topic")
	ErrInvalidUTF8     = errors.New("topic: invalid UTF-8 in topic")
	ErrBadShare        = errors.New("topic: malformed shared subscription")
)

// sharePrefix starts every shared subscription filter ([MQTT-4.8.2-1]).
const sharePrefix = "$share/"

// Limits bounds topic names and filters. Zero fields mean the package defaults:
// MaxLength 65535, MaxLevels 128.
//
// MaxLength counts bytes of the whole string (a shared filter's "$share/group/" prefix
// included). MaxLevels counts levels ('/' count + 1); for a shared filter it counts the
// levels of the inner filter, which is what the subscription trie stores.
type Limits struct {
	MaxLength int
	MaxLevels int
}

func (l Limits) maxLength() int {
	if l.MaxLength <= 0 {
		return DefaultMaxLength
	}
	return l.MaxLength
}

func (l Limits) maxLevels() int {
	if l.MaxLevels <= 0 {
		return DefaultMaxLevels
	}
	return l.MaxLevels
}

// CheckName checks a topic name (a PUBLISH topic or a will topic). It returns nil or one
// of ErrEmpty, ErrTooLong, ErrTooDeep, ErrNullChar, ErrInvalidUTF8, ErrWildcardInName.
func (l Limits) CheckName(name string) error {
	if name == "" {
		return ErrEmpty // [MQTT-4.7.3-1]
	}
	if len(name) > l.maxLength() {
		return ErrTooLong // [MQTT-4.7.3-3], checked before scanning
	}
	return scan(name, false, l.maxLevels())
}

// CheckFilter checks a SUBSCRIBE or UNSUBSCRIBE topic filter, including a shared
// subscription filter "$share/group/filter". It returns nil or one of ErrEmpty,
// ErrTooLong, ErrTooDeep, ErrNullChar, ErrInvalidUTF8, ErrInvalidWildcard, ErrBadShare.
func (l Limits) CheckFilter(filter string) error {
	if filter == "" {
		return ErrEmpty // [MQTT-4.7.3-1]
	}
	if len(filter) > l.maxLength() {
		return ErrTooLong // [MQTT-4.7.3-3], checked before scanning
	}
	if strings.HasPrefix(filter, sharePrefix) {
		// The share name is text too: UTF-8 and U+0000 rules first, so a bad byte in
		// it reports as such rather than as a bad share.
		end := strings.IndexByte(filter[len(sharePrefix):], '/')
		if end < 0 {
			end = len(filter)
		} else {
			end += len(sharePrefix)
		}
		if err := scanText(filter[len(sharePrefix):end]); err != nil {
			return err
		}
		_, inner, _, err := ParseShared(filter)
		if err != nil {
			return err
		}
		return scan(inner, true, l.maxLevels())
	}
	return scan(filter, true, l.maxLevels())
}

// ParseShared splits a shared subscription filter "$share/group/inner". ok is false
// (and err nil) when filter does not start with "$share/". When it does, ok is true and
// err is ErrBadShare if the share name is empty or contains '+' or '#', or if no
// non-empty filter follows it ([MQTT-4.8.2-1], [MQTT-4.8.2-2]). The inner filter itself
// is not checked here; CheckFilter does that.
func ParseShared(filter string) (group, inner string, ok bool, err error) {
	if !strings.HasPrefix(filter, sharePrefix) {
		return "", "", false, nil
	}
	rest := filter[len(sharePrefix):]
	i := strings.IndexByte(rest, '/')
	if i < 0 {
		return "", "", true, ErrBadShare // [MQTT-4.8.2-2]: the ShareName MUST be followed by "/"
	}
	group, inner = rest[:i], rest[i+1:]
	if group == "" {
		return "", "", true, ErrBadShare // [MQTT-4.8.2-1]: ShareName at least one character long
	}
	if strings.ContainsAny(group, "+#") {
		return "", "", true, ErrBadShare // [MQTT-4.8.2-2]: no "/", "+" or "#" in the ShareName
	}
	if inner == "" {
		return "", "", true, ErrBadShare // [MQTT-4.8.2-2]: "/" MUST be followed by a Topic Filter
	}
	return group, inner, true, nil
}

// scanText checks UTF-8 well-formedness and U+0000 only.
func scanText(s string) error {
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c == 0 {
				return ErrNullChar // [MQTT-4.7.3-2] [MQTT-1.5.4-2]
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			return ErrInvalidUTF8 // [MQTT-1.5.4-1]: ill-formed UTF-8, surrogates included
		}
		i += size
	}
	return nil
}

// scan checks a name (wild false) or a non-shared filter (wild true) in one pass. It
// stops at the first fault, so its cost is bounded by len(s).
func scan(s string, wild bool, maxLevels int) error {
	levels := 1
	levelStart := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= utf8.RuneSelf {
			r, size := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && size == 1 {
				return ErrInvalidUTF8 // [MQTT-1.5.4-1]: ill-formed UTF-8, surrogates included
			}
			i += size
			continue
		}
		switch c {
		case 0:
			return ErrNullChar // [MQTT-4.7.3-2] [MQTT-1.5.4-2]
		case '/':
			levels++
			if levels > maxLevels {
				return ErrTooDeep
			}
			levelStart = i + 1
		case '+':
			if !wild {
				return ErrWildcardInName // [MQTT-3.3.2-2]
			}
			if i != levelStart || (i+1 < len(s) && s[i+1] != '/') {
				return ErrInvalidWildcard // [MQTT-4.7.1-2]: "+" occupies an entire level
			}
		case '#':
			if !wild {
				return ErrWildcardInName // [MQTT-3.3.2-2]
			}
			if i != levelStart || i+1 != len(s) {
				return ErrInvalidWildcard // [MQTT-4.7.1-1]: "#" alone or after "/", and last
			}
		}
		i++
	}
	return nil
}

// cut splits off the first level of s. more reports whether a '/' followed it.
func cut(s string) (level, rest string, more bool) {
	if i := strings.IndexByte(s, '/'); i >= 0 {
		return s[:i], s[i+1:], true
	}
	return s, "", false
}

// isWild reports whether a filter level is a wildcard.
func isWild(level string) bool { return level == "+" || level == "#" }

// Match reports whether the (non-shared, valid) filter matches the topic name. A filter
// whose first level is a wildcard never matches a name starting with '$'
// ([MQTT-4.7.2-1]); "#" also matches its parent level ("a/#" matches "a"); "+" matches
// an empty level. Match does not allocate.
func Match(filter, name string) bool {
	if filter == "" {
		return false
	}
	if len(name) > 0 && name[0] == '$' && (filter[0] == '+' || filter[0] == '#') {
		return false // [MQTT-4.7.2-1]
	}
	for {
		fl, frest, fmore := cut(filter)
		if fl == "#" {
			return true
		}
		nl, nrest, nmore := cut(name)
		if fl != "+" && fl != nl {
			return false
		}
		switch {
		case !fmore && !nmore:
			return true
		case !nmore:
			return frest == "#" // "a/#" matches "a"
		case !fmore:
			return false
		}
		filter, name = frest, nrest
	}
}

// Covers reports whether every topic name matched by filter inner is also matched by
// filter outer, for valid non-shared filters (an ACL checks a subscription's filter, or
// the inner filter of a shared one, against an allowed pattern). For example
// Covers("a/#", "a/b/+") is true, Covers("a/+", "a/#") is false and Covers("#", "$SYS/x")
// is false ([MQTT-4.7.2-1]).
func Covers(outer, inner string) bool {
	if outer == "" || inner == "" {
		return false
	}
	first := true
	emptyRoot := false // inner's first level was consumed and was the empty level
	for {
		ol, orest, omore := cut(outer)
		il, irest, imore := cut(inner)
		// A literal first inner level starting with '$' is never matched by a first-level
		// wildcard [MQTT-4.7.2-1]; a wildcard first inner level never matches '$' names.
		dollar := first && !isWild(il) && strings.HasPrefix(il, "$")
		switch {
		case ol == "#":
			return !dollar
		case il == "#":
			if ol == "+" && (first || emptyRoot) {
				// "#" also matches its parent, but no name is the parent here: the empty
				// name is not a topic name ([MQTT-4.7.3-1]). So a first-level "#" is "+/#",
				// and "/#" is "/+/#".
				return omore && orest == "#"
			}
			return false // inner matches the parent and any depth; only "#" covers that
		case il == "+":
			if ol != "+" {
				return false
			}
		case ol == "+":
			if dollar {
				return false
			}
		case ol != il:
			return false
		}
		emptyRoot = first && il == ""
		first = false
		switch {
		case !imore && !omore:
			return true
		case !imore:
			return orest == "#"
		case !omore:
			return false
		}
		outer, inner = orest, irest
	}
}
