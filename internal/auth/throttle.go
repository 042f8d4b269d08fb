package auth

import (
	"container/list"
	"sync"
	"time"
)

// ThrottleConfig configures a Throttle. Zero fields take the defaults.
type ThrottleConfig struct {
	// MaxFailures failed logins of one key within Window lock the key out. Default 10.
	MaxFailures int
	// Window is the period over which failures are counted. Default 1 minute.
	Window time.Duration
	// Backoff is the first lock-out; each further lock-out of the same key doubles it. Default
	// 1 minute.
	Backoff time.Duration
	// MaxBackoff caps the lock-out. Default 15 minutes.
	MaxBackoff time.Duration
	// ResetAfter: a key with no failure for this long is forgotten (its backoff starts again at
	// Backoff). Default 1 hour; never less than MaxBackoff.
	ResetAfter time.Duration
	// MaxKeys bounds the user names and, separately, the source addresses tracked; beyond it the
	// least recently used key is forgotten. Default 10,000 each.
	MaxKeys int
	// Now replaces time.Now, for tests.
	Now func() time.Time
}

// Default throttle values.
const (
	DefaultMaxFailures = 10
	DefaultWindow      = time.Minute
	DefaultBackoff     = time.Minute
	DefaultMaxBackoff  = 15 * time.Minute
	DefaultResetAfter  = time.Hour
	DefaultMaxKeys     = 10_000
)

func (c ThrottleConfig) withDefaults() ThrottleConfig {
	if c.MaxFailures <= 0 {
		c.MaxFailures = DefaultMaxFailures
	}
	if c.Window <= 0 {
		c.Window = DefaultWindow
	}
	if c.Backoff <= 0 {
		c.Backoff = DefaultBackoff
	}
	if c.MaxBackoff <= 0 {
		c.MaxBackoff = DefaultMaxBackoff
	}
	c.MaxBackoff = max(c.MaxBackoff, c.Backoff)
	if c.ResetAfter <= 0 {
		c.ResetAfter = DefaultResetAfter
	}
	c.ResetAfter = max(c.ResetAfter, c.MaxBackoff)
	if c.MaxKeys <= 0 {
		c.MaxKeys = DefaultMaxKeys
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// Throttle refuses logins after repeated failures, per user name and per source address, with
// exponential backoff: MaxFailures failures of a key within Window lock that key out for Backoff,
// the next lock-out of the same key for twice as long, and so on up to MaxBackoff. A locked-out key
// is refused whatever the password, the right one included, until the lock-out ends. Refused
// attempts are not failures (they do not extend the lock-out: the password is not even checked).
//
// Success resets the user name's record but not the source address's: otherwise an attacker
// holding one valid account could interleave a good login between guesses at other accounts and
// never be throttled per address. An address's failures still expire after Window.
//
// Memory is bounded: at most MaxKeys user names and MaxKeys addresses, least recently used
// forgotten first. Throttle is safe for concurrent use.
type Throttle struct {
	cfg ThrottleConfig

	mu    sync.Mutex
	users keyTable
	addrs keyTable
}

// NewThrottle returns a Throttle with cfg (zero fields take the defaults).
func NewThrottle(cfg ThrottleConfig) *Throttle {
	cfg = cfg.withDefaults()
	return &Throttle{cfg: cfg, users: newKeyTable(cfg.MaxKeys), addrs: newKeyTable(cfg.MaxKeys)}
}

// Config returns the effective configuration (defaults filled in).
func (t *Throttle) Config() ThrottleConfig { return t.cfg }

// Check reports whether a login of user from addr may be attempted now. When it may not, it
// returns how long until it may (the longer of the two lock-outs). An empty user or addr is not
// checked (a certificate login has no user name to throttle). Call it before verifying the
// password; then Failure or Success with the result.
func (t *Throttle) Check(user, addr string) (retryAfter time.Duration, ok bool) {
	now := t.cfg.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, k := range [...]struct {
		tab *keyTable
		key string
	}{{&t.users, user}, {&t.addrs, addr}} {
		if k.key == "" {
			continue
		}
		if s := k.tab.get(k.key); s != nil && now.Before(s.lockedUntil) {
			retryAfter = max(retryAfter, s.lockedUntil.Sub(now))
		}
	}
	return retryAfter, retryAfter == 0
}

// Failure records a failed login of user from addr.
func (t *Throttle) Failure(user, addr string) {
	now := t.cfg.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	if user != "" {
		t.fail(t.users.getOrAdd(user), now)
	}
	if addr != "" {
		t.fail(t.addrs.getOrAdd(addr), now)
	}
}

func (t *Throttle) fail(s *keyState, now time.Time) {
	if !s.lastFailure.IsZero() && now.Sub(s.lastFailure) >= t.cfg.ResetAfter {
		*s = keyState{key: s.key} // quiet for long enough: forget the backoff
	}
	if s.windowStart.IsZero() || now.Sub(s.windowStart) >= t.cfg.Window || now.Before(s.windowStart) {
		s.windowStart, s.failures = now, 0
	}
	s.lastFailure = now
	s.failures++
	if s.failures < t.cfg.MaxFailures {
		return
	}
	d := t.cfg.Backoff
	for i := 0; i < s.lockouts && d < t.cfg.MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, t.cfg.MaxBackoff)
	s.lockedUntil = now.Add(d)
	s.lockouts++
	s.failures, s.windowStart = 0, time.Time{}
}

// Success records a successful login of user from addr: user's record is forgotten (failures and
// backoff). addr's is deliberately kept; see Throttle.
func (t *Throttle) Success(user, addr string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if user != "" {
		t.users.remove(user)
	}
}

// Len returns the number of user names and addresses tracked.
func (t *Throttle) Len() (users, addrs int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.users.m), len(t.addrs.m)
}

type keyState struct {
	key         string
	failures    int       // in the current window
	windowStart time.Time // zero: no window open
	lastFailure time.Time
	lockouts    int // lock-outs so far: the next one lasts Backoff << lockouts
	lockedUntil time.Time
}

// keyTable is a map of keyStates with LRU eviction beyond max keys; O(1) per operation.
type keyTable struct {
	max int
	lru *list.List // of *keyState, most recent at the front
	m   map[string]*list.Element
}

func newKeyTable(max int) keyTable {
	return keyTable{max: max, lru: list.New(), m: make(map[string]*list.Element)}
}

func (k *keyTable) get(key string) *keyState {
	if el, ok := k.m[key]; ok {
		k.lru.MoveToFront(el)
		return el.Value.(*keyState)
	}
	return nil
}

func (k *keyTable) getOrAdd(key string) *keyState {
	if s := k.get(key); s != nil {
		return s
	}
	if k.lru.Len() >= k.max {
		el := k.lru.Back()
		delete(k.m, el.Value.(*keyState).key)
		k.lru.Remove(el)
	}
	s := &keyState{key: key}
	k.m[key] = k.lru.PushFront(s)
	return s
}

func (k *keyTable) remove(key string) {
	if el, ok := k.m[key]; ok {
		delete(k.m, key)
		k.lru.Remove(el)
	}
}
