package broker_test

// The CASES.md §2.0 fixture: users, ClientID binding and a pattern ACL with a runtime
// "admin API" (Grant/Revoke), plugged into the broker as its Authenticator and
// Authorizer, plus the raw-socket helpers the attack tests share. Every name here is
// prefixed fx (fixture) or atk (attack helpers) so it cannot clash with other test files.

import (
	"bytes"
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"vitalmq/internal/broker"
	"vitalmq/internal/packet"
	"vitalmq/internal/topic"
)

// Standard packets of CASES §2.0 (hex, exact).
const (
	fxC4p1   = "10 1A 00 04 4D 51 54 54 04 C2 00 3C 00 02 70 31 00 05 70 31 64 65 76 00 03 70 77 31"
	fxC4p2   = "10 1A 00 04 4D 51 54 54 04 C2 00 3C 00 02 70 32 00 05 70 32 64 65 76 00 03 70 77 32"
	fxC4clin = "10 18 00 04 4D 51 54 54 04 C2 00 3C 00 01 63 00 04 63 6C 69 6E 00 03 70 77 63"
	fxC4t1   = "10 19 00 04 4D 51 54 54 04 C2 00 3C 00 02 74 31 00 04 74 64 65 76 00 03 70 77 74"
	fxC4t2   = "10 19 00 04 4D 51 54 54 04 C2 00 3C 00 02 74 32 00 04 74 64 65 76 00 03 70 77 74"
	fxC5p1   = "10 1B 00 04 4D 51 54 54 05 C2 00 3C 00 00 02 70 31 00 05 70 31 64 65 76 00 03 70 77 31"
	fxC5p2   = "10 1B 00 04 4D 51 54 54 05 C2 00 3C 00 00 02 70 32 00 05 70 32 64 65 76 00 03 70 77 32"
	fxC5clin = "10 19 00 04 4D 51 54 54 05 C2 00 3C 00 00 01 63 00 04 63 6C 69 6E 00 03 70 77 63"
	fxSUB4   = "82 0A 00 01 00 05 72 70 6D 2F 23 01"    // SUB4(clin, rpm/#)
	fxSUB5   = "82 0B 00 01 00 00 05 72 70 6D 2F 23 01" // SUB5(clin, rpm/#)
	fxOK4    = "20 02 00 00"
)

// fxACE is one ACL entry: a topic pattern (may contain %c for the client id and %u for
// the user name) and the rights it grants, or denies when deny is set.
type fxACE struct {
	pattern     string
	read, write bool
	deny        bool
}

type fxUser struct {
	password string
	idPrefix string // client ids must start with it; "" with anyID: any id
	anyID    bool
}

// fxAuth is the §2.0 test Authenticator and Authorizer.
type fxAuth struct {
	mu    sync.RWMutex
	users map[string]fxUser
	acl   map[string][]fxACE // by user name; "*" applies to every user

	// NoPrefixRule disables the ClientID-prefix binding (T25 exercises the pattern ACL alone).
	NoPrefixRule bool
	// LooseSubscribe lets every authenticated client subscribe to any filter, so that only
	// the per-delivery CanReceive check stands between a wildcard subscription and data
	// the client may not read (T48, T49, T65 "or a grant").
	LooseSubscribe bool

	authCalls atomic.Int64
}

var _ broker.Authenticator = (*fxAuth)(nil)
var _ broker.Authorizer = (*fxAuth)(nil)

func newFxAuth() *fxAuth {
	return &fxAuth{
		users: map[string]fxUser{
			"p1dev": {password: "pw1", idPrefix: "p1"},
			"p2dev": {password: "pw2", idPrefix: "p2"},
			"clin":  {password: "pwc", idPrefix: "c"},
			"tdev":  {password: "pwt", idPrefix: "t"},
			"admin": {password: "pwa", anyID: true},
		},
		acl: map[string][]fxACE{
			"p1dev": {{pattern: "rpm/p1/#", read: true, write: true}},
			"p2dev": {{pattern: "rpm/p2/#", read: true, write: true}},
			"clin":  {{pattern: "rpm/#", read: true}},
			"tdev":  {{pattern: "test", read: true, write: true}},
			"admin": {{pattern: "#", read: true, write: true}, {pattern: "$SYS/#", read: true, write: true},
				{pattern: "$CONTROL/#", read: true, write: true}, {pattern: "$foo/#", read: true, write: true}},
		},
	}
}

// Authenticate implements broker.Authenticator.
func (a *fxAuth) Authenticate(_ context.Context, req *broker.ConnectRequest) (*broker.Client, error) {
	a.authCalls.Add(1)
	if req.AuthMethod != "" {
		return nil, packet.BadAuthenticationMethod
	}
	a.mu.RLock()
	u, ok := a.users[req.Username]
	noPrefix := a.NoPrefixRule
	a.mu.RUnlock()
	if !req.HasUsername || !ok {
		subtle.ConstantTimeCompare(req.Password, []byte("xxxxxxxx"))
		return nil, packet.BadUserNameOrPassword
	}
	if subtle.ConstantTimeCompare(req.Password, []byte(u.password)) != 1 {
		return nil, packet.BadUserNameOrPassword
	}
	if !u.anyID && !noPrefix && !strings.HasPrefix(req.ClientID, u.idPrefix) {
		return nil, packet.ClientIdentifierNotValid // T26, T27: ClientID bound to the identity
	}
	return &broker.Client{ClientID: req.ClientID, Username: req.Username, Listener: req.Listener, Remote: req.Remote,
		Attrs: map[string]string{"role": req.Username}}, nil
}

// fxAuthMethod is the fixture's enhanced-authentication method: a fake challenge-response
// where the client answers a challenge with "pw:<password>" (T81, T83).
const fxAuthMethod = "SCRAM-SHA-256"

var _ broker.EnhancedAuthenticator = (*fxAuth)(nil)

// StartAuth implements broker.EnhancedAuthenticator.
func (a *fxAuth) StartAuth(_ context.Context, req *broker.ConnectRequest) (broker.AuthExchange, error) {
	a.authCalls.Add(1)
	if req.AuthMethod != fxAuthMethod {
		return nil, packet.BadAuthenticationMethod
	}
	return &fxExchange{a: a, req: *req}, nil
}

type fxExchange struct {
	a      *fxAuth
	req    broker.ConnectRequest
	rounds int
}

// Step accepts "pw:<password>" for the CONNECT's user name and answers anything else with a
// new challenge, so a client that never answers correctly keeps the exchange going.
func (x *fxExchange) Step(ctx context.Context, data []byte) ([]byte, *broker.Client, error) {
	x.rounds++
	if pw, ok := bytes.CutPrefix(data, []byte("pw:")); ok {
		req := x.req
		req.Password, req.AuthMethod = pw, ""
		cl, err := x.a.Authenticate(ctx, &req)
		return []byte("ok"), cl, err
	}
	return []byte(fmt.Sprintf("challenge-%d", x.rounds)), nil, nil
}

// Grant adds an allow entry for user (the admin API).
func (a *fxAuth) Grant(user, pattern string, read, write bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.acl[user] = append(a.acl[user], fxACE{pattern: pattern, read: read, write: write})
}

// Revoke withdraws read and/or write on pattern from user at runtime (the admin API): exact
// allow entries lose those rights, and a deny entry overrides any broader allow entry.
func (a *fxAuth) Revoke(user, pattern string, read, write bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	es := a.acl[user]
	for i := range es {
		if !es[i].deny && es[i].pattern == pattern {
			es[i].read = es[i].read && !read
			es[i].write = es[i].write && !write
		}
	}
	a.acl[user] = append(es, fxACE{pattern: pattern, read: read, write: write, deny: true})
}

// entries returns c's ACL entries with %c / %u expanded. An entry whose expansion would
// be unsafe (identity empty or containing '+', '#' or '/', CVE-2017-7650) is dropped.
func (a *fxAuth) entries(c *broker.Client) []fxACE {
	if c == nil || c.Username == "" {
		return nil
	}
	a.mu.RLock()
	defer a.mu.RUnlock()
	var out []fxACE
	for _, e := range append(append([]fxACE(nil), a.acl[c.Username]...), a.acl["*"]...) {
		if strings.Contains(e.pattern, "%") {
			if !fxSafeIdent(c.ClientID) || !fxSafeIdent(c.Username) {
				if e.deny {
					e.pattern = "#" // a deny that cannot be expanded denies everything
				} else {
					continue
				}
			} else {
				e.pattern = strings.NewReplacer("%c", c.ClientID, "%u", c.Username).Replace(e.pattern)
			}
		}
		out = append(out, e)
	}
	return out
}

func fxSafeIdent(s string) bool { return s != "" && !strings.ContainsAny(s, "+#/\x00") }

func (a *fxAuth) check(c *broker.Client, name string, write bool) bool {
	allowed := false
	for _, e := range a.entries(c) {
		right := e.read
		if write {
			right = e.write
		}
		if !right || !topic.Match(e.pattern, name) {
			continue
		}
		if e.deny {
			return false
		}
		allowed = true
	}
	return allowed
}

// CanPublish implements broker.Authorizer.
func (a *fxAuth) CanPublish(c *broker.Client, name string) bool { return a.check(c, name, true) }

// CanReceive implements broker.Authorizer.
func (a *fxAuth) CanReceive(c *broker.Client, name string) bool { return a.check(c, name, false) }

// CanSubscribe implements broker.Authorizer: the filter must be covered by an allowed
// read pattern and must not overlap a denied one.
func (a *fxAuth) CanSubscribe(c *broker.Client, filter string) bool {
	es := a.entries(c)
	if c == nil || c.Username == "" {
		return false
	}
	a.mu.RLock()
	loose := a.LooseSubscribe
	a.mu.RUnlock()
	allowed := loose
	for _, e := range es {
		if !e.read {
			continue
		}
		if e.deny {
			if fxOverlap(e.pattern, filter) {
				return false
			}
			continue
		}
		if topic.Covers(e.pattern, filter) {
			allowed = true
		}
	}
	return allowed
}

// fxOverlap reports whether some topic name could match both filters.
func fxOverlap(f1, f2 string) bool {
	l1, l2 := strings.Split(f1, "/"), strings.Split(f2, "/")
	for i := 0; ; i++ {
		if i == len(l1) || i == len(l2) {
			return len(l1) == len(l2) || i < len(l1) && l1[i] == "#" || i < len(l2) && l2[i] == "#"
		}
		a, b := l1[i], l2[i]
		if a == "#" || b == "#" {
			return true
		}
		if a != "+" && b != "+" && a != b {
			return false
		}
	}
}

// fxStart starts a broker with the §2.0 fixture and the CASES limits; fields set in cfg win.
func fxStart(t testing.TB, cfg broker.Config) (*testServer, *fxAuth) {
	t.Helper()
	a := newFxAuth()
	cfg.Authenticator, cfg.Authorizer = a, a
	set := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	set(&cfg.PreAuthMaxPacketSize, 64<<10)
	set(&cfg.MaxPacketSize, 256<<10)
	set(&cfg.MaxTopicLevels, 32)
	set(&cfg.MaxTopicLength, 1024)
	set(&cfg.MaxClientIDLength, 128)
	set(&cfg.MaxQueuedMessages, 1000)
	set(&cfg.MaxQueuedBytes, 1<<20)
	set(&cfg.MaxSubscriptions, 100)
	if cfg.TopicAliasMaximum == 0 {
		cfg.TopicAliasMaximum = 10
	}
	if cfg.ReceiveMaximum == 0 {
		cfg.ReceiveMaximum = 32
	}
	if cfg.MaxInflight == 0 {
		cfg.MaxInflight = 32
	}
	if cfg.MaxKeepAlive == 0 {
		cfg.MaxKeepAlive = 300
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = 10 * time.Second
	}
	return startServer(t, cfg), a
}

// ---- raw-socket helpers ----

// atkHex builds a packet from its first byte and body (hex), computing the Remaining Length.
func atkHex(t testing.TB, first byte, body string) string {
	t.Helper()
	return fmt.Sprintf("% X", atkPacket(first, unhex(t, body)))
}

// atkPacket frames body with first byte and a minimal Remaining Length.
func atkPacket(first byte, body []byte) []byte {
	b := []byte{first}
	n := len(body)
	for {
		d := byte(n % 128)
		n /= 128
		if n > 0 {
			d |= 0x80
		}
		b = append(b, d)
		if n == 0 {
			break
		}
	}
	return append(b, body...)
}

// atkStr encodes an MQTT UTF-8 string (2-byte length + bytes) as hex.
func atkStr(s string) string { return fmt.Sprintf("%04X % X", len(s), s) }

// fxConnect builds a CONNECT for user/password/client id (version 4 or 5, clean or durable).
func fxConnect(version byte, clean bool, clientID, user, pass string) []byte {
	return packet.AppendConnect(nil, &packet.Connect{Version: version, CleanStart: clean, KeepAlive: 60, ClientID: clientID,
		HasUser: true, Username: user, HasPass: true, Password: []byte(pass)})
}

// fxLogin dials and sends the CONNECT bytes in hex, expecting a successful CONNACK; it
// returns the connection and the CONNACK.
func fxLogin(t testing.TB, s *testServer, connectHex string) (*rawConn, []byte) {
	t.Helper()
	c := dialRaw(t, s.Addr)
	c.send(connectHex)
	ack := c.expectType(packet.CONNACK)
	if len(ack) < 4 || ack[3] != 0 {
		t.Fatalf("CONNACK % x, want success", ack)
	}
	return c, ack
}

// fxLoginB is fxLogin with CONNECT bytes.
func fxLoginB(t testing.TB, s *testServer, connect []byte) (*rawConn, []byte) {
	t.Helper()
	return fxLogin(t, s, fmt.Sprintf("% X", connect))
}

// fxClin connects clin (3.1.1, or 5.0 when v5) and subscribes it to rpm/#: the "no
// delivery" observer of CASES §2.0.
func fxClin(t testing.TB, s *testServer, v5 bool) *rawConn {
	t.Helper()
	if v5 {
		c, _ := fxLogin(t, s, fxC5clin)
		c.send(fxSUB5)
		c.expect("90 04 00 01 00 01")
		return c
	}
	c, _ := fxLogin(t, s, fxC4clin)
	c.send(fxSUB4)
	c.expect("90 03 00 01 01")
	return c
}

// fxAdmin connects the admin user with the given client id (3.1.1) and subscribes the filters at QoS 1.
func fxAdmin(t testing.TB, s *testServer, id string, filters ...string) *rawConn {
	t.Helper()
	c, _ := fxLoginB(t, s, fxConnect(4, true, id, "admin", "pwa"))
	for i, f := range filters {
		c.write(packet.AppendSubscribe(nil, &packet.Subscribe{PacketID: uint16(i + 1),
			Subs: []packet.Subscription{{Filter: f, QoS: 1}}}, 4))
		c.expect(fmt.Sprintf("90 03 %04X 01", i+1))
	}
	return c
}

// fxAlive is the "broker alive" post-check of CASES §2.0 with the fixture (anonymous
// clients are refused, so checkAlive's anonymous CONNECT cannot be used): a fresh
// authenticated client gets CONNACK 0 and PINGRESP, each within 1 s.
func fxAlive(t testing.TB, s *testServer) {
	t.Helper()
	c := dialRaw(t, s.Addr)
	c.write(fxConnect(4, true, "alive-check", "admin", "pwa"))
	got, err := c.readPacket(time.Second)
	if err != nil || !bytes.Equal(got, []byte{0x20, 2, 0, 0}) {
		t.Fatalf("alive check: CONNACK % x, %v", got, err)
	}
	c.send("C0 00")
	got, err = c.readPacket(time.Second)
	if err != nil || !bytes.Equal(got, []byte{0xD0, 0}) {
		t.Fatalf("alive check: PINGRESP % x, %v", got, err)
	}
	c.nc.Close()
}

// fxSilence is the "no delivery" post-check window.
const fxSilence = 300 * time.Millisecond

// atkMatcher accepts one packet received before a close.
type atkMatcher func(p []byte) bool

// atkExact accepts exactly the packet h (hex).
func atkExact(t testing.TB, h string) atkMatcher {
	want := unhex(t, h)
	return func(p []byte) bool { return bytes.Equal(p, want) }
}

// atkDisc accepts a 5.0 DISCONNECT with one of the reason codes, with any properties
// (a Reason String is allowed unless the client asked for none).
func atkDisc(reasons ...byte) atkMatcher {
	return func(p []byte) bool { return atkIsReason(p, 0xE0, reasons) }
}

// atkConnack accepts a CONNACK (flags 0) whose return/reason code is one of reasons.
func atkConnack(reasons ...byte) atkMatcher {
	return func(p []byte) bool {
		if len(p) < 4 || p[0] != 0x20 {
			return false
		}
		_, off := atkVBI(p[1:])
		i := 1 + off + 1 // skip acknowledge flags
		return i < len(p) && bytes.IndexByte(reasons, p[i]) >= 0
	}
}

func atkIsReason(p []byte, first byte, reasons []byte) bool {
	if len(p) < 2 || p[0] != first {
		return false
	}
	n, off := atkVBI(p[1:])
	if n == 0 {
		return bytes.IndexByte(reasons, 0) >= 0
	}
	return bytes.IndexByte(reasons, p[1+off]) >= 0
}

// atkVBI decodes a Variable Byte Integer, returning value and its length.
func atkVBI(b []byte) (int, int) {
	n, mult := 0, 1
	for i := 0; i < len(b) && i < 4; i++ {
		n += int(b[i]&0x7f) * mult
		if b[i]&0x80 == 0 {
			return n, i + 1
		}
		mult <<= 7
	}
	return n, len(b)
}

// atkSplit splits a byte stream into packets (the last may be partial).
func atkSplit(b []byte) [][]byte {
	var out [][]byte
	for len(b) >= 2 {
		n, off := atkVBI(b[1:])
		end := 1 + off + n
		if end > len(b) {
			end = len(b)
		}
		out = append(out, b[:end])
		b = b[end:]
	}
	if len(b) > 0 {
		out = append(out, b)
	}
	return out
}

// atkClosed reads until the broker closes the connection within timeout. Everything
// received before the close must be whole packets each accepted by a matcher; with no
// matchers, nothing may be received. A reset counts as a close.
func atkClosed(t testing.TB, c *rawConn, timeout time.Duration, ok ...atkMatcher) {
	t.Helper()
	got, open := atkDrain(c, timeout)
	if open {
		t.Fatalf("connection still open after %v (received % x)", timeout, got)
	}
	for _, p := range atkSplit(got) {
		accepted := false
		for _, m := range ok {
			if m(p) {
				accepted = true
				break
			}
		}
		if !accepted {
			t.Fatalf("before close got % x (packet % x), want nothing or an allowed packet", got, p)
		}
	}
}

// atkDrain reads until EOF/reset or timeout; open reports a timeout (connection still open).
func atkDrain(c *rawConn, timeout time.Duration) (got []byte, open bool) {
	c.nc.SetReadDeadline(time.Now().Add(timeout))
	buf := make([]byte, 32<<10)
	for {
		n, err := c.nc.Read(buf)
		got = append(got, buf[:n]...)
		if err != nil {
			var ne net.Error
			return got, errors.As(err, &ne) && ne.Timeout()
		}
	}
}

// atkRead reads one packet within d, failing the test on error.
func atkRead(t testing.TB, c *rawConn, d time.Duration) []byte {
	t.Helper()
	p, err := c.readPacket(d)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return p
}

// atkAbort closes the socket with a TCP RST (no DISCONNECT).
func atkAbort(c *rawConn) {
	if tc, ok := c.nc.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	c.nc.Close()
}

// atkWriteAll writes b ignoring errors (the broker may close mid-write); it returns when
// the write ends.
func atkWriteAll(c *rawConn, b []byte) error {
	c.nc.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_, err := c.nc.Write(b)
	return err
}

// atkHasProp reports whether a CONNACK (5.0) carries the property bytes want (id + value).
func atkHasProp(ack []byte, want string) bool {
	return len(ack) > 5 && bytes.Contains(ack[5:], atkMustHex(want))
}

func atkMustHex(h string) []byte {
	var b []byte
	for _, f := range strings.Fields(h) {
		var x byte
		fmt.Sscanf(f, "%02X", &x)
		b = append(b, x)
	}
	return b
}

// atkPub is a decoded PUBLISH (3.1.1 or 5.0 when v5).
type atkPub struct {
	qos   byte
	dup   bool
	topic string
	id    uint16
	props []byte
	body  []byte
}

// atkParsePub decodes a PUBLISH packet.
func atkParsePub(t testing.TB, p []byte, v5 bool) atkPub {
	t.Helper()
	if len(p) < 2 || p[0]>>4 != 3 {
		t.Fatalf("not a PUBLISH: % x", p)
	}
	_, off := atkVBI(p[1:])
	b := p[1+off:]
	r := atkPub{qos: p[0] >> 1 & 3, dup: p[0]&8 != 0}
	n := int(b[0])<<8 | int(b[1])
	r.topic, b = string(b[2:2+n]), b[2+n:]
	if r.qos > 0 {
		r.id, b = uint16(b[0])<<8|uint16(b[1]), b[2:]
	}
	if v5 {
		pl, o := atkVBI(b)
		r.props, b = b[o:o+pl], b[o+pl:]
	}
	r.body = b
	return r
}

// atkAck acknowledges a 3.1.1 QoS 1 PUBLISH (nothing for QoS 0).
func atkAck(t testing.TB, c *rawConn, p []byte) {
	t.Helper()
	if q := atkParsePub(t, p, false); q.qos == 1 {
		c.write([]byte{0x40, 2, byte(q.id >> 8), byte(q.id)})
	}
}
