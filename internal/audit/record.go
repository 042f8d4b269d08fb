package audit

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Limits on what a record may hold.
const (
	// MaxValueLen is the longest field value, in bytes, after escaping. Longer values are cut
	// at a character boundary and end in "...".
	MaxValueLen = 256
	// MaxTypeLen is the longest event type.
	MaxTypeLen = 64
	// maxLineLen bounds one record line: 16 fields of MaxValueLen, escaped for JSON (at most
	// 6 bytes a byte), plus names and the fixed part. Verify treats longer lines as garbage.
	maxLineLen = 64 << 10
)

// Event types the broker records. Append accepts any well-formed type outside the reserved
// "audit." namespace; these are the ones the issue asks for, named once here.
const (
	TypeConnect      = "client.connect"    // a client authenticated and connected
	TypeDisconnect   = "client.disconnect" // a session ended
	TypeKick         = "client.kick"       // the broker disconnected a client (revocation, admin, takeover)
	TypeAuthFailure  = "auth.failure"      // a CONNECT or TLS handshake was refused
	TypeAuthThrottle = "auth.throttled"    // failures from a username or address are being slowed down
	TypeACLDeny      = "acl.deny"          // a publish, subscribe or delivery was refused by the ACL
	TypeEnrol        = "device.enrol"      // a device certificate was issued
	TypeRevoke       = "device.revoke"     // a device certificate was revoked
	TypeUserChange   = "user.change"       // a user was added, removed or had its password changed
	TypeAdmin        = "admin.action"      // any other administrative action
	TypeConfigChange = "config.change"     // configuration, CA, CRL or ACL reloaded or changed
)

// Types the package writes itself; callers cannot use the "audit." namespace.
const (
	TypeLogCreated   = "audit.log_created"   // first record of a new log
	TypeChainBroken  = "audit.chain_broken"  // first record of a log started by OpenAfterIncident
	TypeTailRepaired = "audit.tail_repaired" // Open removed a torn final line left by a crash
)

// allowedFields is the closed list of field names an Event may carry. Each is an identifier,
// an address, a topic (topics carry opaque device ids, never patient identifiers) or a short
// reason; none can hold a password, a token, a key or a message payload. Add a name only after
// checking that no caller could put a secret or patient data under it.
var allowedFields = map[string]string{
	"action":       "what an admin or the broker did, e.g. \"revoke\", \"user.add\"",
	"actor":        "who did it: an admin username, \"broker\", \"cli\"",
	"client_id":    "MQTT client identifier",
	"count":        "a number, e.g. queued messages purged",
	"device":       "opaque device id (certificate SAN)",
	"listener":     "listener name or address",
	"protocol":     "\"mqtt3.1.1\", \"mqtt5\", \"ws\"",
	"reason":       "short machine-readable reason, e.g. \"bad_password\", \"not_authorized\"",
	"remote":       "remote address (ip:port)",
	"role":         "ACL role",
	"serial":       "certificate serial number",
	"setting":      "name of a configuration setting that changed (never its value)",
	"topic":        "topic name of a denied publish or delivery",
	"topic_filter": "topic filter of a denied subscription",
	"username":     "username given by a client or admin",
}

// AllowedFields returns the field names an Event may carry, each with what it holds. The
// package's own records (type "audit.*") also use log_id, prev_log_id, archive and problem.
func AllowedFields() map[string]string {
	m := make(map[string]string, len(allowedFields))
	for k, v := range allowedFields {
		m[k] = v
	}
	return m
}

// Event is one thing to record. The log adds the sequence number and the time.
type Event struct {
	Type   string            // e.g. TypeAuthFailure; lower case words joined by dots
	Fields map[string]string // names from AllowedFields only
}

// Errors Append returns for an event the package refuses to record. They signal a bug in the
// caller, never bad input from a client: values are escaped and capped, not refused.
var (
	ErrFieldNotAllowed = errors.New("audit: field name not allowed")
	ErrBadType         = errors.New("audit: bad event type")
)

type field struct{ name, value string }

// checkType reports whether t is words of [a-z0-9_] joined by single dots, at least two words.
func checkType(t string) error {
	if t == "" || len(t) > MaxTypeLen {
		return fmt.Errorf("%w: %q: length must be 1 to %d", ErrBadType, t, MaxTypeLen)
	}
	words := strings.Split(t, ".")
	if len(words) < 2 {
		return fmt.Errorf("%w: %q: want category.event", ErrBadType, t)
	}
	for _, w := range words {
		if w == "" {
			return fmt.Errorf("%w: %q: empty word", ErrBadType, t)
		}
		for _, c := range []byte(w) {
			if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '_') {
				return fmt.Errorf("%w: %q: want lower-case words of a-z, 0-9 and _ joined by dots", ErrBadType, t)
			}
		}
	}
	return nil
}

// eventFields validates an event from a caller and returns its fields sanitized and sorted.
func eventFields(e Event) ([]field, error) {
	if err := checkType(e.Type); err != nil {
		return nil, err
	}
	if strings.HasPrefix(e.Type, "audit.") {
		return nil, fmt.Errorf("%w: %q: the audit. namespace is reserved", ErrBadType, e.Type)
	}
	fs := make([]field, 0, len(e.Fields))
	for k, v := range e.Fields {
		if _, ok := allowedFields[k]; !ok {
			return nil, fmt.Errorf("%w: %q (allowed: %s)", ErrFieldNotAllowed, sanitize(k), strings.Join(sortedKeys(allowedFields), ", "))
		}
		fs = append(fs, field{k, sanitize(v)})
	}
	sortFields(fs)
	return fs, nil
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

func sortFields(fs []field) {
	slices.SortFunc(fs, func(a, b field) int { return strings.Compare(a.name, b.name) })
}

// sanitize makes a value safe to record whatever a client sent: invalid UTF-8 becomes U+FFFD;
// a backslash becomes `\\`, a control character (C0, DEL, C1) `\xNN`, and a character that
// reorders or hides text (bidi controls, line and paragraph separators, zero-width marks)
// `\u{NNNN}`, so a value can neither break a line nor fool the eye of someone reading the log;
// the result is cut to MaxValueLen bytes at an escape boundary, ending in "..." when cut. It
// never fails: refusing a value would let a client keep its own attempt out of the log.
func sanitize(v string) string {
	const keep = MaxValueLen - len("...")
	if len(v) > 4*MaxValueLen {
		v = v[:4*MaxValueLen] // enough to fill the cap whatever the escaping
	}
	var b strings.Builder
	cut := -1 // length of b at the last piece boundary within keep, once b is past it
	for i := 0; i < len(v); {
		r, size := utf8.DecodeRuneInString(v[i:])
		var piece string
		switch {
		case r == utf8.RuneError && size == 1:
			piece = "\uFFFD"
		case r == '\\':
			piece = `\\`
		case r < 0x20 || r == 0x7f || 0x80 <= r && r <= 0x9f:
			piece = fmt.Sprintf(`\x%02x`, r)
		case hidden(r):
			piece = fmt.Sprintf(`\u{%04x}`, r)
		default:
			piece = v[i : i+size]
		}
		i += size
		if cut < 0 && b.Len()+len(piece) > keep {
			cut = b.Len()
		}
		b.WriteString(piece)
		if b.Len() > MaxValueLen {
			break
		}
	}
	s := b.String()
	if len(s) <= MaxValueLen {
		return s
	}
	return s[:cut] + "..."
}

// hidden reports format characters that change how surrounding text displays.
func hidden(r rune) bool {
	switch {
	case r == 0x061c, r == 0x200b, r == 0x200c, r == 0x200d, r == 0x200e, r == 0x200f, r == 0xfeff:
		return true
	case 0x2028 <= r && r <= 0x202e, 0x2060 <= r && r <= 0x2069:
		return true
	}
	return false
}

// Domain separation for the three things the key MACs.
const (
	domRecord  = "vitalmq-audit-v1\x00record\x00"
	domHead    = "vitalmq-audit-v1\x00head\x00"
	domGenesis = "vitalmq-audit-v1\x00genesis\x00"
)

const (
	macHexLen = 2 * sha256.Size
	macKey    = `,"mac":"`
	// sealSuffix is the length of `,"mac":"<hex>"}` at the end of a sealed line.
	sealSuffix = len(macKey) + macHexLen + len(`"}`)
)

func macHex(key []byte, domain string, body []byte) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(domain))
	m.Write(body)
	return hex.EncodeToString(m.Sum(nil))
}

// genesis is the prev of record 1 of the log with this id.
func genesis(key []byte, logID string) string {
	return macHex(key, domGenesis, []byte(logID))
}

// seal appends body (a JSON object) with its MAC as a last member, and a newline, to dst.
func seal(dst []byte, key []byte, domain string, body []byte) ([]byte, string) {
	mac := macHex(key, domain, body)
	dst = append(dst, body[:len(body)-1]...)
	dst = append(dst, macKey...)
	dst = append(dst, mac...)
	dst = append(dst, "\"}\n"...)
	return dst, mac
}

// unseal splits a sealed line (without its newline) into the body that was MACed and the MAC,
// and reports whether the MAC is right.
func unseal(key []byte, domain string, line []byte) (body []byte, mac string, ok bool, err error) {
	n := len(line)
	if n < sealSuffix+2 || line[0] != '{' || string(line[n-2:]) != `"}` || string(line[n-sealSuffix:n-sealSuffix+len(macKey)]) != macKey {
		return nil, "", false, errors.New("not a sealed record (no trailing mac)")
	}
	mac = string(line[n-2-macHexLen : n-2])
	for _, c := range []byte(mac) {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return nil, "", false, errors.New("mac is not lower-case hex")
		}
	}
	body = make([]byte, 0, n-sealSuffix+1)
	body = append(body, line[:n-sealSuffix]...)
	body = append(body, '}')
	want := macHex(key, domain, body)
	return body, mac, hmac.Equal([]byte(want), []byte(mac)), nil
}

type record struct {
	seq    uint64
	time   string
	typ    string
	fields []field // sorted by name
	prev   string
}

func (r *record) get(name string) string {
	for _, f := range r.fields {
		if f.name == name {
			return f.value
		}
	}
	return ""
}

// appendJSONString writes s as a JSON string. Values are sanitized before they get here, so
// only quote and backslash normally need escaping; the rest keeps any string well-formed.
func appendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			dst = append(dst, '\\', c)
		case c < 0x20:
			dst = append(dst, fmt.Sprintf(`\u%04x`, c)...)
		default:
			dst = append(dst, c)
		}
	}
	return append(dst, '"')
}

// body is the canonical encoding of r without its MAC: fixed members in a fixed order, the
// fields sorted by name between type and prev, no spaces.
func (r *record) body() []byte {
	b := make([]byte, 0, 256)
	b = append(b, `{"seq":`...)
	b = strconv.AppendUint(b, r.seq, 10)
	b = append(b, `,"time":`...)
	b = appendJSONString(b, r.time)
	b = append(b, `,"type":`...)
	b = appendJSONString(b, r.typ)
	for _, f := range r.fields {
		b = append(b, ',')
		b = appendJSONString(b, f.name)
		b = append(b, ':')
		b = appendJSONString(b, f.value)
	}
	b = append(b, `,"prev":`...)
	b = appendJSONString(b, r.prev)
	return append(b, '}')
}

var fixedMembers = map[string]bool{"seq": true, "time": true, "type": true, "prev": true, "mac": true}

// parseBody decodes a record body, accepting only the canonical form body writes: the fixed
// members in order, fields sorted and unique between type and prev, strings escaped exactly as
// appendJSONString escapes them. (A strict parser is also several times faster than
// encoding/json, and Open reads the whole log.)
func parseBody(body []byte) (*record, error) {
	p := bodyParser{b: body}
	r := &record{}
	p.lit(`{"seq":`)
	start := p.i
	for p.i < len(p.b) && '0' <= p.b[p.i] && p.b[p.i] <= '9' {
		p.i++
	}
	digits := string(p.b[start:p.i])
	seq, err := strconv.ParseUint(digits, 10, 64)
	if p.err == nil && (err != nil || seq == 0 || digits[0] == '0') {
		return nil, fmt.Errorf("bad seq %q", digits)
	}
	r.seq = seq
	p.lit(`,"time":`)
	r.time = p.str()
	p.lit(`,"type":`)
	r.typ = p.str()
	for p.err == nil {
		p.lit(",")
		name := p.str()
		p.lit(":")
		value := p.str()
		if name == "prev" {
			r.prev = value
			break
		}
		if p.err == nil && (fixedMembers[name] || len(r.fields) > 0 && name <= r.fields[len(r.fields)-1].name) {
			return r, fmt.Errorf("field %q duplicated or out of order", sanitize(name))
		}
		r.fields = append(r.fields, field{name, value})
	}
	p.lit("}")
	if p.err == nil && p.i != len(p.b) {
		p.err = errors.New("bytes after the record")
	}
	if p.err != nil {
		return r, fmt.Errorf("not in canonical form: %v at byte %d", p.err, p.i)
	}
	if !bytes.Equal(r.body(), body) { // cannot happen; kept as a guard on the parser
		return r, errors.New("not in canonical form")
	}
	return r, nil
}

type bodyParser struct {
	b   []byte
	i   int
	err error
}

func (p *bodyParser) lit(s string) {
	if p.err == nil && !bytes.HasPrefix(p.b[p.i:], []byte(s)) {
		p.err = fmt.Errorf("want %q", s)
	}
	if p.err == nil {
		p.i += len(s)
	}
}

func (p *bodyParser) str() string {
	p.lit(`"`)
	if p.err != nil {
		return ""
	}
	var out []byte
	for start := p.i; p.i < len(p.b); p.i++ {
		c := p.b[p.i]
		switch {
		case c == '"':
			if out == nil {
				out = p.b[start:p.i]
			}
			p.i++
			if !utf8.Valid(out) {
				p.err = errors.New("invalid UTF-8")
				return ""
			}
			return string(out)
		case c < 0x20:
			p.err = errors.New("unescaped control character")
			return ""
		case c == '\\':
			if out == nil {
				out = append([]byte{}, p.b[start:p.i]...)
			}
			rest := p.b[p.i+1:]
			switch {
			case len(rest) > 0 && (rest[0] == '"' || rest[0] == '\\'):
				out = append(out, rest[0])
				p.i++
			case len(rest) >= 5 && rest[0] == 'u' && rest[1] == '0' && rest[2] == '0' && (rest[3] == '0' || rest[3] == '1') && lowerHex(rest[4]):
				v, _ := strconv.ParseUint(string(rest[3:5]), 16, 8)
				out = append(out, byte(v))
				p.i += 5
			default:
				p.err = errors.New("non-canonical escape")
				return ""
			}
		default:
			if out != nil {
				out = append(out, c)
			}
		}
	}
	p.err = errors.New("unterminated string")
	return ""
}

func lowerHex(c byte) bool { return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' }
