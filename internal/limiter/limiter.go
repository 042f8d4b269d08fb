package limiter

import (
	"container/list"
	"fmt"
	"math"
	"net/netip"
	"sync"
	"time"
)

// Option configures a Limiter or a Concurrency.
type Option func(*options)

type options struct {
	now func() time.Time
}

// WithClock replaces time.Now, for tests.
func WithClock(now func() time.Time) Option {
	return func(o *options) {
		if now != nil {
			o.now = now
		}
	}
}

func buildOptions(opts []Option) options {
	o := options{now: time.Now}
	for _, f := range opts {
		f(&o)
	}
	return o
}

// Bucket is one token bucket: it holds at most Burst tokens, refills at Rate tokens per second,
// and starts full. It is not safe for concurrent use; [Limiter] is the locked, keyed form.
type Bucket struct {
	rate   float64
	burst  float64
	tokens float64
	last   time.Time
}

// NewBucket returns a full bucket. It panics if rate is not a positive finite number or burst < 1
// (limits come from validated configuration; a nonsensical one is a programming error).
func NewBucket(rate float64, burst int) *Bucket {
	checkRate(rate, burst)
	return &Bucket{rate: rate, burst: float64(burst), tokens: float64(burst)}
}

func checkRate(rate float64, burst int) {
	if !(rate > 0) || math.IsInf(rate, 0) || burst < 1 {
		panic(fmt.Sprintf("limiter: invalid rate %v or burst %d", rate, burst))
	}
}

// AllowAt takes n tokens at time now and reports whether there were enough. When there are not,
// nothing is taken. n <= 0 is always allowed; n > burst never is. A clock that goes backwards
// refills nothing.
func (b *Bucket) AllowAt(now time.Time, n int) bool {
	b.refill(now)
	if n <= 0 {
		return true
	}
	if float64(n) > b.tokens {
		return false
	}
	b.tokens -= float64(n)
	return true
}

// TokensAt returns the tokens available at time now (refilling first).
func (b *Bucket) TokensAt(now time.Time) float64 {
	b.refill(now)
	return b.tokens
}

func (b *Bucket) refill(now time.Time) {
	if b.last.IsZero() {
		b.last = now
		return
	}
	if d := now.Sub(b.last); d > 0 {
		b.tokens = math.Min(b.burst, b.tokens+d.Seconds()*b.rate)
		b.last = now
	}
}

// Limiter is a set of token buckets, one per key, all with the same rate and burst, holding at
// most maxKeys buckets: a new key beyond that evicts the least recently used one. It is safe for
// concurrent use.
type Limiter struct {
	rate    float64
	burst   int
	maxKeys int
	now     func() time.Time

	mu   sync.Mutex
	lru  *list.List // of *entry, most recently used at the front
	keys map[string]*list.Element
}

type entry struct {
	key string
	b   Bucket
}

// New returns a Limiter of rate tokens per second with bursts of burst tokens, for at most maxKeys
// keys. It panics if rate is not a positive finite number, burst < 1 or maxKeys < 1.
func New(rate float64, burst int, maxKeys int, opts ...Option) *Limiter {
	checkRate(rate, burst)
	if maxKeys < 1 {
		panic(fmt.Sprintf("limiter: invalid maxKeys %d", maxKeys))
	}
	o := buildOptions(opts)
	return &Limiter{
		rate: rate, burst: burst, maxKeys: maxKeys, now: o.now,
		lru: list.New(), keys: make(map[string]*list.Element),
	}
}

// Allow is AllowN(key, 1).
func (l *Limiter) Allow(key string) bool { return l.AllowN(key, 1) }

// AllowN takes n tokens from key's bucket and reports whether there were enough; when there were
// not, nothing is taken. n <= 0 is always allowed (and does not create a bucket); n > burst never
// is. A key seen for the first time (or again after eviction) starts with a full bucket.
func (l *Limiter) AllowN(key string, n int) bool {
	if n <= 0 {
		return true
	}
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.bucket(key).AllowAt(now, n)
}

// bucket returns key's bucket, marking it most recently used, creating it (and evicting the least
// recently used key if the table is full) when absent. l.mu must be held.
func (l *Limiter) bucket(key string) *Bucket {
	if el, ok := l.keys[key]; ok {
		l.lru.MoveToFront(el)
		return &el.Value.(*entry).b
	}
	var e *entry
	if l.lru.Len() >= l.maxKeys {
		// Reuse the evicted element: no allocation beyond the map entry in steady state.
		el := l.lru.Back()
		e = el.Value.(*entry)
		delete(l.keys, e.key)
		l.lru.Remove(el)
	} else {
		e = new(entry)
	}
	*e = entry{key: key, b: Bucket{rate: l.rate, burst: float64(l.burst), tokens: float64(l.burst)}}
	l.keys[key] = l.lru.PushFront(e)
	return &e.b
}

// Tokens returns the tokens key's bucket holds now (burst for an unknown key). It does not create
// a bucket or change the recency order.
func (l *Limiter) Tokens(key string) float64 {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if el, ok := l.keys[key]; ok {
		return el.Value.(*entry).b.TokensAt(now)
	}
	return float64(l.burst)
}

// Forget drops key's bucket (the key starts full next time).
func (l *Limiter) Forget(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if el, ok := l.keys[key]; ok {
		delete(l.keys, key)
		l.lru.Remove(el)
	}
}

// Len returns the number of keys held (at most maxKeys).
func (l *Limiter) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.keys)
}

// SourceKey returns the limiting key of a source address: the address itself for IPv4 (an
// IPv4-mapped IPv6 address counts as IPv4), and its /64 prefix for IPv6, since a single host or
// site is usually given a whole /64 and could otherwise present 2^64 keys. The zone is dropped.
func SourceKey(a netip.Addr) string {
	a = a.Unmap().WithZone("")
	if a.Is6() {
		p, err := a.Prefix(64)
		if err == nil {
			return p.String()
		}
	}
	return a.String()
}
