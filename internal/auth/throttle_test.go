package auth

import (
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func failN(th *Throttle, n int, user, addr string) {
	for range n {
		th.Failure(user, addr)
	}
}

func TestThrottleDefaults(t *testing.T) {
	c := NewThrottle(ThrottleConfig{}).Config()
	if c.MaxFailures != 10 || c.Window != time.Minute || c.Backoff != time.Minute ||
		c.MaxBackoff != 15*time.Minute || c.ResetAfter != time.Hour || c.MaxKeys != 10_000 {
		t.Fatalf("defaults = %+v", c)
	}
}

// TestThrottleLockoutAndBackoff: 10 failures lock out, lock-outs double up to the cap, the correct
// password is refused during the window (CASES T31).
func TestThrottleLockoutAndBackoff(t *testing.T) {
	clk := newClock()
	th := NewThrottle(ThrottleConfig{Now: clk.Now})
	for i := range 9 {
		if _, ok := th.Check("p1dev", "192.0.2.1"); !ok {
			t.Fatalf("refused after %d failures", i)
		}
		th.Failure("p1dev", "192.0.2.1")
	}
	if _, ok := th.Check("p1dev", "192.0.2.1"); !ok {
		t.Fatal("refused after 9 failures")
	}
	th.Failure("p1dev", "192.0.2.1") // 10th
	wantBackoffs := []time.Duration{1, 2, 4, 8, 15, 15}
	for round, want := range wantBackoffs {
		want *= time.Minute
		retry, ok := th.Check("p1dev", "192.0.2.1")
		if ok || retry != want {
			t.Fatalf("lock-out %d: Check = %v, %v; want refused for %v", round+1, retry, ok, want)
		}
		// Every key involved is locked: the user from elsewhere, anyone from the address.
		if _, ok := th.Check("p1dev", "198.51.100.9"); ok {
			t.Fatal("user not locked out from another address")
		}
		if _, ok := th.Check("clin", "192.0.2.1"); ok {
			t.Fatal("address not locked out for another user")
		}
		if _, ok := th.Check("clin", "198.51.100.9"); !ok {
			t.Fatal("an unrelated user and address were locked out")
		}
		clk.Advance(want - time.Second)
		if retry, ok := th.Check("p1dev", "192.0.2.1"); ok || retry != time.Second {
			t.Fatalf("lock-out %d: 1 s before the end Check = %v, %v", round+1, retry, ok)
		}
		clk.Advance(time.Second)
		if _, ok := th.Check("p1dev", "192.0.2.1"); !ok {
			t.Fatalf("lock-out %d did not end after %v", round+1, want)
		}
		failN(th, 10, "p1dev", "192.0.2.1")
	}
}

func TestThrottleWindow(t *testing.T) {
	clk := newClock()
	th := NewThrottle(ThrottleConfig{Now: clk.Now})
	// 9 failures a minute, forever: never locked out.
	for range 5 {
		failN(th, 9, "u", "a")
		clk.Advance(time.Minute)
		if _, ok := th.Check("u", "a"); !ok {
			t.Fatal("locked out with fewer than 10 failures per window")
		}
	}
	failN(th, 10, "u", "a")
	if _, ok := th.Check("u", "a"); ok {
		t.Fatal("not locked out after 10 failures in a window")
	}
}

// TestThrottleSuccess: success forgets the user's failures and backoff; the address's failures
// stay (interleaving a good login must not reset per-address counting).
func TestThrottleSuccess(t *testing.T) {
	clk := newClock()
	th := NewThrottle(ThrottleConfig{Now: clk.Now})
	failN(th, 9, "nurse", "10.0.0.1")
	th.Success("nurse", "10.0.0.1")
	th.Failure("nurse", "10.0.0.2")
	if _, ok := th.Check("nurse", "10.0.0.2"); !ok {
		t.Fatal("user locked after success + 1 failure: success did not reset")
	}
	th.Failure("other", "10.0.0.1") // the address's 10th failure
	if _, ok := th.Check("someone", "10.0.0.1"); ok {
		t.Fatal("success reset the address's failures")
	}
	// Backoff level of the user resets on success too.
	clk.Advance(time.Hour)
	for range 3 { // three lock-outs: next would be 8 min
		failN(th, 10, "amy", "")
		r, _ := th.Check("amy", "")
		clk.Advance(r)
	}
	th.Success("amy", "")
	failN(th, 10, "amy", "")
	if r, _ := th.Check("amy", ""); r != time.Minute {
		t.Fatalf("lock-out after success = %v, want the first backoff 1m", r)
	}
}

func TestThrottleResetAfterQuiet(t *testing.T) {
	clk := newClock()
	th := NewThrottle(ThrottleConfig{Now: clk.Now})
	failN(th, 10, "u", "")
	clk.Advance(time.Minute)
	failN(th, 10, "u", "")
	if r, _ := th.Check("u", ""); r != 2*time.Minute {
		t.Fatalf("second lock-out %v, want 2m", r)
	}
	clk.Advance(time.Hour + 2*time.Minute)
	failN(th, 10, "u", "")
	if r, _ := th.Check("u", ""); r != time.Minute {
		t.Fatalf("lock-out after an hour's quiet %v, want 1m", r)
	}
}

func TestThrottleEmptyKeys(t *testing.T) {
	th := NewThrottle(ThrottleConfig{})
	failN(th, 100, "", "")
	if u, a := th.Len(); u != 0 || a != 0 {
		t.Fatalf("empty keys tracked: %d %d", u, a)
	}
	if _, ok := th.Check("", ""); !ok {
		t.Fatal("empty keys refused")
	}
}

func TestThrottleBoundedMemory(t *testing.T) {
	clk := newClock()
	th := NewThrottle(ThrottleConfig{Now: clk.Now, MaxKeys: 100})
	for i := range 100_000 {
		th.Failure(fmt.Sprint("user", i), fmt.Sprint("addr", i))
	}
	if u, a := th.Len(); u != 100 || a != 100 {
		t.Fatalf("Len = %d, %d; want 100, 100", u, a)
	}
	// The most recently used keys are kept.
	failN(th, 9, "user99999", "")
	if _, ok := th.Check("user99999", ""); ok {
		t.Fatal("most recent user key was evicted")
	}
}

func TestThrottleConcurrent(t *testing.T) {
	th := NewThrottle(ThrottleConfig{MaxKeys: 50})
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 500 {
				u, a := fmt.Sprint("u", i%70), fmt.Sprint("a", g)
				if _, ok := th.Check(u, a); ok {
					if i%3 == 0 {
						th.Success(u, a)
					} else {
						th.Failure(u, a)
					}
				}
				_, _ = th.Len()
			}
		}()
	}
	wg.Wait()
}

// TestThrottleWithUsers is the login flow the broker runs: the correct password is refused during
// the lock-out without even being checked, and accepted after it.
func TestThrottleWithUsers(t *testing.T) {
	clk := newClock()
	th := NewThrottle(ThrottleConfig{Now: clk.Now})
	var kdf countingKDF
	u := openTest(t, filepath.Join(t.TempDir(), "users.json"), WithKDF(kdf.kdf))
	if err := u.Add("p1dev", RoleService, pw); err != nil {
		t.Fatal(err)
	}
	login := func(name, password, addr string) (bool, time.Duration) {
		if retry, ok := th.Check(name, addr); !ok {
			return false, retry
		}
		if _, err := u.Verify(name, password); err != nil {
			th.Failure(name, addr)
			return false, 0
		}
		th.Success(name, addr)
		return true, 0
	}
	for i := range 10 {
		if ok, retry := login("p1dev", "WRONG password", "192.0.2.1"); ok || retry != 0 {
			t.Fatalf("attempt %d: ok=%v retry=%v", i, ok, retry)
		}
	}
	kdf.n.Store(0)
	for range 190 {
		if ok, retry := login("p1dev", "WRONG password", "192.0.2.1"); ok || retry == 0 {
			t.Fatal("attempt during the lock-out was not refused")
		}
	}
	if ok, retry := login("p1dev", pw, "192.0.2.1"); ok || retry == 0 {
		t.Fatal("correct password accepted during the lock-out")
	}
	if ok, _ := login("p1dev", pw, "203.0.113.5"); ok {
		t.Fatal("correct password accepted from another address during the user's lock-out")
	}
	if n := kdf.n.Load(); n != 0 {
		t.Fatalf("%d hashes computed for refused attempts", n)
	}
	clk.Advance(time.Minute)
	if ok, _ := login("p1dev", pw, "192.0.2.1"); !ok {
		t.Fatal("correct password refused after the lock-out")
	}
}
