package limiter

import (
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeClock is a manually advanced clock, safe for concurrent use.
type fakeClock struct{ ns atomic.Int64 }

func newFakeClock() *fakeClock {
	c := &fakeClock{}
	c.ns.Store(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	return c
}

func (c *fakeClock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

func TestBurstThenRefill(t *testing.T) {
	clk := newFakeClock()
	l := New(2, 5, 10, WithClock(clk.Now)) // 2 tokens/s, burst 5
	for i := range 5 {
		if !l.Allow("a") {
			t.Fatalf("call %d refused within burst", i)
		}
	}
	if l.Allow("a") {
		t.Fatal("6th call allowed: burst exceeded")
	}
	if !l.Allow("b") {
		t.Fatal("other key refused: buckets are not per key")
	}
	clk.Advance(499 * time.Millisecond)
	if l.Allow("a") {
		t.Fatal("allowed before one token refilled")
	}
	clk.Advance(time.Millisecond)
	if !l.Allow("a") {
		t.Fatal("refused after one token refilled")
	}
	clk.Advance(time.Hour) // refill caps at burst
	if got := l.Tokens("a"); got != 5 {
		t.Fatalf("tokens after a long idle = %v, want 5 (burst)", got)
	}
}

func TestAllowN(t *testing.T) {
	clk := newFakeClock()
	l := New(100, 10, 10, WithClock(clk.Now))
	if !l.AllowN("k", 0) || !l.AllowN("k", -3) {
		t.Fatal("n <= 0 refused")
	}
	if l.Len() != 0 {
		t.Fatal("n <= 0 created a bucket")
	}
	if l.AllowN("k", 11) {
		t.Fatal("n > burst allowed")
	}
	if !l.AllowN("k", 7) {
		t.Fatal("7 of 10 refused")
	}
	if l.AllowN("k", 4) {
		t.Fatal("4 with 3 left allowed")
	}
	if got := l.Tokens("k"); got != 3 {
		t.Fatalf("a refused AllowN took tokens: %v left, want 3", got)
	}
	if !l.AllowN("k", 3) {
		t.Fatal("3 with 3 left refused")
	}
}

func TestClockBackwards(t *testing.T) {
	clk := newFakeClock()
	l := New(1, 1, 10, WithClock(clk.Now))
	if !l.Allow("k") {
		t.Fatal("first refused")
	}
	clk.Advance(-time.Hour)
	if l.Allow("k") {
		t.Fatal("clock going backwards refilled")
	}
	clk.Advance(time.Hour + time.Second)
	if !l.Allow("k") {
		t.Fatal("not refilled after the clock caught up")
	}
}

func TestLRUEviction(t *testing.T) {
	clk := newFakeClock()
	l := New(1, 1, 3, WithClock(clk.Now))
	for _, k := range []string{"a", "b", "c"} {
		l.Allow(k) // all empty now
	}
	l.Allow("a") // touch a: b is now the least recently used
	l.Allow("d") // evicts b
	if l.Len() != 3 {
		t.Fatalf("Len = %d, want 3", l.Len())
	}
	if l.Allow("a") || l.Allow("c") || l.Allow("d") {
		t.Fatal("a, c or d lost its state: the wrong key was evicted")
	}
	if !l.Allow("b") {
		t.Fatal("b was not evicted (it should start full again)")
	}
	l.Forget("b")
	if l.Len() != 2 {
		t.Fatalf("Len after Forget = %d, want 2", l.Len())
	}
}

func TestEvictionBoundManyKeys(t *testing.T) {
	const maxKeys = 1000
	clk := newFakeClock()
	l := New(1, 1, maxKeys, WithClock(clk.Now))
	for i := range 100_000 {
		l.Allow(fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255))
		if i%10_000 == 0 && l.Len() > maxKeys {
			t.Fatalf("Len = %d after %d keys, want <= %d", l.Len(), i+1, maxKeys)
		}
	}
	if l.Len() != maxKeys || l.lru.Len() != maxKeys || len(l.keys) != maxKeys {
		t.Fatalf("Len = %d (list %d, map %d), want %d", l.Len(), l.lru.Len(), len(l.keys), maxKeys)
	}
	// The most recent maxKeys keys are the ones kept.
	last := 99_999
	if l.Allow(fmt.Sprintf("10.%d.%d.%d", last>>16&255, last>>8&255, last&255)) {
		t.Fatal("most recent key was evicted")
	}
}

func TestConcurrentAllow(t *testing.T) {
	clk := newFakeClock()
	const burst = 1000
	l := New(1, burst, 64, WithClock(clk.Now))
	var allowed atomic.Int64
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 500 {
				if l.Allow("shared") {
					allowed.Add(1)
				}
				l.Allow(fmt.Sprintf("g%d-%d", g, i%100)) // churn through eviction
				_ = l.Tokens("shared")
				_ = l.Len()
			}
		}()
	}
	wg.Wait()
	if got := allowed.Load(); got != burst {
		t.Fatalf("allowed %d on the shared key with a frozen clock, want exactly %d", got, burst)
	}
}

func TestBucket(t *testing.T) {
	b := NewBucket(10, 2)
	t0 := time.Unix(1000, 0)
	if !b.AllowAt(t0, 2) || b.AllowAt(t0, 1) {
		t.Fatal("burst not enforced")
	}
	if !b.AllowAt(t0.Add(100*time.Millisecond), 1) {
		t.Fatal("not refilled at 10/s after 100 ms")
	}
	if got := b.TokensAt(t0.Add(time.Hour)); got != 2 {
		t.Fatalf("tokens = %v, want 2", got)
	}
}

func TestInvalidArgumentsPanic(t *testing.T) {
	for name, f := range map[string]func(){
		"rate 0":      func() { New(0, 1, 1) },
		"rate NaN":    func() { New(nanRate(), 1, 1) },
		"burst 0":     func() { New(1, 0, 1) },
		"maxKeys 0":   func() { New(1, 1, 0) },
		"bucket":      func() { NewBucket(-1, 1) },
		"concurrency": func() { NewConcurrency(0, 1) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: no panic", name)
				}
			}()
			f()
		}()
	}
}

func nanRate() float64 {
	zero := 0.0
	return zero / zero
}

func TestSourceKey(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.7":            "192.0.2.7",
		"::ffff:192.0.2.7":     "192.0.2.7",
		"2001:db8:1:2:3:4:5:6": "2001:db8:1:2::/64",
		"2001:db8:1:2:ffff::1": "2001:db8:1:2::/64",
		"fe80::1%eth0":         "fe80::/64",
		"::1":                  "::/64",
		"2001:db8:1:3:3:4:5:6": "2001:db8:1:3::/64",
	} {
		if got := SourceKey(netip.MustParseAddr(in)); got != want {
			t.Errorf("SourceKey(%s) = %s, want %s", in, got, want)
		}
	}
}
